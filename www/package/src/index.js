// @ts-check
// llama-webgpu: Llama 3.x inference in the browser on WebGPU, with an OpenAI-style API.
//
//   const engine = await LlamaEngine.load('https://host/Llama-3.1-8B-Instruct-Q4_K_M-00001-of-00003.gguf',
//     { onProgress: (p) => console.log(p.phase, p.loadedBytes / p.totalBytes) });
//   const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi!' }] });
//
// By default the engine runs in a dedicated Web Worker (./worker.js) and this class is a proxy
// with the same API; `{worker: false}` runs it in the calling thread. The typedefs below are the
// package's public types: its TypeScript declarations are generated from this file.

import { ErrorCode, LlamaError, toLlamaError } from './errors.js';
import { hasInCache, deleteFromCache } from './fetch.js';
import { cloneable } from './rpc.js';
import { isSupported, requireWebGpu } from './webgpu.js';
import { WorkerClient } from './worker-client.js';

export { ErrorCode, LlamaError };

/** @typedef {import('./errors.js').LlamaErrorDetails} LlamaErrorDetails */
/** @typedef {import('./sources.js').ModelSource} ModelSource */
/** @typedef {import('./progress.js').LoadProgress} LoadProgress */
/** @typedef {import('./progress.js').LoadWarningCode} LoadWarningCode */
/** @typedef {import('./progress.js').LoadWarning} LoadWarning */
/** @typedef {import('./load-info.js').LoadOptions} LoadOptions */
/** @typedef {import('./load-info.js').ModelInfo} ModelInfo */
/** @typedef {import('./load-info.js').MemoryPlan} MemoryPlan */
/** @typedef {import('./load-info.js').AdapterInfo} AdapterInfo */
/** @typedef {import('./load-info.js').FeatureInfo} FeatureInfo */
/** @typedef {import('./load-info.js').LimitsInfo} LimitsInfo */
/** @typedef {import('./load-info.js').LoadInfo} LoadInfo */
/** @typedef {import('./load-info.js').EngineInfo} EngineInfo */
/** @typedef {import('./openai-request.js').SamplingOptions} SamplingOptions */
/** @typedef {import('./openai-request.js').ResponseFormat} ResponseFormat */
/** @typedef {import('./openai-request.js').CompletionRequestBase} CompletionRequestBase */
/** @typedef {import('./openai-request.js').ChatCompletionContentPartText} ChatCompletionContentPartText */
/** @typedef {import('./openai-request.js').ChatRole} ChatRole */
/** @typedef {import('./openai-request.js').ChatCompletionMessageParam} ChatCompletionMessageParam */
/** @typedef {import('./openai-request.js').ChatCompletionRequest} ChatCompletionRequest */
/** @typedef {import('./openai-request.js').ChatCompletionRequestStreaming} ChatCompletionRequestStreaming */
/** @typedef {import('./openai-request.js').ChatCompletionRequestNonStreaming} ChatCompletionRequestNonStreaming */
/** @typedef {import('./openai-request.js').CompletionRequest} CompletionRequest */
/** @typedef {import('./openai-request.js').CompletionRequestStreaming} CompletionRequestStreaming */
/** @typedef {import('./openai-request.js').CompletionRequestNonStreaming} CompletionRequestNonStreaming */
/** @typedef {import('./memory-plan.js').ModelShape} ModelShape */
/** @typedef {import('./memory-plan.js').PlanOptions} PlanOptions */
/** @typedef {import('./openai-request.js').GenerateOptions} GenerateOptions */
/** @typedef {import('./tools.js').ChatCompletionTool} ChatCompletionTool */
/** @typedef {import('./tools.js').ChatCompletionToolChoiceOption} ChatCompletionToolChoiceOption */
/** @typedef {import('./tools.js').ChatCompletionMessageToolCall} ChatCompletionMessageToolCall */
/** @typedef {import('./openai-response.js').FinishReason} FinishReason */
/** @typedef {import('./benchmark.js').BenchmarkOptions} BenchmarkOptions */
/** @typedef {import('./benchmark.js').BenchmarkResult} BenchmarkResult */
/** @typedef {import('./benchmark.js').KernelTime} KernelTime */
/** @typedef {import('./openai-response.js').TopLogprob} TopLogprob */
/** @typedef {import('./openai-response.js').TokenLogprob} TokenLogprob */
/** @typedef {import('./openai-response.js').ChoiceLogprobs} ChoiceLogprobs */
/** @typedef {import('./openai-response.js').UsageExtra} UsageExtra */
/** @typedef {import('./openai-response.js').CompletionUsage} CompletionUsage */
/** @typedef {import('./openai-response.js').ChatCompletionMessage} ChatCompletionMessage */
/** @typedef {import('./openai-response.js').ChatCompletionChoice} ChatCompletionChoice */
/** @typedef {import('./openai-response.js').ChatCompletion} ChatCompletion */
/** @typedef {import('./openai-response.js').ChatCompletionChunkDelta} ChatCompletionChunkDelta */
/** @typedef {import('./openai-response.js').ChatCompletionChunkChoice} ChatCompletionChunkChoice */
/** @typedef {import('./openai-response.js').ChatCompletionChunk} ChatCompletionChunk */
/** @typedef {import('./openai-response.js').CompletionChoice} CompletionChoice */
/** @typedef {import('./openai-response.js').Completion} Completion */
/** @typedef {import('./openai-response.js').CompletionChunkChoice} CompletionChunkChoice */
/** @typedef {import('./openai-response.js').CompletionChunk} CompletionChunk */
/** @typedef {import('./openai-response.js').GeneratedToken} GeneratedToken */
/** @typedef {import('./openai-response.js').ChatCompletions} ChatCompletions */
/** @typedef {import('./openai-response.js').Completions} Completions */

