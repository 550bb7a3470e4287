// Chrome's WebGPU in Node: Dawn for Node (npm `webgpu`, the dawn.node addon: Chrome's
// implementation and its Tint compiler) on Mesa 25's lavapipe (.cache/mesa25, from
// scripts/setup), installed as a browser's globals. Preload it (`node --import
// ./tests/dawn/globals.mjs`, or NODE_OPTIONS for wasm-bindgen-test-runner's Node) and the wasm
// engine runs through wgpu's WebGPU backend as in a page, with the features real GPUs have:
// shader-f16, subgroups (of 8), timestamp-query and dot4I8Packed. Headless Chromium has only
// SwiftShader, without shader-f16.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ICD = path.join(ROOT, '.cache/mesa25/icd.json');
if (!fs.existsSync(ICD)) throw new Error(`${ICD} is missing: run scripts/setup (Mesa 25's lavapipe for Dawn)`);
// Read when Dawn creates its Vulkan instance, not at process start: setting them here is enough.
// Only Mesa 25's lavapipe: Dawn rejects Debian 12's (Mesa 22.3).
process.env.VK_DRIVER_FILES = ICD;
process.env.XDG_RUNTIME_DIR ??= '/tmp';

const require = createRequire(path.join(ROOT, 'scripts/node_modules/'));
const { create, globals } = require('webgpu');

// Dawn for Node waits for the GPU by busy polling: while any promise of its (mapAsync,
// onSubmittedWorkDone) is pending, it processes events and re-queues itself with the global
// `setImmediate` (its AsyncRunner, crbug.com/dawn/1127). On lavapipe that polling takes one of
// this machine's two cores away from the driver's threads for as long as the GPU works:
// measured 870,930 polls and 3.6 s of the main thread's CPU in a 4.2 s decode, which then ran at
// 0.66× the native CLI (same driver, same kernels). A browser does not do this: Chrome's
// renderer is told by its GPU process when the work is done. So the harness paces the binding's
// polls (the only native-code callbacks given to setImmediate here) to one per millisecond, on
// a timer that leaves the event loop free: a result is seen at most 1 ms late (2% of a SmolLM2
// decode step here), and the driver gets the machine as it would under a browser.
// DAWN_BUSY_POLL=1, or `polling.busy = true` at run time, keeps the binding's own polling, for
// comparison (scripts/dawn-bench.mjs measures both); `polling.paced` counts the paced polls.
export const polling = { busy: Boolean(process.env.DAWN_BUSY_POLL), paced: 0 };
const immediate = globalThis.setImmediate;
const isNative = (f) => typeof f === 'function' && Function.prototype.toString.call(f).includes('[native code]');
globalThis.setImmediate = Object.assign(function setImmediate(callback, ...args) {
  if (polling.busy || args.length > 0 || !isNative(callback)) return immediate(callback, ...args);
  polling.paced++;
  return setTimeout(callback, 1);
}, immediate);

// The GPU* classes (web_subgroups.rs wraps GPUAdapter.prototype.requestDevice).
Object.assign(globalThis, globals);
// DAWN_FLAGS: Dawn for Node's flags, comma-separated, for experiments (e.g.
// enable-dawn-features=disable_robustness); the tests set none.
const gpu = create((process.env.DAWN_FLAGS ?? '').split(',').filter(Boolean));
// Dawn for Node's set-likes return arrays from keys(), where browsers return iterators (wgpu
// calls next() on them): give wgpu the language features as a real Set.
const languageFeatures = new Set(gpu.wgslLanguageFeatures);
Object.defineProperty(gpu, 'wgslLanguageFeatures', { get: () => languageFeatures });
Object.defineProperty(globalThis, 'navigator', {
  value: { gpu, userAgent: `Node.js ${process.version} (Dawn for Node)` },
  configurable: true,
  writable: true,
});
// wgpu's web backend looks for navigator.gpu only where a `Window` (or `WorkerGlobalScope`)
// global exists.
globalThis.Window ??= class Window {};
