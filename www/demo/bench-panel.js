// Section: "Benchmark this device". Runs `engine.benchmark()` on the loaded model and shows its
// figures (tokens per second, weight bandwidth, milliseconds per kernel) with the JSON a user
// can copy: how we learn what real GPUs in real browsers do.

import { $, el, setFacts } from './dom.js';
import { formatBytes } from './format.js';
import { state, subscribe, setPhase, reportError, clearError } from './state.js';

const ui = {
  prompt: $('bench-prompt'),
  decode: $('bench-decode'),
  run: $('bench-run'),
  copy: $('bench-copy'),
  result: $('bench-result'),
  summary: $('bench-summary'),
  kernels: $('bench-kernels'),
  json: $('bench-json'),
};

/** @type {import('../package/src/index.js').BenchmarkResult | null} */
let last = null;

/** The last benchmark's result, or null. */
export function lastBenchmark() {
  return last;
}

const fixed = (n, d) => (Number.isFinite(n) ? n.toFixed(d) : '–');

function path(f) {
  const sg = f.subgroups ? `subgroups ${f.subgroupMinSize === f.subgroupMaxSize ? f.subgroupMinSize : `${f.subgroupMinSize}–${f.subgroupMaxSize}`}` : 'workgroup reductions';
  return [f.shaderF16 ? 'f16' : 'f32', sg, f.intDot ? 'int8 dot products' : 'f32 products'].join(' · ');
}

function show(r) {
  setFacts(ui.summary, [
    ['Adapter', r.adapter.name || String(r.adapter.vendor) || 'unknown'],
    ['Kernels', path(r.features)],
    ['Prefill', `${fixed(r.prefill.tokensPerSecond, 1)} tok/s (${r.prefill.tokens} tokens)`],
    ['Decode', `${fixed(r.decode.tokensPerSecond, 2)} tok/s · ${fixed(r.decode.msPerToken, 1)} ms/token (${r.decode.tokens} tokens)`],
    ['Weights', `${formatBytes(r.decode.weightBytesPerToken)} per token · ${fixed(r.decode.weightGBPerSecond, 2)} GB/s`],
    ['Dispatches', `${r.decode.dispatchesPerToken} per token`],
  ]);
  ui.kernels.replaceChildren();
  if (r.profile) {
    const head = el('tr');
    for (const h of ['kernel', 'ms/token', '%', 'GB/s']) head.append(el('th', '', h));
    ui.kernels.append(head);
    for (const k of r.profile) {
      const row = el('tr');
      row.append(el('td', '', k.kernel), el('td', '', fixed(k.msPerToken, 3)), el('td', '', fixed(k.percent, 1)),
        el('td', '', k.weightGBPerSecond === null ? '' : fixed(k.weightGBPerSecond, 1)));
      ui.kernels.append(row);
    }
  } else {
    const row = el('tr');
    row.append(el('td', 'muted', 'No per-kernel times: this browser offers no timestamp queries.'));
    ui.kernels.append(row);
  }
  ui.json.textContent = JSON.stringify(r, null, 2);
  ui.result.hidden = false;
  ui.copy.hidden = false;
}

/** A whole number of at least 1 from an input, or null with the error shown. */
function count(input, what) {
  const n = Number(input.value);
  if (!Number.isInteger(n) || n < 1) {
    reportError({ code: 'INVALID_ARGUMENT', message: `${what} must be a whole number from 1` });
    return null;
  }
  return n;
}

async function run() {
  if (state.phase !== 'ready' || !state.engine) return;
  const promptTokens = count(ui.prompt, 'Prompt tokens');
  const decodeTokens = count(ui.decode, 'Decode tokens');
  if (promptTokens === null || decodeTokens === null) return;
  clearError();
  const engine = state.engine;
  setPhase('benchmarking');
  try {
    last = await engine.benchmark({ promptTokens, decodeTokens });
    show(last);
  } catch (e) {
    reportError(e);
  }
  if (state.engine === engine) setPhase('ready');
}

async function copy() {
  const text = ui.json.textContent;
  try {
    await navigator.clipboard.writeText(text);
    ui.copy.textContent = 'Copied';
  } catch {
    // No clipboard permission (an insecure origin, a denied prompt): open the JSON to copy by hand.
    ui.json.parentElement.open = true;
    getSelection()?.selectAllChildren(ui.json);
    ui.copy.textContent = 'Selected: press Ctrl+C';
  }
  setTimeout(() => { ui.copy.textContent = 'Copy JSON'; }, 2000);
}

/** Wires the panel; Run is enabled while a model is loaded and idle. */
export function initBenchPanel() {
  ui.run.addEventListener('click', run);
  ui.copy.addEventListener('click', copy);
  subscribe('phase', ({ to }) => {
    ui.run.disabled = to !== 'ready';
  });
  subscribe('engine', () => {
    // A result belongs to the model it ran on.
    last = null;
    ui.result.hidden = true;
    ui.copy.hidden = true;
  });
}
