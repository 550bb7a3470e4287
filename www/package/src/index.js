// llama-webgpu: Llama 3.x inference in the browser on WebGPU, with an OpenAI-style API.
//
//   const engine = await LlamaEngine.load('https://host/Llama-3.1-8B-Instruct-Q4_K_M-00001-of-00003.gguf',
//     { onProgress: (p) => console.log(p.phase, p.loadedBytes / p.totalBytes) });
//   const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi!' }] });
//
// By default the engine runs in a dedicated Web Worker (./worker.js) and this class is a proxy
// with the same API; `{worker: false}` runs it in the calling thread.

import { ErrorCode, LlamaError, abortError, toLlamaError } from './errors.js';
import { cloneable, deserializeError } from './rpc.js';
import { hasInCache, deleteFromCache } from './fetch.js';

export { ErrorCode, LlamaError };

/** Runs EngineCore in a worker and turns calls into messages. */
class WorkerClient {
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    /** id → {resolve, reject, onItem, onEnd, onProgress, onWarning} */
    this.pending = new Map();
    worker.onmessage = (ev) => this._receive(ev.data);
    worker.onerror = (ev) => {
      const err = new LlamaError(ErrorCode.GPU_ERROR, `the engine worker failed: ${ev.message || 'script error (is worker.js served beside index.js?)'}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  _receive(m) {
    const p = this.pending.get(m.id);
    if (!p) return;
    switch (m.type) {
      case 'progress': p.onProgress?.(m.progress); break;
      case 'warning': p.onWarning?.(m.event); break;
      case 'item': p.onItem?.(m.value); break;
      case 'end': this.pending.delete(m.id); p.onEnd?.(); break;
      case 'result': this.pending.delete(m.id); p.resolve(m.value); break;
      case 'error': this.pending.delete(m.id); p.reject(deserializeError(m.error)); break;
    }
  }

  _send(msg, signal, handlers) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      this.pending.set(id, { resolve, reject, ...handlers });
      signal?.addEventListener('abort', () => this.worker.postMessage({ type: 'abort', id }), { once: true });
      this.worker.postMessage({ ...msg, id });
    });
  }

  request(type, fields, signal, handlers = {}) {
    return this._send({ type, ...fields }, signal, handlers);
  }

  /** A stream request as an async iterable; breaking out of the loop stops the generation. */
  stream(method, args, signal) {
    const items = [];
    let wake = null;
    let ended = false;
    let failure = null;
    const id = this.nextId;
    this._send({ type: 'stream', method, args }, signal, {
      onItem: (v) => { items.push(v); wake?.(); },
      onEnd: () => { ended = true; wake?.(); },
    }).catch((e) => { failure = e; ended = true; wake?.(); });
    const worker = this.worker;
    return {
      [Symbol.asyncIterator]() { return this; },
      async next() {
        for (;;) {
          if (signal?.aborted) throw abortError(signal);
          if (items.length) return { value: items.shift(), done: false };
          if (failure) throw failure;
          if (ended) return { value: undefined, done: true };
          await new Promise((r) => { wake = r; });
          wake = null;
        }
      },
      async return() {
        worker.postMessage({ type: 'return', id });
        return { value: undefined, done: true };
      },
    };
  }

  terminate() {
    this.worker.terminate();
  }
}

/**
 * A Llama model loaded onto the GPU. Create with {@link LlamaEngine.load}; talk to it with
 * `engine.chat.completions.create()` (OpenAI's Chat Completions shapes),
 * `engine.completions.create()`, or the lower-level `engine.generate()`.
 */
export class LlamaEngine {
  /** @private use LlamaEngine.load */
  constructor(core, client, info) {
    this._core = core;
    this._client = client;
    /** Model, adapter and load facts. */
    this.info = info;
    this.chat = { completions: { create: (req) => this._request('chat', req) } };
    this.completions = { create: (req) => this._request('completions', req) };
  }

  /** Whether WebGPU and an adapter are available here. */
  static isSupported() {
    // engine.js (the wasm glue) loads lazily: in worker mode only the worker needs it.
    return import('./engine.js').then((m) => m.isSupported());
  }

  /**
   * Loads a GGUF model straight into GPU memory as it downloads.
   * @param {string|string[]|Blob|Blob[]} source a URL (the first shard of a split model is
   *   enough), a list of URLs, a File, or the Files of all shards
   * @param {object} [options]
   * @param {(p: {phase: 'download'|'upload'|'compile', loadedBytes: number, totalBytes: number,
   *   tensorsLoaded: number, tensorsTotal: number, bytesPerSecond: number}) => void} [options.onProgress]
   * @param {AbortSignal} [options.signal] cancels the load and frees what was allocated
   * @param {number} [options.contextSize] tokens of context (default: the model's, at most 4096
   *   and at most what the device's limits allow; a context that does not fit rejects with
   *   OUT_OF_MEMORY at the first header, before the weights download)
   * @param {boolean} [options.cache=true] keep downloaded shards in the browser's origin-private file system
   * @param {boolean} [options.worker=true] run the engine in a Web Worker
   * @param {'auto'|'f16'|'f32'} [options.precision='auto'] f32 forces the kernels without shader-f16
   * @returns {Promise<LlamaEngine>}
   */
  static async load(source, options = {}) {
    // Checked here too, so a page without WebGPU fails at once, without starting a worker.
    if (!globalThis.navigator?.gpu) {
      throw new LlamaError(ErrorCode.NO_WEBGPU, 'WebGPU is not available in this browser (navigator.gpu is missing); use a recent Chrome or Edge, or enable WebGPU');
    }
    const useWorker = (options.worker ?? true) && typeof Worker !== 'undefined';
    if (!useWorker) {
      const { EngineCore } = await import('./engine.js');
      const core = await EngineCore.load(source, options);
      return new LlamaEngine(core, null, core.info);
    }
    // URLs cross to the worker as absolute strings: URL objects cannot be cloned, and a
    // relative URL must mean the same as it does for this page (and its cache key).
    source = absoluteSource(source);
    const opts = cloneable(options);
    for (const k of ['wasmUrl', 'workerUrl']) if (opts[k] !== undefined) opts[k] = absoluteUrl(opts[k]);
    let worker;
    try {
      // The literal `new URL('./worker.js', import.meta.url)` lets bundlers (Vite, webpack)
      // find and emit the worker.
      worker = options.workerUrl
        ? new Worker(opts.workerUrl, { type: 'module' })
        : new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    } catch (e) {
      throw new LlamaError(ErrorCode.GPU_ERROR, `could not start the engine worker: ${e.message}`);
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

  /** Whether every shard of `source` is in the persistent cache (loads then work offline). */
  static hasModelInCache(source) {
    return hasInCache(source);
  }

  /** Deletes `source`'s shards from the persistent cache. */
  static deleteModelFromCache(source) {
    return deleteFromCache(source);
  }

  _request(method, req) {
    if (!this._core && !this._client) {
      return Promise.reject(new LlamaError(ErrorCode.NOT_LOADED, 'the model was unloaded'));
    }
    if (this._core) {
      return method === 'chat' ? this._core.chat.completions.create(req) : this._core.completions.create(req);
    }
    if (req?.stream) {
      return Promise.resolve(this._client.stream(method, [cloneable(req)], req.signal));
    }
    return this._client.request('call', { method, args: [cloneable(req)] }, req?.signal);
  }

  _call(method, ...args) {
    if (!this._core && !this._client) {
      return Promise.reject(new LlamaError(ErrorCode.NOT_LOADED, 'the model was unloaded'));
    }
    if (this._core) return Promise.resolve().then(() => this._core[method](...args));
    return this._client.request('call', { method, args });
  }

  /**
   * Generates from a prompt string (tokenized with BOS) or token ids: an async iterable of
   * `{id, text}`, one per token (`text` is what became final; it may be empty mid-character).
   */
  generate(prompt, options = {}) {
    if (!this._core && !this._client) throw new LlamaError(ErrorCode.NOT_LOADED, 'the model was unloaded');
    if (this._core) return this._core.generate(prompt, options);
    return this._client.stream('generate', [prompt, cloneable(options)], options.signal);
  }

  /** Token ids of `text`. Options: `{addBos = true, parseSpecial = false}`. */
  tokenize(text, options) {
    return this._call('tokenize', text, options);
  }

  /** Text of token ids. Options: `{renderSpecial = false}`. */
  detokenize(ids, options) {
    return this._call('detokenize', Array.from(ids), options);
  }

  /** Stops the running generation; it finishes with `finish_reason: 'abort'`. */
  interrupt() {
    if (this._core) this._core.interrupt();
    else this._client?.worker.postMessage({ type: 'interrupt' });
  }

  /** Forgets the conversation in the KV cache; the next request prefills from scratch. */
  resetChat() {
    return this._call('resetChat');
  }

  /**
   * Loads the model again on a new GPU device — after a `DEVICE_LOST` error, or with changed
   * options (`{contextSize}`, say). Reads from the cache when the model was cached.
   */
  async reload(options = {}) {
    this.info = await this._call('reload', cloneable(options));
    return this.info;
  }

  /** Frees the GPU memory (and the worker). */
  async unload() {
    if (!this._core && !this._client) return;
    await this._call('unload');
    this._client?.terminate();
    this._client = null;
  }
}

function absoluteUrl(u) {
  const base = globalThis.location?.href;
  return base ? new URL(String(u), base).href : String(u);
}

function absoluteSource(source) {
  if (typeof source === 'string' || source instanceof URL) return absoluteUrl(source);
  if (Array.isArray(source)) return source.map((s) => (typeof s === 'string' || s instanceof URL ? absoluteUrl(s) : s));
  return source;
}

export default LlamaEngine;
