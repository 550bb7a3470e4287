// Section: loading a model. The fit check before anything is downloaded, the progress box (phase,
// MB loaded/total, MB/s and ETA, Cancel), and the facts of the loaded model.

import { $, setFacts } from './dom.js';
import { formatBytes, formatDuration, sourceName } from './format.js';
import { archFromInfo, contextFor } from './estimate.js';
import { currentSettings, wantedContext } from './settings.js';
import { LlamaEngine, resolveSource } from './package.js';
import {
  state, subscribe, setPhase, setFacts as setModelFacts, setEngine, setLoadRefused, reportError, clearError,
  setNotice, clearConversation, interruptReply,
} from './state.js';

const ui = {
  progress: $('progress'),
  progressPhase: $('progress-phase'),
  progressFill: $('progress-fill'),
  progressText: $('progress-text'),
  cancel: $('cancel'),
  modelInfo: $('model-info'),
};

const PHASES = {
  download: 'Downloading',
  upload: 'Loading into GPU memory',
  compile: 'Compiling GPU kernels',
};

/** Aborts the load in progress (null when none is). */
let loadAbort = null;

function showProgress(name) {
  ui.progress.hidden = false;
  ui.progress.dataset.phase = 'start';
  ui.progressPhase.textContent = `Preparing ${name}`;
  ui.progressFill.style.width = '0%';
  ui.progressText.textContent = 'Checking the shards…';
}

/** Shows one of the package's progress events; its `bytesPerSecond` is the recent rate. */
function updateProgress(p) {
  const total = p.totalBytes || 0;
  const frac = p.phase === 'compile' ? 1 : total ? p.loadedBytes / total : 0;
  ui.progress.dataset.phase = p.phase;
  ui.progress.dataset.loaded = String(p.loadedBytes);
  ui.progress.dataset.total = String(total);
  ui.progressPhase.textContent = PHASES[p.phase] ?? p.phase;
  ui.progressFill.style.width = `${(frac * 100).toFixed(1)}%`;
  if (p.phase === 'compile') {
    ui.progressText.textContent = `${formatBytes(total)} loaded · ${p.tensorsLoaded}/${p.tensorsTotal} tensors · building the pipelines…`;
    return;
  }
  const rate = p.bytesPerSecond || 0;
  const eta = rate > 0 ? (total - p.loadedBytes) / rate : NaN;
  const parts = [
    `${formatBytes(p.loadedBytes)} / ${formatBytes(total)} (${(frac * 100).toFixed(0)}%)`,
    rate > 0 ? `${formatBytes(rate)}/s` : '– MB/s',
    `ETA ${formatDuration(eta)}`,
  ];
  if (p.tensorsTotal) parts.push(`${p.tensorsLoaded}/${p.tensorsTotal} tensors`);
  ui.progressText.textContent = parts.join(' · ');
}

function renderModelInfo() {
  const { name, source, info } = state.loaded;
  const m = info.model;
  const headDim = Math.round(m.nEmbd / m.nHead);
  // The plan the loader made (a finished load always has one) is what was allocated.
  const kv = m.memory?.kvCacheBytes ?? null;
  const shards = m.source?.length ?? 1;
  const load = info.load ?? {};
  setFacts(ui.modelInfo, [
    ['Loaded', name, 'good'],
    ['From', source.kind === 'files' ? `${shards} local file${shards > 1 ? 's' : ''}` : `${shards} shard${shards > 1 ? 's' : ''} over HTTP${load.fromCacheBytes ? ` (${formatBytes(load.fromCacheBytes)} from cache)` : ''}`],
    ['Size', formatBytes(m.sizeBytes)],
    ['Shape', `${m.nLayer} layers · ${m.nHead} heads (${m.nHeadKv} KV) × ${headDim} · vocab ${m.nVocab}`],
    ['Context', `${m.contextSize} of ${m.contextLength} tokens · KV cache ${formatBytes(kv)}${m.memory ? ` · GPU memory ${formatBytes(m.memory.totalBytes)}` : ''}`],
    ['Load time', load.seconds ? `${load.seconds.toFixed(1)} s · ${formatBytes(load.bytesPerSecond)}/s` : '–'],
  ]);
  ui.modelInfo.hidden = false;
}

async function unloadEngine() {
  const engine = state.engine;
  if (!engine) return;
  await interruptReply();
  setEngine(null);
  try {
    await engine.unload();
  } catch (e) {
    console.warn('llama-webgpu demo: unload failed', e);
  }
}

/** Whether the current source may be loaded; shows why not when it may not. */
async function checkSource(src, force) {
  if (!src) {
    reportError({ code: 'INVALID_ARGUMENT', message: 'enter the URL of a GGUF model, pick a known model, or open local .gguf files' });
    return false;
  }
  if (src.kind === 'url') {
    try {
      resolveSource(src.url);
    } catch (e) {
      reportError(e);
      return false;
    }
  }
  await state.factsPending;
  if (!force && state.fit && !state.fit.fits) {
    reportError({
      code: 'MODEL_TOO_LARGE',
      message: `${sourceName(src)} will probably not fit on this device: ${state.fit.reason}. Nothing was downloaded. Pick a smaller model or a shorter context, or press “Load anyway”.`,
    });
    setLoadRefused(true);
    return false;
  }
  setLoadRefused(false);
  return true;
}

async function startLoad({ force = false } = {}) {
  if (!['idle', 'ready'].includes(state.phase)) return;
  clearError();
  setNotice('');
  const src = state.source;
  if (!(await checkSource(src, force))) return;
  const settings = currentSettings();
  if (!settings) return;
  await unloadEngine();
  clearConversation();
  const name = sourceName(src);
  const ac = new AbortController();
  loadAbort = ac;
  setPhase('loading', { loadingName: name });
  showProgress(name);
  try {
    const engine = await LlamaEngine.load(src.kind === 'files' ? src.files : src.url, {
      signal: ac.signal,
      contextSize: contextFor(state.facts.arch, wantedContext()),
      cache: settings.cache,
      subgroups: settings.subgroups,
      onProgress: updateProgress,
      onWarning: (w) => console.warn(`llama-webgpu: ${w.code}: ${w.message}`),
    });
    setEngine(engine, { name, source: src, info: engine.info });
    // The real shape replaces the guess.
    setModelFacts({ sizeBytes: engine.info.model.sizeBytes || state.facts.sizeBytes, arch: archFromInfo(engine.info.model) });
    setPhase('ready', { loadingName: null });
  } catch (e) {
    if (e?.code === 'ABORTED') {
      setNotice(`Load cancelled.${settings.cache && src.kind === 'url' ? ' Parts already downloaded stay in the browser cache; loading again resumes from them.' : ''}`);
    } else {
      reportError(e);
    }
    setPhase('idle', { loadingName: null });
  } finally {
    loadAbort = null;
  }
}

/** Wires Cancel and answers the picker's load requests. */
export function initLoading() {
  ui.cancel.addEventListener('click', () => loadAbort?.abort());
  subscribe('load-request', startLoad);
  subscribe('engine', () => {
    if (state.loaded) renderModelInfo();
    else ui.modelInfo.hidden = true;
  });
  subscribe('phase', ({ to }) => {
    if (to !== 'loading') ui.progress.hidden = true;
  });
}
