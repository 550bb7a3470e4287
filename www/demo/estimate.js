// What a model should need on this device, before anything is downloaded: its shape (from
// models.json, a known name, or the loaded engine), the engine's own memory plan for it
// (LlamaEngine.planMemory: the arithmetic the loader allocates by), and the fit verdict.

import { formatBytes } from './format.js';
import { LlamaEngine } from './package.js';

/** Shapes of the models we know by name, for the estimate of a URL or file not in models.json. */
const KNOWN_ARCH = [
  [/smollm2[-_. ]?135m/i, { nLayer: 30, nEmbd: 576, nHead: 9, nHeadKv: 3, headDim: 64, nFf: 1536, nVocab: 49152, contextLength: 8192 }],
  [/(llama[-_. ]?3\.?[13][-_. ]?)?70b/i, { nLayer: 80, nEmbd: 8192, nHead: 64, nHeadKv: 8, headDim: 128, nFf: 28672, nVocab: 128256, contextLength: 131072 }],
  [/(llama[-_. ]?3\.?[12][-_. ]?)?8b/i, { nLayer: 32, nEmbd: 4096, nHead: 32, nHeadKv: 8, headDim: 128, nFf: 14336, nVocab: 128256, contextLength: 131072 }],
  [/(llama[-_. ]?3\.?2[-_. ]?)?3b/i, { nLayer: 28, nEmbd: 3072, nHead: 24, nHeadKv: 8, headDim: 128, nFf: 8192, nVocab: 128256, contextLength: 131072 }],
  [/(llama[-_. ]?3\.?2[-_. ]?)?1b/i, { nLayer: 16, nEmbd: 2048, nHead: 32, nHeadKv: 8, headDim: 64, nFf: 8192, nVocab: 128256, contextLength: 131072 }],
];

/** The model shape guessed from a file or URL name, or null. */
export function guessArch(name) {
  const base = String(name).split(/[/?#]/).filter(Boolean).pop() ?? '';
  for (const [re, arch] of KNOWN_ARCH) if (re.test(base)) return arch;
  return null;
}

/** Model shape from a loaded engine's `info.model` (the names are the plan's). */
export function archFromInfo(model) {
  const { nLayer, nEmbd, nHead, nHeadKv, nFf, nVocab, contextLength } = model;
  return { nLayer, nEmbd, nHead, nHeadKv, nFf, nVocab, contextLength };
}

/** The context the page asks the engine for: what the user chose, at most what the model was trained for. */
export function contextFor(arch, wanted) {
  return arch?.contextLength ? Math.min(wanted, arch.contextLength) : wanted;
}

/**
 * The GPU memory a model should take on this device: the engine's plan for its shape (weights,
 * KV cache and activations), without a shape only the weights.
 *
 * @param {{arch: import('./state.js').ModelShape|null, weightsBytes: number|null, contextSize: number,
 *   features: {shaderF16: boolean}, limits: {maxBufferSize: number, maxStorageBufferBindingSize: number}}} model
 *   the shape (null when unknown), the weights' size (null when unknown), the context the load
 *   asks for (see contextFor), and the device's features and limits
 * @returns {Promise<{contextSize: number, kvType: 'f16'|'f32', weightsBytes: number|null,
 *   kvCacheBytes: number|null, activationsBytes: number|null, totalBytes: number|null}>} the
 *   context planned for; the KV cache and activations (null without a shape) and the total (null
 *   without the weights' size)
 */
export async function estimateMemory({ arch, weightsBytes, contextSize, features, limits }) {
  const f16 = !!features.shaderF16;
  const plan = arch
    ? await LlamaEngine.planMemory(arch, {
      weightsBytes: weightsBytes || 0,
      contextSize,
      device: { shaderF16: f16, maxBufferSize: limits.maxBufferSize, maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize },
    })
    : null;
  return {
    contextSize: plan?.contextSize ?? contextSize,
    kvType: f16 ? 'f16' : 'f32',
    weightsBytes: weightsBytes || null,
    kvCacheBytes: plan?.kvCacheBytes ?? null,
    activationsBytes: plan?.activationsBytes ?? null,
    totalBytes: weightsBytes ? (plan?.totalBytes ?? weightsBytes) : null,
  };
}

/** How many times maxBufferSize we allow in total: GPUs rarely expose buffers beyond a quarter of memory. */
export const BUFFER_FACTOR = 4;

/**
 * Whether `bytes` should fit: compared with `BUFFER_FACTOR × maxBufferSize` (when known) and
 * with `navigator.deviceMemory` (GiB, rounded down and capped by the browser; when known).
 * @returns {{fits: boolean, budget: number|null, reason: string}}
 */
export function fitVerdict(bytes, { maxBufferSize, deviceMemoryGiB } = {}) {
  const limits = [];
  if (maxBufferSize) limits.push({ bytes: BUFFER_FACTOR * maxBufferSize, why: `${formatBytes(BUFFER_FACTOR * maxBufferSize)} (${BUFFER_FACTOR} × the adapter's maxBufferSize of ${formatBytes(maxBufferSize)})` });
  if (deviceMemoryGiB) limits.push({ bytes: deviceMemoryGiB * 2 ** 30, why: `the ${deviceMemoryGiB} GB of memory this device reports (navigator.deviceMemory)` });
  if (!limits.length || !bytes) return { fits: true, budget: null, reason: 'no limit known' };
  const tightest = limits.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  if (bytes > tightest.bytes) {
    return { fits: false, budget: tightest.bytes, reason: `needs ≈ ${formatBytes(bytes)}, more than ${tightest.why}` };
  }
  return { fits: true, budget: tightest.bytes, reason: `within ${tightest.why}` };
}
