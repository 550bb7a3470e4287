// @ts-check
// The page's side of the engine worker (./worker.js): calls become messages of the ./rpc.js
// protocol, and the worker's answers settle them or feed a stream.

import { asyncQueue } from './async-queue.js';
import { ErrorCode, LlamaError, abortError } from './errors.js';
import { deserializeError } from './rpc.js';

/**
 * What a pending request does with the worker's messages.
 * @typedef {object} Pending
 * @property {(value: any) => void} resolve
 * @property {(error: unknown) => void} reject
 * @property {((value: any) => void) | undefined} [onItem]
 * @property {(() => void) | undefined} [onEnd]
 * @property {((progress: any) => void) | undefined} [onProgress]
 * @property {((event: any) => void) | undefined} [onWarning]
 */

/** Runs EngineCore in a worker and turns calls into messages. */
export class WorkerClient {
  /** @param {Worker} worker */
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    /** @type {Map<number, Pending>} */
    this.pending = new Map();
    worker.onmessage = (ev) => this._receive(ev.data);
    worker.onerror = (ev) => {
      const err = new LlamaError(ErrorCode.GPU_ERROR, `the engine worker failed: ${ev.message || 'script error (is worker.js served beside index.js?)'}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  /** @param {any} m */
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

  /**
   * @param {object} msg
   * @param {AbortSignal | undefined} signal
   * @param {Partial<Pending>} handlers
   * @returns {Promise<any>}
   */
  _send(msg, signal, handlers) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      this.pending.set(id, { resolve, reject, ...handlers });
      signal?.addEventListener('abort', () => this.worker.postMessage({ type: 'abort', id }), { once: true });
      this.worker.postMessage({ ...msg, id });
    });
  }

  /**
   * One request, one answer.
   * @param {string} type
   * @param {object} fields
   * @param {AbortSignal} [signal]
   * @param {Partial<Pending>} [handlers]
   * @returns {Promise<any>}
   */
  request(type, fields, signal, handlers = {}) {
    return this._send({ type, ...fields }, signal, handlers);
  }

  /**
   * A stream request as an async iterable; breaking out of the loop stops the generation.
   * @param {string} method
   * @param {unknown[]} args
   * @param {AbortSignal} [signal]
   * @returns {AsyncIterable<any>}
   */
  stream(method, args, signal) {
    const id = this.nextId;
    const worker = this.worker;
    const q = asyncQueue(signal, { onReturn: () => worker.postMessage({ type: 'return', id }) });
    this._send({ type: 'stream', method, args }, signal, { onItem: q.push, onEnd: q.end }).catch(q.fail);
    return q.iterable;
  }

  terminate() {
    this.worker.terminate();
  }
}