/**
 * Options of {@link LlamaEngine.tokenize}.
 * @typedef {object} TokenizeOptions
 * @property {boolean} [addBos] Put the BOS token first when the model uses one. Default `true`.
 * @property {boolean} [parseSpecial] Turn special-token text such as `<|eot_id|>` into its id. Default `false`.
 */

/**
 * Options of {@link LlamaEngine.detokenize}.
 * @typedef {object} DetokenizeOptions
 * @property {boolean} [renderSpecial] Include the text of control tokens (`<|eot_id|>`). Default `false`.
 */

const unloaded = () => new LlamaError(ErrorCode.NOT_LOADED, 'the model was unloaded');

/**
 * How a LlamaEngine reaches its engine: in this thread (`_core`) or through the worker
 * (`_client`); both null once unloaded. These live on the instance (tests reach `engine._core`)
 * but outside the class's declared members, so the generated typings show only the public API.
 * @param {LlamaEngine} engine
 * @returns {{_core: import('./engine.js').EngineCore | null, _client: WorkerClient | null}}
 */
const backend = (engine) => /** @type {any} */ (engine);

/**
 * A request of chat or text completions, in this thread or in the worker.
 * @param {LlamaEngine} engine
 * @param {'chat' | 'completions'} method
 * @param {any} req
 * @returns {Promise<any>}
 */
function request(engine, method, req) {
  const { _core: core, _client: client } = backend(engine);
  if (core) return method === 'chat' ? core.chat.completions.create(req) : core.completions.create(req);
  if (!client) return Promise.reject(unloaded());
  if (req?.stream) return Promise.resolve(client.stream(method, [cloneable(req)], req.signal));
  return client.request('call', { method, args: [cloneable(req)] }, req?.signal);
}

/**
 * Any other engine method, in this thread or in the worker.
 * @param {LlamaEngine} engine
 * @param {'tokenize' | 'detokenize' | 'resetChat' | 'benchmark' | 'reload' | 'unload'} method
 * @param {...any} args
 * @returns {Promise<any>}
 */
function call(engine, method, ...args) {
  const { _core: core, _client: client } = backend(engine);
  if (core) return Promise.resolve().then(() => /** @type {any} */ (core)[method](...args));
  if (!client) return Promise.reject(unloaded());
  return client.request('call', { method, args });
}

/**
 * A Llama model loaded onto the GPU. Create one with {@link LlamaEngine.load}; talk to it with
 * `engine.chat.completions.create()` (OpenAI's Chat Completions shapes),
 * `engine.completions.create()`, or the lower-level `engine.generate()`.
 *
 * By default the engine runs in a dedicated Web Worker and this object is a proxy with the same
 * API; `{worker: false}` runs it in the calling thread.
 */
export class LlamaEngine {
  /**
   * Use {@link LlamaEngine.load}.
   * @private
   * @param {import('./engine.js').EngineCore | null} core
   * @param {WorkerClient | null} client
   * @param {EngineInfo} info
   */
  constructor(core, client, info) {
    Object.assign(this, { _core: core, _client: client });
    /**
     * Model, adapter and load facts.
     * @readonly
     * @type {EngineInfo}
     */
    this.info = info;
    /**
     * OpenAI-style chat completions.
     * @readonly
     * @type {{readonly completions: ChatCompletions}}
     */
    this.chat = { completions: { create: (req) => request(this, 'chat', req) } };
    /**
     * OpenAI-style (legacy) text completions.
     * @readonly
     * @type {Completions}
     */
    this.completions = { create: (req) => request(this, 'completions', req) };
  }

  /**
   * Whether WebGPU and an adapter are available here (never rejects).
   * @returns {Promise<boolean>}
   */
  static isSupported() {
    return isSupported();
  }

