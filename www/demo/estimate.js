// What a model should need on this device, before anything is downloaded: its shape (from
// models.json, a known name, or the loaded engine), the GPU memory estimate and the fit verdict.

import { formatBytes } from './format.js';

/** Shapes of the models we know by name, for the KV-cache estimate of a URL or file not in models.json. */
const KNOWN_ARCH = [
  [/smollm2[-_. ]?135m/i, { nLayer: 30, nHeadKv: 3, headDim: 64, contextLength: 8192 }],
  [/(llama[-_. ]?3\.?[12][-_. ]?)?8b/i, { nLayer: 32, nHeadKv: 8, headDim: 128, contextLength: 131072 }],
  [/(llama[-_. ]?3\.?2[-_. ]?)?3b/i, { nLayer: 28, nHeadKv: 8, headDim: 128, contextLength: 131072 }],
  [/(llama[-_. ]?3\.?2[-_. ]?)?1b/i, { nLayer: 16, nHeadKv: 8, headDim: 64, contextLength: 131072 }],
];

/** The model shape guessed from a file or URL name, or null. */
export function guessArch(name) {
  const base = String(name).split(/[/?#]/).filter(Boolean).pop() ?? '';
  for (const [re, arch] of KNOWN_ARCH) if (re.test(base)) return arch;
  return null;
}

/** Model shape from a loaded engine's `info.model`. */
export function archFromInfo(model) {
  return {
    nLayer: model.nLayer,
    nHeadKv: model.nHeadKv,
    headDim: Math.round(model.nEmbd / model.nHead),
    contextLength: model.contextLength,
  };
}

/** The context the page asks the engine for: what the user chose, at most what the model was trained for. */
export function contextFor(arch, wanted) {
  return arch?.contextLength ? Math.min(wanted, arch.contextLength) : wanted;
}

/**
 * The GPU memory a model should take on this device. Everything the page knows about a model's
 * memory comes from here, so that replacing this body with the engine's own plan (through its wasm)
 * changes the figures everywhere at once.
 *
 * Today: the weights stay quantized, so they take the file size; the KV cache is one K and one V
 * buffer per layer, `[context][n_kv_heads · head_dim]`, f16 with shader-f16, else f32, as the
 * engine allocates them. The engine's plan also weighs `limits`; this formula has no use for them.
 *
 * @param {{arch: import('./state.js').ModelShape|null, weightsBytes: number|null, contextSize: number,
 *   features: {shaderF16: boolean}, limits?: object}} model the shape (null when unknown), the
 *   weights' size (null when unknown), the context the load asks for (see contextFor), and the
 *   device's features and limits
 * @returns {{contextSize: number, kvType: 'f16'|'f32', weightsBytes: number|null,
 *   kvCacheBytes: number|null, totalBytes: number|null}} the context planned for; the KV cache
 *   (null without a shape) and the total (null without the weights' size)
 */
export function estimateMemory({ arch, weightsBytes, contextSize, features }) {
  const f16 = !!features.shaderF16;
  const kvCacheBytes = arch ? 2 * arch.nLayer * contextSize * arch.nHeadKv * arch.headDim * (f16 ? 2 : 4) : null;
  return {
    contextSize,
    kvType: f16 ? 'f16' : 'f32',
    weightsBytes: weightsBytes || null,
    kvCacheBytes,
    totalBytes: weightsBytes ? weightsBytes + (kvCacheBytes ?? 0) : null,
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
