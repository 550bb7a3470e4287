// Section: the device panel. What WebGPU offers (and, once a model is loaded, what the engine uses
// of it), and the estimated GPU memory of the chosen model with its fit verdict.

import { $, el, setFacts } from './dom.js';
import { formatBytes, sourceName } from './format.js';
import { contextFor, estimateMemory, fitVerdict } from './estimate.js';
import { wantedContext } from './settings.js';
import { state, subscribe, setFit } from './state.js';

const ui = {
  deviceInfo: $('device-info'),
  memory: $('memory'),
};

function yesNo(b) {
  return b ? 'yes' : 'no';
}

function renderDevice() {
  const d = state.device;
  if (!d) return;
  if (!d.supported) {
    setFacts(ui.deviceInfo, [['WebGPU', `not available: ${d.reason}`, 'bad']]);
    return;
  }
  const info = state.engine?.info;
  const a = d.adapter;
  const name = info?.adapter?.name || a.description || [a.vendor, a.architecture].filter(Boolean).join(' ') || 'unknown adapter';
  const pairs = [
    ['WebGPU', 'available', 'good'],
    ['Adapter', `${name}${a.fallback ? ' (software fallback)' : ''}`],
  ];
  if (a.vendor || a.architecture) pairs.push(['Vendor', [a.vendor, a.architecture].filter(Boolean).join(' · ')]);
  const f16 = info ? info.features.shaderF16 : d.features.shaderF16;
  const sg = info ? info.features.subgroups : d.features.subgroups;
  pairs.push(['shader-f16', `${yesNo(d.features.shaderF16)}${info ? ` · engine uses ${f16 ? 'f16' : 'f32'} kernels` : ''}`]);
  const sgUse = info && (sg ? `uses them (size ${sizeRange(info.features)})` : 'does without');
  pairs.push(['subgroups', `${yesNo(d.features.subgroups)}${sgUse ? ` · engine ${sgUse}` : ''}`]);
  // A WGSL language feature, so only the loaded engine knows it (wgpu reads it from navigator.gpu).
  if (info) {
    const use = info.features.intDot ? 'engine uses them for decode' : 'engine multiplies in f32';
    pairs.push(['int8 dot products', `${yesNo(info.features.intDotAvailable)} · ${use}`]);
    // What a decode step fuses: a GPU folds the norms into the products and joins Q/K/V and
    // gate/up; a CPU adapter keeps kernels of their own.
    const k = info.kernels;
    const fused = [k.norm === 'fused' && 'norms', k.swiglu === 'fused' && 'SwiGLU', k.join === 'fused' && 'Q/K/V and gate/up'].filter(Boolean);
    pairs.push(['Decode fusions', fused.length ? `${fused.join(', ')} fused into the products` : 'none (kernels of their own)']);
    // A GPU gets each greedy step queued before the last token is read back; a CPU adapter,
    // whose "GPU" runs on the cores that would record it, waits.
    pairs.push(['Decode steps', k.chain === 'on' ? 'queued ahead of each readback' : 'one at a time']);
  }
  const l = info?.limits ?? d.limits;
  pairs.push(['Max buffer', formatBytes(l.maxBufferSize)]);
  pairs.push(['Max binding', formatBytes(l.maxStorageBufferBindingSize)]);
  if (l.maxComputeWorkgroupStorageSize) pairs.push(['WG storage', formatBytes(l.maxComputeWorkgroupStorageSize)]);
  if (l.maxComputeInvocationsPerWorkgroup) pairs.push(['WG invocations', String(l.maxComputeInvocationsPerWorkgroup)]);
  const dm = navigator.deviceMemory;
  pairs.push(['RAM', dm ? `≥ ${dm} GB (navigator.deviceMemory)` : 'not reported']);
  setFacts(ui.deviceInfo, pairs);
}

/** Counts renders, so that an estimate that resolves after a newer one started is dropped. */
let renders = 0;
/** The latest render, settled when its estimate is on show. */
let rendering = Promise.resolve();

/** Resolves once the memory estimate of the current source and context is on show. */
export function estimateShown() {
  return rendering;
}

function renderEstimate() {
  rendering = showEstimate();
  return rendering;
}

async function showEstimate() {
  const box = ui.memory;
  box.replaceChildren();
  setFit(null);
  const src = state.source;
  const device = state.device;
  if (!src || !device?.supported) return;
  const { sizeBytes, arch } = state.facts;
  const render = ++renders;
  let plan;
  try {
    plan = await estimateMemory({
      arch,
      weightsBytes: sizeBytes,
      contextSize: contextFor(arch, wantedContext()),
      features: device.features,
      limits: device.limits,
    });
  } catch (e) {
    if (render === renders) box.append(el('div', 'memory-title', `No memory estimate: ${e?.message ?? e}`));
    return;
  }
  if (render !== renders) return;
  box.append(el('div', 'memory-title', `Estimated GPU memory · ${sourceName(src)}`));
  const rows = el('dl', 'facts');
  setFacts(rows, [
    ['Weights', plan.weightsBytes ? `≈ ${formatBytes(plan.weightsBytes)}` : 'unknown'],
    ['KV cache', plan.kvCacheBytes !== null ? `${formatBytes(plan.kvCacheBytes)} (${plan.contextSize} tokens × ${arch.nLayer} layers, ${plan.kvType})` : 'unknown model shape'],
    ['Activations', plan.activationsBytes !== null ? formatBytes(plan.activationsBytes) : 'unknown model shape'],
    ['Total', plan.totalBytes ? `≈ ${formatBytes(plan.totalBytes)}` : '?'],
  ]);
  box.append(rows);
  if (!plan.totalBytes) return;
  const fit = fitVerdict(plan.totalBytes, { maxBufferSize: device.limits.maxBufferSize, deviceMemoryGiB: navigator.deviceMemory });
  setFit(fit);
  const verdict = el('div', `verdict ${fit.fits ? 'good' : 'bad'}`, fit.fits
    ? `Should fit: ${fit.reason}.`
    : `Will probably not fit: ${fit.reason}. Nothing is downloaded unless you choose to load it anyway.`);
  verdict.setAttribute('data-testid', 'fit');
  verdict.dataset.fits = String(fit.fits);
  box.append(verdict);
}

/** Renders the panel whenever the device, the loaded engine, the source or the context changes. */
export function initDevicePanel() {
  subscribe('device', () => {
    renderDevice();
    renderEstimate();
  });
  // Unloading keeps the last engine's facts on show until the next engine replaces them.
  subscribe('engine', () => {
    if (state.engine) renderDevice();
  });
  subscribe('source', renderEstimate);
  subscribe('facts', renderEstimate);
  let context = wantedContext();
  subscribe('settings', () => {
    if (wantedContext() === context) return;
    context = wantedContext();
    renderEstimate();
  });
}

/** `4` or `8–32`: the subgroup sizes the engine plans for. */
function sizeRange({ subgroupMinSize: lo, subgroupMaxSize: hi }) {
  return lo === hi ? String(lo) : `${lo}–${hi}`;
}