  /**
   * Loads a GGUF model straight into GPU memory as it downloads (or as it is read from the cache
   * or a File): the whole file is never held in memory.
   *
   * ```ts
   * import { LlamaEngine } from 'llama-webgpu';
   *
   * const controller = new AbortController();
   * const engine = await LlamaEngine.load(
   *   'https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf',
   *   {
   *     signal: controller.signal,
   *     onProgress: (p) => console.log(p.phase, `${(100 * p.loadedBytes / p.totalBytes).toFixed(1)}%`),
   *   },
   * );
   * console.log(engine.info.model.contextSize, engine.info.features);
   * ```
   * @param {ModelSource} source a URL (the first shard of a split model is enough), the URLs of
   *   all shards, a File, or the Files of all shards
   * @param {LoadOptions} [options] progress, cancellation, context size, cache, worker, precision, subgroups, intDot, tuning, chat template, integrity
   * @returns {Promise<LlamaEngine>} the loaded engine
   * @throws {LlamaError} `NO_WEBGPU`, `NETWORK_ERROR`, `BAD_GGUF`, `BAD_SPLIT`, `BAD_MODEL`,
   *   `UNSUPPORTED_TENSOR_TYPE`, `UNSUPPORTED_ARCHITECTURE`, `OUT_OF_MEMORY`, `INTEGRITY_ERROR`,
   *   `ABORTED`, `INVALID_ARGUMENT`, ...
   */
  static async load(source, options = {}) {
    // Checked here too, so a page without WebGPU fails at once, without starting a worker.
    requireWebGpu();
    const useWorker = (options.worker ?? true) && typeof Worker !== 'undefined';
    if (!useWorker) {
      // engine.js (with the wasm glue) loads lazily: in worker mode only the worker needs it.
      const { EngineCore } = await import('./engine.js');
      const core = await EngineCore.load(source, options);
      return new LlamaEngine(core, null, core.info);
    }
    // URLs cross to the worker as absolute strings: URL objects cannot be cloned, and a
    // relative URL must mean the same as it does for this page (and its cache key).
    source = absoluteSource(source);
    const opts = cloneable(options);
    for (const k of /** @type {const} */ (['wasmUrl', 'workerUrl'])) if (opts[k] !== undefined) opts[k] = absoluteUrl(opts[k]);
    let worker;
    try {
      // The literal `new URL('./worker.js', import.meta.url)` lets bundlers (Vite, webpack)
      // find and emit the worker.
      worker = options.workerUrl
        ? new Worker(/** @type {string} */ (opts.workerUrl), { type: 'module' })
        : new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    } catch (e) {
      throw new LlamaError(ErrorCode.GPU_ERROR, `could not start the engine worker: ${/** @type {Error} */ (e).message}`);
    }
    const client = new WorkerClient(worker);
    try {
      const info = await client.request('load', { source, options: opts }, options.signal, {
        onProgress: options.onProgress,
        onWarning: options.onWarning,
      });
      return new LlamaEngine(null, client, info);
    } catch (e) {
      client.terminate();
      throw toLlamaError(e);
    }
  }

  /**
   * Whether every shard of a URL source is complete in the persistent cache, so a load works
   * offline. Never touches the network; false for Files and where the cache is unavailable.
   * Relative URLs resolve against the page here (and against the worker script in a worker-mode
   * load), so pass absolute URLs.
   * @param {ModelSource} source
   * @returns {Promise<boolean>}
   * @throws {LlamaError} `INVALID_ARGUMENT` or `BAD_SPLIT` for a malformed source
   */
  static hasModelInCache(source) {
    return hasInCache(source);
  }

  /**
   * What a model of this shape would take in GPU memory on a device, before anything is
   * downloaded: the plan a load makes at the model's first header (the same arithmetic), for
   * an estimate or a fit check. Runs in this thread, loading the engine's wasm here the first
   * time.
   *
   * ```ts
   * const adapter = await navigator.gpu.requestAdapter();
   * const device = {
   *   shaderF16: adapter.features.has('shader-f16'),
   *   maxBufferSize: adapter.limits.maxBufferSize,
   *   maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
   * };
   * const plan = await LlamaEngine.planMemory(
   *   { nLayer: 32, nEmbd: 4096, nHead: 32, nHeadKv: 8, nFf: 14336, nVocab: 128256, contextLength: 131072 },
   *   { weightsBytes: 4.92e9, contextSize: 8192, device });
   * plan.totalBytes; // weights + KV cache + activations
   * ```
   * @param {ModelShape} shape
   * @param {PlanOptions} options
   * @returns {Promise<MemoryPlan>}
   * @throws {LlamaError} `INVALID_ARGUMENT` for a shape or device it cannot plan for
   */
  static planMemory(shape, options) {
    // Imported when asked: an app that never plans does not load the wasm in this thread.
    return import('./memory-plan.js').then((m) => m.planMemory(shape, options));
  }

