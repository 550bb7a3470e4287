// What WebGPU says about this machine before any model is loaded.

/**
 * The adapter, its features and the limits the device panel and the fit verdict use.
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
