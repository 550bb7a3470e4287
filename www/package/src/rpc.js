// @ts-check
// The message protocol between LlamaEngine (page) and the engine's Web Worker. Requests carry an
// id; the worker answers with `result`/`error` once, or with `item`s then `end`/`error` for
// streams, and sends `progress`/`warning` during a load. AbortSignals cannot cross threads, so an
// aborted signal becomes an `abort` message for that id.

import { LlamaError, ErrorCode } from './errors.js';

/**
 * Plain-data form of an error, for postMessage.
 * @param {any} e
 * @returns {{code: import('./errors.js').ErrorCode, message: string, details?: import('./errors.js').LlamaErrorDetails}}
 */
export function serializeError(e) {
  return {
    code: e?.code ?? ErrorCode.GPU_ERROR,
    message: e?.message ?? String(e),
    details: e?.details,
  };
}

/**
 * The LlamaError again, on the receiving side.
 * @param {ReturnType<typeof serializeError>} e
 */
export function deserializeError(e) {
  return new LlamaError(e.code, e.message, e.details);
}

/**
 * Copies a request without the fields that cannot be cloned (signal, callbacks).
 * @param {any} obj
 * @returns {any}
 */
export function cloneable(obj) {
  if (!obj || typeof obj !== 'object') return obj;
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === 'function' || k === 'signal') continue;
    out[k] = v;
  }
  return out;
}
