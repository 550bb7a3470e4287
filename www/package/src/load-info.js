// @ts-check
// A load's contract with the app: the options it takes (LoadOptions) and the facts it reports
// (EngineInfo, `engine.info`), with the code that assembles those facts from what the wasm
// engine, the GPU adapter and the load itself tell. No wasm here: these are the public types.

import { navigatorGpu } from './webgpu.js';

/**
 * The adapter's description, vendor and architecture as WebGPU gives them (wgpu cannot see
 * them), filled into the device facts the wasm engine reports. Informational: never throws.
 * @param {{adapter: AdapterInfo}} gpuInfo mutated
 */
export async function describeAdapter(gpuInfo) {
  try {
    const a = (await /** @type {import('./webgpu.js').Gpu} */ (navigatorGpu()).requestAdapter())?.info;
    if (a) Object.assign(gpuInfo.adapter, { vendor: a.vendor, architecture: a.architecture, name: a.description || a.device || gpuInfo.adapter.name });
  } catch {
    // Informational only.
  }
}

/**
 * `engine.info` at the end of a load.
 * @param {object} facts
 * @param {any} facts.model the wasm engine's model facts
 * @param {{adapter: AdapterInfo, features: FeatureInfo, kernels: KernelInfo, limits: LimitsInfo}} facts.gpu the device's
 * @param {string[]} facts.source every shard's URL or file name
 * @param {number} facts.totalBytes
 * @param {number} facts.seconds
 * @param {number} facts.fromCacheBytes
 * @param {number} facts.wasmMemoryBytes
 * @param {LoadInfo['warnings']} facts.warnings
 * @returns {EngineInfo}
 */
export function engineInfo({ model, gpu, source, totalBytes, seconds, fromCacheBytes, wasmMemoryBytes, warnings }) {
  return {
    model: { ...model, source, sizeBytes: totalBytes },
    ...gpu,
    load: { seconds, bytesPerSecond: totalBytes / seconds, fromCacheBytes, wasmMemoryBytes, warnings },
  };
}

// The types. (Typedefs go last: tsc would copy them into the doc of the declaration that
// follows them.)

/** @import { LoadProgress, LoadWarning, LoadWarningCode } from './progress.js' */

