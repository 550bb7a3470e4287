// Device facts and the memory estimate the demo shows before it downloads anything.

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

/**
 * KV cache bytes: one K and one V buffer per layer, `[context][n_kv_heads · head_dim]`, f16 with
 * shader-f16, else f32 (as the engine allocates them).
 */
export function kvBytes(arch, context, f16) {
  return 2 * arch.nLayer * context * arch.nHeadKv * arch.headDim * (f16 ? 2 : 4);
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

/** Bytes in decimal units, as downloads are counted: 98.4 MB, 4.92 GB. */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '?';
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** Seconds as "45 s", "3 min 20 s", "1 h 5 min". */
export function formatDuration(s) {
  if (!Number.isFinite(s) || s < 0) return '–';
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/**
 * What WebGPU says about this machine, before any model is loaded.
 * @returns {Promise<{supported: boolean, reason?: string, adapter?: object, features?: object, limits?: object}>}
 */
export async function probeAdapter() {
  if (!globalThis.navigator?.gpu) {
    return { supported: false, reason: 'navigator.gpu is missing: this browser has no WebGPU, or it is turned off' };
  }
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    return { supported: false, reason: `requestAdapter() failed: ${e?.message ?? e}` };
  }
  if (!adapter) return { supported: false, reason: 'WebGPU is present but no GPU adapter is available (blocklisted GPU or driver?)' };
  const info = adapter.info ?? {};
  const l = adapter.limits;
  return {
    supported: true,
    adapter: {
      vendor: info.vendor || '',
      architecture: info.architecture || '',
      description: info.description || info.device || '',
      fallback: !!(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
    },
    features: { shaderF16: adapter.features.has('shader-f16'), subgroups: adapter.features.has('subgroups') },
    limits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    },
  };
}
