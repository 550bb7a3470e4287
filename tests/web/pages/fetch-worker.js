// Module worker for tests/web/fetch.test.mjs: runs the same helpers off the main thread.
import { call } from './fetch-helpers.js';

self.onmessage = async ({ data: { id, fn, args } }) => {
  try {
    self.postMessage({ id, result: await call[fn](...args) });
  } catch (e) {
    self.postMessage({ id, error: { name: e.name, code: e.code, message: e.message } });
  }
};
self.postMessage({ ready: true });
