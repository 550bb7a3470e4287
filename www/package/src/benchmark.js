// @ts-check
// `engine.benchmark()`: the fixed workload of the wasm engine's `benchmark` (src/gpu/bench.rs,
// the same as the CLI's `bench`) run on the loaded model, and its figures put together with
// what the device is into one report a user can copy: we cannot reach real GPUs in real
// browsers, our users can.

import { ErrorCode, LlamaError } from './errors.js';

/**
 * The options with their defaults filled in; `INVALID_ARGUMENT` for anything else.
 * @param {BenchmarkOptions} [options]
 * @returns {Required<BenchmarkOptions>}
 */
export function benchmarkOptions(options = {}) {
  if (options === null || typeof options !== 'object') {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'benchmark() takes an options object');
  }
  /** @param {string} key @param {number} dflt @param {number} min */
  const count = (key, dflt, min) => {
    const v = /** @type {any} */ (options)[key] ?? dflt;
    if (!Number.isInteger(v) || v < min || v > 1_000_000) {
      throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `benchmark option ${key} must be an integer from ${min}, got ${String(v)}`);
    }
    return v;
  };
  return {
    promptTokens: count('promptTokens', 128, 1),
    decodeTokens: count('decodeTokens', 64, 1),
    profileSteps: count('profileSteps', 4, 0),
  };
}

/**
 * The report: the wasm engine's figures with the model, adapter, features and limits they
 * were measured on.
 * @param {any} raw what the wasm `Engine.benchmark` resolved to
 * @param {import('./load-info.js').EngineInfo} info
 * @param {Required<BenchmarkOptions>} options
 * @returns {BenchmarkResult}
 */
export function benchmarkReport(raw, info, options) {
  const m = info.model;
  const first = m.source?.[0] ?? '';
  return {
    date: new Date().toISOString(),
    userAgent: globalThis.navigator?.userAgent ?? '',
    model: {
      file: first.split(/[/\\]/).pop()?.split('?')[0] ?? '',
      architecture: m.architecture,
      sizeBytes: m.sizeBytes,
      nLayer: m.nLayer,
      nEmbd: m.nEmbd,
      nVocab: m.nVocab,
      contextSize: m.contextSize,
    },
    adapter: { ...info.adapter },
    features: { ...info.features },
    kernels: { ...info.kernels },
    limits: { ...info.limits },
    workload: { ...options },
    prefill: {
      tokens: raw.promptTokens,
      seconds: raw.prefillSeconds,
      tokensPerSecond: raw.prefillTokensPerSecond,
    },
    decode: {
      tokens: raw.decodeTokens,
      seconds: raw.decodeSeconds,
      tokensPerSecond: raw.decodeTokensPerSecond,
      msPerToken: (1000 * raw.decodeSeconds) / raw.decodeTokens,
      dispatchesPerToken: raw.dispatchesPerToken,
      weightBytesPerToken: raw.weightBytesPerToken,
      weightGBPerSecond: raw.decodeWeightGBPerSecond,
    },
    profile: raw.profile,
  };
}

// The types. (Typedefs go last: tsc would copy them into the doc of the declaration that
// follows them.)

/**
 * Options of `engine.benchmark()`. All are optional.
 * @typedef {object} BenchmarkOptions
 * @property {number} [promptTokens] Length of the fixed prompt that is prefilled (default 128).
 * @property {number} [decodeTokens] Greedy decode steps timed after it (default 64).
 * @property {number} [profileSteps] Further decode steps in which each kernel is timed with
 *   `timestamp-query` (default 4; 0 skips the profile). Without the feature there is no profile.
 */

/**
 * One kernel's share of a decode step, summed over the layers.
 * @typedef {object} KernelTime
 * @property {string} kernel The op's name in the graph: `attn_q`, `attention`, `ffn_down`, `output`, …
 * @property {number} msPerToken Mean GPU time per decode step (each op timed in a pass of its own).
 * @property {number} percent Share of the profiled step.
 * @property {number | null} weightBytes Bytes of weights the op reads per token (the matrix
 *   products and the norms; null for the others).
 * @property {number | null} weightGBPerSecond The weight bandwidth the op reached (null where it
 *   reads no weights, or ran below the timer's resolution).
 */

/**
 * What `engine.benchmark()` measured, and on what: plain data, ready for `JSON.stringify`.
 * @typedef {object} BenchmarkResult
 * @property {string} date When it ran (ISO 8601).
 * @property {string} userAgent The browser's `navigator.userAgent`.
 * @property {{file: string, architecture: string, sizeBytes: number, nLayer: number, nEmbd: number,
 *   nVocab: number, contextSize: number}} model The loaded model (`file`: the first shard's name).
 * @property {import('./load-info.js').AdapterInfo} adapter
 * @property {import('./load-info.js').FeatureInfo} features The path the kernels took: f16 or f32,
 *   subgroups or workgroup reductions, packed-integer or f32 products.
 * @property {import('./load-info.js').KernelInfo} kernels What a decode step fused.
 * @property {import('./load-info.js').LimitsInfo} limits
 * @property {Required<BenchmarkOptions>} workload
 * @property {{tokens: number, seconds: number, tokensPerSecond: number}} prefill The fixed prompt,
 *   from an empty KV cache.
 * @property {{tokens: number, seconds: number, tokensPerSecond: number, msPerToken: number,
 *   dispatchesPerToken: number, weightBytesPerToken: number, weightGBPerSecond: number}} decode
 *   Greedy decode as generation runs it (one submission and a 4-byte readback per token, each
 *   step queued before the last one's token is read back where `kernels.chain` is on);
 *   `weightGBPerSecond` is the weight bytes of a step times steps per second, to compare with
 *   the GPU's memory bandwidth.
 * @property {KernelTime[] | null} profile Each kernel's time per decode step, or null where the
 *   device has no `timestamp-query` or `profileSteps` was 0.
 */