/**
 * Options of `LlamaEngine.load`. All are optional.
 * @typedef {object} LoadOptions
 * @property {(progress: LoadProgress) => void} [onProgress] Called with load progress about every
 *   100 ms; the last call has `phase: 'compile'` and `loadedBytes === totalBytes`.
 * @property {(warning: LoadWarning) => void} [onWarning] Called for each non-fatal warning (they
 *   are also collected in `info.load.warnings`).
 * @property {AbortSignal} [signal] Cancels the load at any point: `load()` rejects with `ABORTED`
 *   and everything allocated so far (GPU buffers, the worker) is freed.
 * @property {number} [contextSize] Tokens of context (prompt + answer) to allocate the KV cache
 *   for; never more than the model's trained context length. Default: the model's, at most 4096
 *   and at most what the device's buffer limits allow. The memory plan is made as soon as the
 *   first shard's header has arrived: the KV cache is allocated then and the weights of later
 *   shards reserved, so a context or a model that does not fit rejects with `OUT_OF_MEMORY`
 *   before the weights download. See {@link ModelInfo.memory}.
 * @property {boolean} [cache] Keep downloaded URL shards in the origin-private file system so
 *   later loads (and reloads in the middle of a download) read them from disk. Default `true`.
 * @property {boolean} [worker] Run the engine in a dedicated module Web Worker so loading and
 *   generation never block the page. Default `true` (falls back to the calling thread where
 *   `Worker` does not exist).
 * @property {'auto' | 'f16' | 'f32'} [precision] `'auto'` (default): f16 KV cache and f16 kernels
 *   where the adapter has `shader-f16`, f32 otherwise. `'f32'`: always the f32 kernels. `'f16'`:
 *   require `shader-f16` (`NO_WEBGPU` when the adapter lacks it). Weights stay quantized either way.
 * @property {boolean} [subgroups] Use the adapter's subgroup operations (Chrome 134+, any subgroup
 *   size) for the kernels' reductions and matrix-vector products. Default `true`; `false` runs the
 *   workgroup-memory kernels that adapters without subgroups get (slower; useful to compare
 *   paths). {@link FeatureInfo.subgroups} says which path runs.
 * @property {boolean} [intDot] Multiply decode steps and short prompts with packed-integer dot
 *   products (`dot4I8Packed`) on activations quantized to 8 bits, as llama.cpp's GPU backends do.
 *   Default `false` (the f32 products) until they have been measured on GPUs; `true` requires them
 *   (`INVALID_ARGUMENT` where the browser's WGSL lacks them, Chrome 123+ has them).
 *   {@link FeatureInfo.intDot} says which path runs.
 * @property {KernelTuning} [tuning] Overrides of the kernel choices the engine makes from the
 *   adapter, for measuring a device (or testing) under each: what a decode step fuses, and how
 *   the matrix-vector kernel shares rows. Every choice computes the same results.
 *   {@link EngineInfo.kernels} says what runs.
 * @property {string} [chatTemplate] A Jinja chat template (Hugging Face's `chat_template`, as in
 *   `tokenizer_config.json`) to use in place of the GGUF's `tokenizer.chat_template`, or where
 *   the file has none (base models, some conversions). It is compiled before the model
 *   downloads: `INVALID_ARGUMENT` when it does not. {@link ModelInfo.hasChatTemplate} then says
 *   `true`; `chat.completions.create` renders it, sandboxed, as it renders a GGUF's.
 * @property {Record<string, string>} [sha256] Expected SHA-256 (hex) of whole shards, keyed by
 *   absolute URL or by file name. Listed shards are hashed as they stream in; a mismatch fails
 *   the load with `INTEGRITY_ERROR` and drops the cached copy. A verified cached shard is not
 *   hashed again.
 * @property {number} [retries] Consecutive failed attempts allowed per shard before `NETWORK_ERROR` (default 5).
 * @property {string} [wasmUrl] URL of `llama_webgpu_bg.wasm` when it is not served beside the
 *   package's `wasm/` folder (e.g. from a bundler's asset import). Pass a string; make it
 *   absolute in worker mode.
 * @property {string} [workerUrl] URL of the package's `worker.js` when a bundler does not emit it
 *   beside `index.js`. Pass a string (`url.href` for a URL object).
 * @property {number} [maxStorageBinding] Caps the storage-buffer binding size the kernels assume
 *   (bytes), below the adapter's `maxStorageBufferBindingSize`; larger tensors are split into row
 *   blocks. For testing.
 */

/**
 * Kernel choices to force ({@link LoadOptions.tuning}); each left out is chosen from the adapter
 * (a GPU fuses; a CPU adapter such as SwiftShader does not, its kernels are built differently).
 * The CLI's `--norm`, `--swiglu`, `--join`, `--chain`, `--matvec-threads` and `--matvec-rows` do the same.
 * @typedef {object} KernelTuning
 * @property {'fused' | 'separate'} [norm] A decode step's RMSNorms and residual adds: folded into
 *   the matrix products (they normalize as they load and add as they write), or kernels of their own.
 * @property {'fused' | 'separate'} [swiglu] A decode step's SwiGLU: formed as the down projection
 *   loads its input, or a kernel of its own.
 * @property {'fused' | 'separate'} [join] With the norms folded in: a layer's Q, K and V in one
 *   product and its gate and up in one (where the model's types allow), or one product per matrix.
 * @property {'on' | 'off'} [chain] Greedy decoding queues each step on the GPU before the last
 *   step's token is read back (the GPU copies that token into the step's input), or waits for
 *   each token before recording the next step. On by default on GPUs; off on CPU adapters, where
 *   the driver's threads share the cores that record the next step.
 * @property {number} [matvecThreads] Invocations sharing each row of the matrix-vector kernel: a
 *   power of two from 1 to 64 (lowered to the smallest subgroup size with subgroups).
 * @property {number} [matvecRows] Rows each group of those invocations takes: 1, 2 or 4.
 */

/**
 * The decode step's kernel choices in effect ({@link LoadOptions.tuning}).
 * @typedef {object} KernelInfo
 * @property {'fused' | 'separate'} norm
 * @property {'fused' | 'separate'} swiglu
 * @property {'fused' | 'separate'} join
 * @property {'on' | 'off'} chain
 */