  /**
   * Deletes every shard of a URL source from the persistent cache, complete or partial.
   * @param {ModelSource} source
   * @returns {Promise<boolean>} true when at least one entry was removed
   * @throws {LlamaError} `INVALID_ARGUMENT` or `BAD_SPLIT` for a malformed source
   */
  static deleteModelFromCache(source) {
    return deleteFromCache(source);
  }

  /**
   * Low-level generation from a prompt string (tokenized with BOS when the model uses one, no chat
   * template) or token ids: one `{id, text}` per token (`text` is what became final; it may be
   * empty mid-character). Breaking out of the loop stops the generation; an aborted `signal`
   * makes the next iteration throw `ABORTED`.
   *
   * ```ts
   * for await (const { text } of engine.generate('Once upon a time', { max_tokens: 32, temperature: 0 })) {
   *   out.textContent += text;
   * }
   * ```
   * @param {string | readonly number[] | Uint32Array} prompt
   * @param {GenerateOptions} [options]
   * @returns {AsyncIterable<GeneratedToken>}
   */
  generate(prompt, options = {}) {
    const { _core: core, _client: client } = backend(this);
    if (core) return core.generate(prompt, options);
    if (!client) throw unloaded();
    return client.stream('generate', [prompt, cloneable(options)], options.signal);
  }

  /**
   * Token ids of `text` (with BOS when the model uses one, unless `addBos: false`).
   * @param {string} text
   * @param {TokenizeOptions} [options]
   * @returns {Promise<number[]>}
   */
  tokenize(text, options) {
    return call(this, 'tokenize', text, options);
  }

  /**
   * Text of token ids (control tokens only with `renderSpecial: true`).
   * @param {readonly number[] | Uint32Array} ids
   * @param {DetokenizeOptions} [options]
   * @returns {Promise<string>}
   */
  detokenize(ids, options) {
    return call(this, 'detokenize', Array.from(ids), options);
  }

  /**
   * Ends the running generation early, normally: it resolves (or its stream ends) with
   * `finish_reason: 'abort'` and the text so far. Requests still queued behind it run.
   * @returns {void}
   */
  interrupt() {
    const { _core: core, _client: client } = backend(this);
    if (core) core.interrupt();
    else client?.worker.postMessage({ type: 'interrupt' });
  }

  /**
   * Forgets the conversation in the KV cache (after the running request); the next request
   * prefills from scratch.
   * @returns {Promise<void>}
   */
  resetChat() {
    return call(this, 'resetChat');
  }

  /**
   * Measures this device on the loaded model, after the running request: a fixed
   * pseudo-random prompt of `promptTokens` is prefilled and `decodeTokens` greedy steps are
   * timed as generation runs them; where the device has `timestamp-query`, each kernel is then
   * timed over `profileSteps` more steps. The result is plain data (adapter, features, limits,
   * tokens per second, milliseconds per kernel, weight bandwidth) for `JSON.stringify`. Needs
   * the three counts in positions of context (`INVALID_ARGUMENT` otherwise); the conversation
   * in the KV cache is forgotten.
   * @param {BenchmarkOptions} [options]
   * @returns {Promise<BenchmarkResult>}
   */
  benchmark(options = {}) {
    return call(this, 'benchmark', cloneable(options));
  }

  /**
   * Loads the model again on a new GPU device — after a `DEVICE_LOST` error, or with changed
   * options such as `contextSize`. Reads from the cache when the model was cached; the
   * conversation in the KV cache is forgotten.
   * @param {Partial<Pick<LoadOptions, 'contextSize' | 'precision' | 'subgroups' | 'intDot' | 'tuning' | 'chatTemplate' | 'cache'>>} [options]
   * @returns {Promise<EngineInfo>}
   */
  async reload(options = {}) {
    // `info` is read-only to apps; a reload is what replaces it.
    Object.assign(this, { info: await call(this, 'reload', cloneable(options)) });
    return this.info;
  }

  /**
   * Frees the GPU memory and terminates the worker. The engine cannot be used afterwards.
   * @returns {Promise<void>}
   */
  async unload() {
    const b = backend(this);
    if (!b._core && !b._client) return;
    await call(this, 'unload');
    b._client?.terminate();
    b._client = null;
  }
}

/** @param {string | URL} u */
function absoluteUrl(u) {
  const base = globalThis.location?.href;
  return base ? new URL(String(u), base).href : String(u);
}

/** @param {ModelSource} source @returns {ModelSource} */
function absoluteSource(source) {
  if (typeof source === 'string' || source instanceof URL) return absoluteUrl(source);
  if (Array.isArray(source)) return source.map((s) => (typeof s === 'string' || s instanceof URL ? absoluteUrl(s) : s));
  return source;
}

export default LlamaEngine;
