// @ts-check
// The engine's Web Worker: hosts one EngineCore and serves LlamaEngine's requests (./rpc.js), so
// loading and generation never block the page.

import { EngineCore } from './engine.js';
import { serializeError, deserializeError } from './rpc.js';

/** @type {EngineCore | null} */
let core = null;
/** Request id → AbortController, for `abort` messages. @type {Map<number, AbortController>} */
const controllers = new Map();
/** Stream id → its async iterator, for `return` (the page left the loop early). @type {Map<number, AsyncIterator<unknown>>} */
const streams = new Map();

/** @param {object} m */
const post = (m) => self.postMessage(m);

/**
 * @param {number} id
 * @param {object} obj
 * @returns {any}
 */
function withSignal(id, obj) {
  const c = new AbortController();
  controllers.set(id, c);
  return { ...obj, signal: c.signal };
}

/** @param {any} m a message of the ./rpc.js protocol */
async function handle(m) {
  const { id } = m;
  try {
    switch (m.type) {
      case 'load': {
        const opts = withSignal(id, m.options);
        opts.onProgress = (progress) => post({ type: 'progress', id, progress });
        opts.onWarning = (event) => post({ type: 'warning', id, event });
        core = await EngineCore.load(m.source, opts);
        post({ type: 'result', id, value: core.info });
        break;
      }
      case 'static': {
        const value = await /** @type {any} */ (EngineCore)[m.method](...m.args);
        post({ type: 'result', id, value });
        break;
      }
      case 'call': {
        if (!core) throw deserializeError({ code: 'NOT_LOADED', message: 'no model is loaded' });
        const value = await callMethod(id, m.method, m.args);
        post({ type: 'result', id, value });
        break;
      }
      case 'stream': {
        if (!core) throw deserializeError({ code: 'NOT_LOADED', message: 'no model is loaded' });
        const iterable = await callMethod(id, m.method, m.args);
        const it = iterable[Symbol.asyncIterator]();
        streams.set(id, it);
        for (;;) {
          const { value, done } = await it.next();
          if (done) break;
          post({ type: 'item', id, value });
        }
        post({ type: 'end', id });
        break;
      }
      case 'abort':
        controllers.get(id)?.abort();
        return;
      case 'return':
        await streams.get(id)?.return?.();
        return;
      case 'interrupt':
        core?.interrupt();
        return;
      default:
        throw new Error(`unknown message type ${m.type}`);
    }
  } catch (e) {
    post({ type: 'error', id, error: serializeError(e) });
  } finally {
    if (m.type === 'load' || m.type === 'call' || m.type === 'stream') {
      controllers.delete(id);
      streams.delete(id);
    }
  }
}

/**
 * @param {number} id
 * @param {string} method
 * @param {any[]} args
 * @returns {any}
 */
function callMethod(id, method, args) {
  const c = /** @type {EngineCore} */ (core);
  switch (method) {
    case 'chat':
      return c.chat.completions.create(withSignal(id, args[0]));
    case 'completions':
      return c.completions.create(withSignal(id, args[0]));
    case 'generate':
      return c.generate(args[0], withSignal(id, args[1] ?? {}));
    case 'tokenize':
    case 'detokenize':
    case 'resetChat':
    case 'benchmark':
    case 'reload':
      return /** @type {any} */ (c)[method](...args);
    case 'unload': {
      const done = c.unload();
      core = null;
      return done;
    }
    default:
      throw new Error(`unknown method ${method}`);
  }
}

self.onmessage = (ev) => {
  handle(ev.data);
};