/**
 * Facts about the loaded model.
 * @typedef {object} ModelInfo
 * @property {string} architecture The family, `general.architecture`: `'llama'`, `'qwen2'`, `'qwen3'`,
 *   `'gemma3'` or `'phi3'`.
 * @property {number} nLayer Transformer blocks.
 * @property {number} nEmbd Embedding width.
 * @property {number} nHead Attention heads.
 * @property {number} nHeadKv Key/value heads (grouped-query attention).
 * @property {number} nFf Feed-forward width.
 * @property {number} nVocab Vocabulary size.
 * @property {number} contextLength The context length the model was trained for.
 * @property {number} contextSize The context this engine allocated ({@link LoadOptions.contextSize}).
 * @property {MemoryPlan | null} memory What the model takes in GPU memory (null if no plan could be made before the end).
 * @property {number | null} bosId The BOS token id, or null when the model has none.
 * @property {number[]} stopIds Token ids that end a generation (EOS, end-of-turn).
 * @property {boolean} hasChatTemplate Whether the model has a chat template, the GGUF's or
 *   {@link LoadOptions.chatTemplate} (`chat.completions` needs one).
 * @property {string[]} source The URL (or File name) of every shard, in order.
 * @property {number} sizeBytes Bytes of all shards together.
 */

/**
 * GPU memory a model takes at its context size, as planned at its first header.
 * @typedef {object} MemoryPlan
 * @property {number} weightsBytes The weights as uploaded (norm vectors as f32).
 * @property {number} kvCacheBytes K and V of every layer for `contextSize` positions.
 * @property {number} activationsBytes Activation buffers, the logits of a prefill chunk included.
 * @property {number} totalBytes
 * @property {number} contextSize
 * @property {number} maxContextSize The largest context whose KV cache layers fit this device's buffer limits.
 */

/**
 * The WebGPU adapter the engine runs on.
 * @typedef {object} AdapterInfo
 * @property {string} name The adapter's description (from `GPUAdapterInfo`), when the browser tells.
 * @property {string | number} vendor The vendor (from `GPUAdapterInfo`: a string, possibly empty; a
 *   number where the browser gives no `adapter.info`).
 * @property {string} [architecture] The architecture (from `GPUAdapterInfo`), when the browser tells.
 * @property {string} driver Driver description, usually empty in browsers.
 * @property {string} backend wgpu's backend name (`'BrowserWebGpu'` in a browser).
 */

/**
 * Optional WebGPU features in use. The engine works without either.
 * @typedef {object} FeatureInfo
 * @property {boolean} shaderF16 `shader-f16`: f16 KV cache and arithmetic.
 * @property {boolean} subgroups Whether the kernels use subgroup operations (the adapter offers
 *   them and {@link LoadOptions.subgroups} is not `false`).
 * @property {number} subgroupMinSize The smallest subgroup size the kernels plan for (0 without
 *   subgroups; 4 where the browser does not report it).
 * @property {number} subgroupMaxSize The largest subgroup size (0 without subgroups).
 * @property {boolean} intDotAvailable Whether the browser's WGSL has packed-integer dot products
 *   (the `packed_4x8_integer_dot_product` language feature).
 * @property {boolean} intDot Whether the engine multiplies with them ({@link LoadOptions.intDot}).
 * @property {boolean} timestampQuery `timestamp-query`: whether `engine.benchmark()` can time each kernel.
 */

/**
 * The device limits the engine was given.
 * @typedef {object} LimitsInfo
 * @property {number} maxBufferSize
 * @property {number} maxStorageBufferBindingSize
 * @property {number} maxComputeInvocationsPerWorkgroup
 * @property {number} maxComputeWorkgroupStorageSize
 * @property {number} maxStorageBuffersPerShaderStage
 */

/**
 * Facts about the load that made this engine.
 * @typedef {object} LoadInfo
 * @property {number} seconds Wall time of the whole load.
 * @property {number} bytesPerSecond Model bytes per second over the whole load.
 * @property {number} fromCacheBytes Bytes of shards that were complete in the cache.
 * @property {number} wasmMemoryBytes Size of the wasm memory after the load (its peak: wasm memory never shrinks).
 * @property {Array<{code: LoadWarningCode, message: string}>} warnings The warnings the load
 *   reported (see {@link LoadOptions.onWarning}).
 */

/**
 * `engine.info`: the model, the GPU and the load.
 * @typedef {object} EngineInfo
 * @property {ModelInfo} model
 * @property {AdapterInfo} adapter
 * @property {FeatureInfo} features
 * @property {KernelInfo} kernels
 * @property {LimitsInfo} limits
 * @property {LoadInfo} load
 */
