// The llama-webgpu demo: a chat app on the npm package (../package/src/index.js), engine in a
// Web Worker. Plain ES modules, no build step, nothing fetched from any host but the page's own
// unless the user picks a remote model.
//
// This entry wires the page's sections around the state (state.js): status.js (body[data-state],
// status line, errors, notices), settings-panel.js, source.js (the model picker), loading.js
// (progress and the loaded model's facts), device-panel.js (device facts, memory estimate),
// chat.js, stats.js and bench-panel.js (the device benchmark). Sections change the state and
// react to it; none touches another's DOM.
//
// Stable hooks for tests and tools: the data-testid attributes in index.html, `body[data-state]`
// ('starting' | 'unsupported' | 'idle' | 'loading' | 'ready' | 'generating' | 'benchmarking'), and on each assistant
// message `data-done` ('false' while streaming, then 'true') and `data-finish` ('stop' | 'length' |
// 'abort' | 'error'). `window.llamaDemo` exposes the conversation and the engine.

import { LlamaEngine } from './package.js';
import { probeAdapter } from './device.js';
import { state, setPhase, setDevice, reportError } from './state.js';
import { initStatus } from './status.js';
import { initSettingsPanel } from './settings-panel.js';
import { initSourcePicker, loadKnownModels, chooseUrl } from './source.js';
import { initLoading } from './loading.js';
import { estimateShown, initDevicePanel } from './device-panel.js';
import { addMessage, initChat } from './chat.js';
import { initStats } from './stats.js';
import { initBenchPanel, lastBenchmark } from './bench-panel.js';

async function start() {
  initStatus();
  initDevicePanel();
  initSettingsPanel();
  initSourcePicker();
  initLoading();
  initChat();
  initStats();
  initBenchPanel();
  window.addEventListener('unhandledrejection', (e) => reportError(e.reason));
  const def = await loadKnownModels();
  const param = new URLSearchParams(location.search).get('model');
  setPhase('starting');
  let device = await probeAdapter();
  const supported = device.supported && (await LlamaEngine.isSupported());
  if (!supported && device.supported) device = { supported: false, reason: 'no usable GPU adapter' };
  setDevice(device);
  chooseUrl(param || def.absUrl);
  if (!supported) {
    setPhase('unsupported');
    reportError({
      code: 'NO_WEBGPU',
      message: `WebGPU is not available here (${device.reason}). This demo needs a browser with WebGPU: Chrome or Edge 113+ on desktop, or another browser with WebGPU turned on.`,
    });
    return;
  }
  // Idle means the page is complete, the memory estimate (which asks the engine's wasm) included.
  await estimateShown();
  setPhase('idle');
}

window.llamaDemo = {
  get state() {
    return state.phase;
  },
  /** The conversation so far, as sent to the engine: [{role, content}]. */
  get messages() {
    return state.messages.map((m) => ({ ...m }));
  },
  /** `usage` of the last reply (OpenAI shape; timings under `extra`). */
  get lastUsage() {
    return state.lastUsage;
  },
  /** The last device benchmark's result (`engine.benchmark()`), or null. */
  get lastBenchmark() {
    return lastBenchmark();
  },
  get engine() {
    return state.engine;
  },
  /** Shows `text` as a finished assistant message through the same renderer as streamed replies. */
  showAssistantMessage(text) {
    const v = addMessage('assistant', text);
    v.finish('stop', null);
    return v.root;
  },
};

start().catch((e) => {
  reportError(e);
  setPhase('idle');
});
