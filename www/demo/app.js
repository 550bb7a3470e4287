// The llama-webgpu demo: a chat app on the npm package (../package/src/index.js), engine in a
// Web Worker. Plain ES modules, no build step, nothing fetched from any host but the page's own
// unless the user picks a remote model.
//
// Stable hooks for tests and tools: the data-testid attributes in index.html, `body[data-state]`
// ('starting' | 'unsupported' | 'idle' | 'loading' | 'ready' | 'generating'), and on each assistant
// message `data-done` ('false' while streaming, then 'true') and `data-finish` ('stop' | 'length' |
// 'abort' | 'error'). `window.llamaDemo` exposes the conversation and the engine.

import { LlamaEngine } from '../package/src/index.js';
import { resolveSource } from '../package/src/fetch.js';
import { renderMarkdown } from './markdown.js';
import { archFromInfo, fitVerdict, formatBytes, formatDuration, guessArch, kvBytes, probeAdapter } from './device.js';

const $ = (id) => document.getElementById(id);
const ui = {
  knownModels: $('known-models'),
  modelUrl: $('model-url'),
  modelSize: $('model-size'),
  cacheStatus: $('cache-status'),
  clearCache: $('clear-cache'),
  load: $('load'),
  loadAnyway: $('load-anyway'),
  openFiles: $('open-files'),
  fileInput: $('file-input'),
  dropZone: $('drop-zone'),
  progress: $('progress'),
  progressPhase: $('progress-phase'),
  progressFill: $('progress-fill'),
  progressText: $('progress-text'),
  cancel: $('cancel'),
  notice: $('notice'),
  modelInfo: $('model-info'),
  deviceInfo: $('device-info'),
  memory: $('memory'),
  system: $('system-prompt'),
  temperature: $('temperature'),
  topP: $('top-p'),
  topK: $('top-k'),
  maxTokens: $('max-tokens'),
  seed: $('seed'),
  contextSize: $('context-size'),
  markdown: $('markdown'),
  useCache: $('use-cache'),
  statusDot: $('status-dot'),
  statusText: $('status-text'),
  newChat: $('new-chat'),
  errorBox: $('error-box'),
  error: $('error'),
  errorClose: $('error-close'),
  messages: $('messages'),
  empty: $('empty'),
  prompt: $('prompt'),
  send: $('send'),
  stop: $('stop'),
  stats: $('stats'),
};

const CUSTOM = 'custom';
const SETTINGS_KEY = 'llama-webgpu-demo/settings';
const FALLBACK_CONFIG = {
  default: 'smollm2-135m-local',
  models: [{
    id: 'smollm2-135m-local',
    name: 'SmolLM2-135M-Instruct Q4_1 (local)',
    url: 'models/SmolLM2-135M-Instruct-Q4_1-00001-of-00003.gguf',
    sizeBytes: 98362752,
    arch: { nLayer: 30, nHeadKv: 3, headDim: 64, contextLength: 8192 },
  }],
};

const state = {
  phase: 'starting',
  models: [],
  /** {kind: 'url', url, entry?} or {kind: 'files', files, name, sizeBytes} */
  source: null,
  /** What the memory estimate knows about the source: {sizeBytes, arch} (either may be null). */
  facts: { sizeBytes: null, arch: null },
  factsPending: null,
  fit: null,
  device: null,
  engine: null,
  /** The loaded model's display name and facts. */
  loaded: null,
  loadAbort: null,
  messages: [],
  generation: null,
  lastUsage: null,
};

// ---------------------------------------------------------------------------------------------
// Small helpers

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Fills a <dl> with [term, value] pairs (values are text, never HTML). */
function setFacts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v, cls] of pairs) {
    dl.append(el('dt', '', k));
    const dd = el('dd', cls ?? '', v);
    dl.append(dd);
  }
}

/** "SmolLM2-135M-Instruct-Q4_1" from ".../SmolLM2-135M-Instruct-Q4_1-00001-of-00003.gguf". */
function modelName(nameOrUrl) {
  let base = String(nameOrUrl).split(/[?#]/)[0].split('/').pop() || String(nameOrUrl);
  try {
    base = decodeURIComponent(base);
  } catch {
    // keep it encoded
  }
  return base.replace(/-\d{5}-of-\d{5}\.gguf$/i, '').replace(/\.gguf$/i, '');
}

function absoluteUrl(u) {
  try {
    return new URL(u, location.href).href;
  } catch {
    return u;
  }
}

function setPhase(phase) {
  state.phase = phase;
  document.body.dataset.state = phase;
  const busy = phase === 'loading';
  ui.load.disabled = busy || phase === 'unsupported' || phase === 'starting' || phase === 'generating';
  ui.loadAnyway.disabled = ui.load.disabled;
  ui.openFiles.disabled = ui.load.disabled;
  ui.send.disabled = phase !== 'ready';
  ui.stop.disabled = phase !== 'generating';
  ui.newChat.disabled = !state.engine || busy;
  ui.statusDot.dataset.phase = phase;
  const name = state.loaded?.name ?? '';
  ui.statusText.textContent = {
    starting: 'Starting…',
    unsupported: 'WebGPU is not available',
    idle: 'No model loaded',
    loading: `Loading ${state.loadingName ?? 'model'}…`,
    ready: `${name} · ready`,
    generating: `${name} · generating…`,
  }[phase];
}

function showError(e) {
  const code = e?.code ?? 'ERROR';
  const message = e?.message ?? String(e);
  ui.error.textContent = `${code}: ${message}`;
  ui.errorBox.hidden = false;
}

function clearError() {
  ui.error.textContent = '';
  ui.errorBox.hidden = true;
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

// ---------------------------------------------------------------------------------------------
// Settings (kept in localStorage)

const SETTING_INPUTS = ['system', 'temperature', 'topP', 'topK', 'maxTokens', 'seed', 'contextSize', 'markdown', 'useCache'];

function restoreSettings() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? 'null');
  } catch {
    saved = null;
  }
  if (!saved) return;
  for (const k of SETTING_INPUTS) {
    if (!(k in saved)) continue;
    const input = ui[k];
    if (input.type === 'checkbox') input.checked = !!saved[k];
    else input.value = saved[k];
  }
}

function saveSettings() {
  const out = {};
  for (const k of SETTING_INPUTS) out[k] = ui[k].type === 'checkbox' ? ui[k].checked : ui[k].value;
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(out));
  } catch {
    // storage may be unavailable; settings then last for this visit
  }
}

function numberSetting(name, input, { min, max, integer = false, fallback }) {
  const raw = input.value.trim();
  if (raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw Object.assign(new Error(`${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got ${raw}`), { code: 'INVALID_SAMPLING_PARAMS' });
  }
  return v;
}

function readSettings() {
  return {
    system: ui.system.value.trim(),
    temperature: numberSetting('temperature', ui.temperature, { min: 0, max: 2, fallback: 0.7 }),
    topP: numberSetting('top-p', ui.topP, { min: 0.01, max: 1, fallback: 1 }),
    topK: numberSetting('top-k', ui.topK, { min: 0, max: 1e6, integer: true, fallback: 0 }),
    maxTokens: numberSetting('max tokens', ui.maxTokens, { min: 1, max: 1e6, integer: true, fallback: 512 }),
    seed: numberSetting('seed', ui.seed, { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true, fallback: null }),
    contextSize: Number(ui.contextSize.value),
    markdown: ui.markdown.checked,
    cache: ui.useCache.checked,
  };
}

// ---------------------------------------------------------------------------------------------
// Model source: known models, URL, local files

async function loadModelsConfig() {
  try {
    const res = await fetch('models.json', { cache: 'no-cache' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const cfg = await res.json();
    if (!Array.isArray(cfg.models) || !cfg.models.length) throw new Error('no models');
    return cfg;
  } catch (e) {
    console.warn('llama-webgpu demo: models.json unavailable, using the built-in list', e);
    return FALLBACK_CONFIG;
  }
}

function fillKnownModels(cfg) {
  state.models = cfg.models.map((m) => ({ ...m, absUrl: absoluteUrl(m.url) }));
  ui.knownModels.replaceChildren();
  for (const m of state.models) {
    const o = el('option', '', `${m.name}${m.sizeBytes ? ` · ${formatBytes(m.sizeBytes)}` : ''}`);
    o.value = m.id;
    ui.knownModels.append(o);
  }
  const custom = el('option', '', 'Custom URL or local files');
  custom.value = CUSTOM;
  ui.knownModels.append(custom);
}

function entryForUrl(url) {
  return state.models.find((m) => m.absUrl === url) ?? null;
}

function setUrlSource(url, { fromInput = false } = {}) {
  const abs = url ? absoluteUrl(url.trim()) : '';
  const entry = abs ? entryForUrl(abs) : null;
  state.source = abs ? { kind: 'url', url: abs, entry } : null;
  if (!fromInput) ui.modelUrl.value = abs;
  ui.knownModels.value = entry ? entry.id : CUSTOM;
  ui.loadAnyway.hidden = true;
  sourceChanged();
}

function setFileSource(fileList) {
  clearError();
  const files = Array.from(fileList ?? []).filter((f) => /\.gguf$/i.test(f.name));
  if (!files.length) {
    showError({ code: 'INVALID_ARGUMENT', message: 'no .gguf files among the chosen files' });
    return false;
  }
  try {
    resolveSource(files); // checks a split model's shard set before anything is read
  } catch (e) {
    showError(e);
    return false;
  }
  const sorted = files.slice().sort((a, b) => a.name.localeCompare(b.name));
  state.source = {
    kind: 'files',
    files: sorted,
    name: modelName(sorted[0].name),
    sizeBytes: sorted.reduce((a, f) => a + f.size, 0),
  };
  ui.knownModels.value = CUSTOM;
  ui.modelUrl.value = '';
  ui.loadAnyway.hidden = true;
  sourceChanged();
  return true;
}

function sourceName(src = state.source) {
  if (!src) return '';
  if (src.kind === 'files') return src.name;
  return src.entry?.name?.replace(/ \(local\)$/, '') ?? modelName(src.url);
}

/** Recomputes what we know about the source (size, shape), then the estimate and cache marker. */
function sourceChanged() {
  const src = state.source;
  const token = {};
  state.sourceToken = token;
  if (!src) {
    ui.modelSize.textContent = '';
    state.facts = { sizeBytes: null, arch: null };
    state.factsPending = null;
  } else if (src.kind === 'files') {
    const n = src.files.length;
    ui.modelSize.textContent = `Local: ${src.files[0].name}${n > 1 ? ` + ${n - 1} more` : ''} · ${formatBytes(src.sizeBytes)}`;
    state.facts = { sizeBytes: src.sizeBytes, arch: guessArch(src.files[0].name) };
    state.factsPending = null;
  } else if (src.entry) {
    ui.modelSize.textContent = src.entry.sizeBytes ? `≈ ${formatBytes(src.entry.sizeBytes)} download` : '';
    state.facts = { sizeBytes: src.entry.sizeBytes ?? null, arch: src.entry.arch ?? guessArch(src.url) };
    state.factsPending = null;
  } else {
    ui.modelSize.textContent = 'Checking size…';
    state.facts = { sizeBytes: null, arch: guessArch(src.url) };
    state.factsPending = probeUrlSize(src.url).then((size) => {
      if (state.sourceToken !== token) return;
      state.facts = { ...state.facts, sizeBytes: size };
      ui.modelSize.textContent = size ? `${formatBytes(size)} download` : 'Size unknown (the server did not say)';
      updateEstimate();
    });
  }
  updateEstimate();
  refreshCacheStatus();
}

const sizeCache = new Map();
/** Total bytes of all shards of a URL source, from HEAD requests (null when unknown). */
function probeUrlSize(url) {
  if (!sizeCache.has(url)) {
    sizeCache.set(url, (async () => {
      try {
        const shards = resolveSource(url);
        const sizes = await Promise.all(shards.map(async (s) => {
          const res = await fetch(s.url, { method: 'HEAD', cache: 'no-cache' });
          const n = Number(res.headers.get('Content-Length'));
          return res.ok && n > 0 ? n : NaN;
        }));
        const total = sizes.reduce((a, b) => a + b, 0);
        return Number.isFinite(total) ? total : null;
      } catch {
        return null;
      }
    })());
  }
  return sizeCache.get(url);
}

async function refreshCacheStatus() {
  const src = state.source;
  const token = state.sourceToken;
  if (src?.kind !== 'url' || !window.isSecureContext) {
    ui.cacheStatus.hidden = true;
    ui.clearCache.hidden = true;
    return;
  }
  let cached = false;
  try {
    cached = await LlamaEngine.hasModelInCache(src.url);
  } catch {
    ui.cacheStatus.hidden = true;
    ui.clearCache.hidden = true;
    return;
  }
  if (state.sourceToken !== token) return;
  ui.cacheStatus.hidden = false;
  ui.cacheStatus.textContent = cached ? 'In cache' : 'Not cached';
  ui.cacheStatus.dataset.cached = String(cached);
  ui.cacheStatus.title = cached ? 'Every shard is in this site\'s storage: loading needs no network' : 'Loading downloads the model';
  ui.clearCache.hidden = !cached;
}

async function clearFromCache() {
  const src = state.source;
  if (src?.kind !== 'url') return;
  try {
    const removed = await LlamaEngine.deleteModelFromCache(src.url);
    showNotice(removed ? `Removed ${sourceName(src)} from the browser cache.` : 'Nothing of this model was in the cache.');
  } catch (e) {
    showError(e);
  }
  refreshCacheStatus();
}

// ---------------------------------------------------------------------------------------------
// Device panel and memory estimate

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
  pairs.push(['subgroups', `${yesNo(d.features.subgroups)}${info ? ` · engine ${sg ? 'uses them' : 'does without'}` : ''}`]);
  const l = info?.limits ?? d.limits;
  pairs.push(['Max buffer', formatBytes(l.maxBufferSize)]);
  pairs.push(['Max binding', formatBytes(l.maxStorageBufferBindingSize)]);
  if (l.maxComputeWorkgroupStorageSize) pairs.push(['WG storage', formatBytes(l.maxComputeWorkgroupStorageSize)]);
  if (l.maxComputeInvocationsPerWorkgroup) pairs.push(['WG invocations', String(l.maxComputeInvocationsPerWorkgroup)]);
  const dm = navigator.deviceMemory;
  pairs.push(['RAM', dm ? `≥ ${dm} GB (navigator.deviceMemory)` : 'not reported']);
  setFacts(ui.deviceInfo, pairs);
}

function contextFor(arch) {
  const want = Number(ui.contextSize.value) || 4096;
  return arch?.contextLength ? Math.min(want, arch.contextLength) : want;
}

function updateEstimate() {
  const box = ui.memory;
  box.replaceChildren();
  state.fit = null;
  const src = state.source;
  if (!src || !state.device?.supported) return;
  const { sizeBytes, arch } = state.facts;
  const f16 = state.device.features.shaderF16;
  const ctx = contextFor(arch);
  const kv = arch ? kvBytes(arch, ctx, f16) : null;
  const total = (sizeBytes ?? 0) + (kv ?? 0);
  box.append(el('div', 'memory-title', `Estimated GPU memory · ${sourceName(src)}`));
  const rows = el('dl', 'facts');
  setFacts(rows, [
    ['Weights', sizeBytes ? `≈ ${formatBytes(sizeBytes)}` : 'unknown'],
    ['KV cache', kv !== null ? `${formatBytes(kv)} (${ctx} tokens × ${arch.nLayer} layers, ${f16 ? 'f16' : 'f32'})` : 'unknown model shape'],
    ['Total', sizeBytes ? `≈ ${formatBytes(total)}` : '?'],
  ]);
  box.append(rows);
  if (!sizeBytes) return;
  const fit = fitVerdict(total, { maxBufferSize: state.device.limits.maxBufferSize, deviceMemoryGiB: navigator.deviceMemory });
  state.fit = fit;
  const verdict = el('div', `verdict ${fit.fits ? 'good' : 'bad'}`, fit.fits
    ? `Should fit: ${fit.reason}.`
    : `Will probably not fit: ${fit.reason}. Nothing is downloaded unless you choose to load it anyway.`);
  verdict.setAttribute('data-testid', 'fit');
  verdict.dataset.fits = String(fit.fits);
  box.append(verdict);
}

// ---------------------------------------------------------------------------------------------
// Loading

/** Bytes per second over the last couple of seconds. */
class RateMeter {
  constructor() {
    this.samples = [];
  }

  add(t, bytes) {
    this.samples.push([t, bytes]);
    while (this.samples.length > 2 && t - this.samples[0][0] > 2500) this.samples.shift();
  }

  rate() {
    if (this.samples.length < 2) return 0;
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    return t1 - t0 > 200 ? ((b1 - b0) / (t1 - t0)) * 1000 : 0;
  }
}

const PHASES = {
  download: 'Downloading',
  upload: 'Loading into GPU memory',
  compile: 'Compiling GPU kernels',
};

function showProgress(name) {
  ui.progress.hidden = false;
  ui.progress.dataset.phase = 'start';
  ui.progressPhase.textContent = `Preparing ${name}`;
  ui.progressFill.style.width = '0%';
  ui.progressText.textContent = 'Checking the shards…';
}

function updateProgress(p, meter) {
  meter.add(performance.now(), p.loadedBytes);
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
  const rate = meter.rate() || p.bytesPerSecond || 0;
  const eta = rate > 0 ? (total - p.loadedBytes) / rate : NaN;
  const parts = [
    `${formatBytes(p.loadedBytes)} / ${formatBytes(total)} (${(frac * 100).toFixed(0)}%)`,
    rate > 0 ? `${formatBytes(rate)}/s` : '– MB/s',
    `ETA ${formatDuration(eta)}`,
  ];
  if (p.tensorsTotal) parts.push(`${p.tensorsLoaded}/${p.tensorsTotal} tensors`);
  ui.progressText.textContent = parts.join(' · ');
}

async function unloadEngine() {
  const engine = state.engine;
  if (!engine) return;
  if (state.generation) {
    engine.interrupt();
    await state.generation.catch(() => {});
  }
  state.engine = null;
  state.loaded = null;
  ui.modelInfo.hidden = true;
  try {
    await engine.unload();
  } catch (e) {
    console.warn('llama-webgpu demo: unload failed', e);
  }
}

async function startLoad({ force = false } = {}) {
  if (!['idle', 'ready'].includes(state.phase)) return;
  clearError();
  showNotice('');
  const src = state.source;
  if (!src) {
    showError({ code: 'INVALID_ARGUMENT', message: 'enter the URL of a GGUF model, pick a known model, or open local .gguf files' });
    return;
  }
  if (src.kind === 'url') {
    try {
      resolveSource(src.url);
    } catch (e) {
      showError(e);
      return;
    }
  }
  await state.factsPending;
  if (!force && state.fit && !state.fit.fits) {
    showError({
      code: 'MODEL_TOO_LARGE',
      message: `${sourceName(src)} will probably not fit on this device: ${state.fit.reason}. Nothing was downloaded. Pick a smaller model or a shorter context, or press “Load anyway”.`,
    });
    ui.loadAnyway.hidden = false;
    return;
  }
  ui.loadAnyway.hidden = true;
  const settings = readSettingsSafe();
  if (!settings) return;
  await unloadEngine();
  clearChat();
  const name = sourceName(src);
  state.loadingName = name;
  const ac = new AbortController();
  state.loadAbort = ac;
  setPhase('loading');
  showProgress(name);
  const meter = new RateMeter();
  const contextSize = contextFor(state.facts.arch);
  try {
    const engine = await LlamaEngine.load(src.kind === 'files' ? src.files : src.url, {
      signal: ac.signal,
      contextSize,
      cache: settings.cache,
      onProgress: (p) => updateProgress(p, meter),
      onWarning: (w) => console.warn(`llama-webgpu: ${w.code}: ${w.message}`),
    });
    state.engine = engine;
    state.loaded = { name, source: src, info: engine.info };
    renderModelInfo(engine.info, name, src);
    renderDevice();
    // The real shape replaces the guess.
    state.facts = { sizeBytes: engine.info.model.sizeBytes || state.facts.sizeBytes, arch: archFromInfo(engine.info.model) };
    updateEstimate();
    setPhase('ready');
    ui.prompt.focus();
  } catch (e) {
    if (e?.code === 'ABORTED') {
      showNotice(`Load cancelled.${settings.cache && src.kind === 'url' ? ' Parts already downloaded stay in the browser cache; loading again resumes from them.' : ''}`);
    } else {
      showError(e);
    }
    setPhase('idle');
  } finally {
    state.loadAbort = null;
    state.loadingName = null;
    ui.progress.hidden = true;
    refreshCacheStatus();
  }
}

function readSettingsSafe() {
  try {
    return readSettings();
  } catch (e) {
    showError(e);
    return null;
  }
}

function renderModelInfo(info, name, src) {
  const m = info.model;
  const headDim = Math.round(m.nEmbd / m.nHead);
  // The engine's own plan when it has one (it counts what was really allocated).
  const kv = m.memory?.kvCacheBytes ?? kvBytes(archFromInfo(m), m.contextSize, info.features.shaderF16);
  const shards = m.source?.length ?? 1;
  const load = info.load ?? {};
  setFacts(ui.modelInfo, [
    ['Loaded', name, 'good'],
    ['From', src.kind === 'files' ? `${shards} local file${shards > 1 ? 's' : ''}` : `${shards} shard${shards > 1 ? 's' : ''} over HTTP${load.fromCacheBytes ? ` (${formatBytes(load.fromCacheBytes)} from cache)` : ''}`],
    ['Size', formatBytes(m.sizeBytes)],
    ['Shape', `${m.nLayer} layers · ${m.nHead} heads (${m.nHeadKv} KV) × ${headDim} · vocab ${m.nVocab}`],
    ['Context', `${m.contextSize} of ${m.contextLength} tokens · KV cache ${formatBytes(kv)}${m.memory ? ` · GPU memory ${formatBytes(m.memory.totalBytes)}` : ''}`],
    ['Load time', load.seconds ? `${load.seconds.toFixed(1)} s · ${formatBytes(load.bytesPerSecond)}/s` : '–'],
  ]);
  ui.modelInfo.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Chat

/** A message in the list; assistant messages re-render (throttled to frames) as text streams in. */
function addMessage(role, text) {
  ui.empty.hidden = true;
  const root = el('article', `msg msg-${role}`);
  root.setAttribute('data-testid', `message-${role}`);
  const who = el('div', 'msg-role', role === 'user' ? 'You' : role === 'assistant' ? (state.loaded?.name ?? 'Assistant') : role);
  const body = el('div', 'msg-body');
  const foot = el('div', 'msg-stats');
  root.append(who, body, foot);
  ui.messages.append(root);
  let current = text;
  let scheduled = false;
  const markdown = role === 'assistant' && ui.markdown.checked;
  const paint = () => {
    if (!scheduled) return;
    scheduled = false;
    const stick = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
    if (markdown) body.innerHTML = renderMarkdown(current); // escape-first: no markup from the model survives
    else body.textContent = current;
    body.classList.toggle('is-empty', current === '');
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  };
  const view = {
    root,
    get text() {
      return current;
    },
    update(t, now = false) {
      current = t;
      if (!scheduled) {
        scheduled = true;
        if (!now) {
          requestAnimationFrame(paint);
          setTimeout(paint, 100); // frames may be throttled (background tab); text still arrives
        }
      }
      if (now) paint();
    },
    finish(reason, usage) {
      root.dataset.finish = reason;
      root.dataset.done = 'true';
      if (usage) foot.textContent = formatStats(usage, reason);
      else if (reason === 'error') foot.textContent = 'failed';
    },
  };
  view.update(text, true);
  return view;
}

function clearChat() {
  state.messages = [];
  for (const m of Array.from(ui.messages.querySelectorAll('.msg'))) m.remove();
  ui.empty.hidden = false;
  ui.stats.textContent = '';
  ui.stats.dataset.finish = '';
  state.lastUsage = null;
}

function formatStats(usage, finish) {
  const x = usage.extra ?? {};
  const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
  const prefilled = usage.prompt_tokens - cached;
  const parts = [
    `first token ${x.time_to_first_token_ms !== undefined ? `${(x.time_to_first_token_ms / 1000).toFixed(2)} s` : '–'}`,
    `prefill ${prefilled} tok${cached ? ` (+${cached} cached)` : ''} at ${x.prefill_tokens_per_s ? x.prefill_tokens_per_s.toFixed(1) : '–'} tok/s`,
    `decode ${usage.completion_tokens} tok at ${x.decode_tokens_per_s ? x.decode_tokens_per_s.toFixed(1) : '–'} tok/s`,
  ];
  const why = { stop: '', length: 'max tokens reached', abort: 'stopped' }[finish];
  if (why) parts.push(why);
  return parts.join(' · ');
}

async function send() {
  if (state.phase !== 'ready' || !state.engine) return;
  const text = ui.prompt.value.trim();
  if (!text) return;
  const settings = readSettingsSafe();
  if (!settings) return;
  clearError();
  ui.prompt.value = '';
  autosize();
  state.messages.push({ role: 'user', content: text });
  addMessage('user', text);
  const view = addMessage('assistant', '');
  view.root.dataset.done = 'false';
  ui.stats.textContent = '';
  ui.stats.dataset.finish = '';
  setPhase('generating');
  const req = {
    messages: [...(settings.system ? [{ role: 'system', content: settings.system }] : []), ...state.messages],
    stream: true,
    stream_options: { include_usage: true },
    temperature: settings.temperature,
    top_p: settings.topP,
    top_k: settings.topK,
    max_tokens: settings.maxTokens,
  };
  if (settings.seed !== null) req.seed = settings.seed;
  const engine = state.engine;
  let finishGen;
  state.generation = new Promise((r) => { finishGen = r; });
  let content = '';
  let usage = null;
  let finish = null;
  let failure = null;
  try {
    const stream = await engine.chat.completions.create(req);
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      const piece = choice.delta?.content;
      if (piece) {
        content += piece;
        view.update(content);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  } catch (e) {
    failure = e;
  }
  view.update(content, true);
  if (failure) {
    showError(failure);
    if (content) state.messages.push({ role: 'assistant', content });
    else state.messages.pop(); // the turn failed: leave the user's message out of the context
    finish = 'error';
  } else {
    // Kept even when stopped early: the next turn extends this prefix, so the KV cache is reused.
    state.messages.push({ role: 'assistant', content });
  }
  view.finish(finish ?? 'stop', usage);
  state.lastUsage = usage;
  if (usage) {
    ui.stats.textContent = `Last reply: ${formatStats(usage, finish)}`;
    ui.stats.dataset.finish = finish ?? '';
  }
  state.generation = null;
  finishGen();
  if (state.engine === engine) setPhase('ready');
}

function stop() {
  if (state.generation) state.engine?.interrupt();
}

async function newChat() {
  if (state.generation) {
    state.engine?.interrupt();
    await state.generation;
  }
  clearChat();
  clearError();
  if (state.engine) {
    try {
      await state.engine.resetChat();
    } catch (e) {
      showError(e);
    }
  }
  ui.prompt.focus();
}

function autosize() {
  ui.prompt.style.height = 'auto';
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 200)}px`;
}

// ---------------------------------------------------------------------------------------------
// Wiring

function wire() {
  ui.knownModels.addEventListener('change', () => {
    const m = state.models.find((x) => x.id === ui.knownModels.value);
    if (m) setUrlSource(m.absUrl);
    else {
      ui.modelUrl.focus();
      ui.modelUrl.select();
    }
  });
  let urlTimer = 0;
  ui.modelUrl.addEventListener('input', () => {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(() => setUrlSource(ui.modelUrl.value, { fromInput: true }), 400);
  });
  ui.modelUrl.addEventListener('change', () => {
    clearTimeout(urlTimer);
    setUrlSource(ui.modelUrl.value, { fromInput: true });
  });
  ui.modelUrl.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      clearTimeout(urlTimer);
      setUrlSource(ui.modelUrl.value, { fromInput: true });
      startLoad();
    }
  });
  ui.load.addEventListener('click', () => {
    // A URL typed a moment ago may still be waiting for its debounce.
    if (state.source?.kind !== 'files' && absoluteUrl(ui.modelUrl.value.trim()) !== state.source?.url) {
      setUrlSource(ui.modelUrl.value, { fromInput: true });
    }
    startLoad();
  });
  ui.loadAnyway.addEventListener('click', () => startLoad({ force: true }));
  ui.cancel.addEventListener('click', () => state.loadAbort?.abort());
  ui.clearCache.addEventListener('click', clearFromCache);
  ui.openFiles.addEventListener('click', () => ui.fileInput.click());
  ui.fileInput.addEventListener('change', () => {
    if (ui.fileInput.files?.length && setFileSource(ui.fileInput.files)) startLoad();
    ui.fileInput.value = '';
  });
  ui.dropZone.addEventListener('click', () => ui.openFiles.disabled || ui.fileInput.click());
  // Files may be dropped anywhere on the page.
  let dragDepth = 0;
  const hasFiles = (e) => Array.from(e.dataTransfer?.types ?? []).includes('Files');
  window.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth++;
    document.body.classList.add('dragging');
  });
  window.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) document.body.classList.remove('dragging');
  });
  window.addEventListener('dragover', (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  window.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    document.body.classList.remove('dragging');
    if (ui.openFiles.disabled) return;
    if (setFileSource(e.dataTransfer.files)) startLoad();
  });

  ui.send.addEventListener('click', send);
  ui.stop.addEventListener('click', stop);
  ui.newChat.addEventListener('click', newChat);
  ui.prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  ui.prompt.addEventListener('input', autosize);
  ui.errorClose.addEventListener('click', clearError);

  for (const k of SETTING_INPUTS) ui[k].addEventListener('change', saveSettings);
  ui.contextSize.addEventListener('change', updateEstimate);

  window.addEventListener('unhandledrejection', (e) => showError(e.reason));
}

async function start() {
  wire();
  restoreSettings();
  const cfg = await loadModelsConfig();
  fillKnownModels(cfg);
  const param = new URLSearchParams(location.search).get('model');
  const def = state.models.find((m) => m.id === cfg.default) ?? state.models[0];
  setPhase('starting');
  state.device = await probeAdapter();
  const supported = state.device.supported && (await LlamaEngine.isSupported());
  if (!supported && state.device.supported) state.device = { supported: false, reason: 'no usable GPU adapter' };
  renderDevice();
  setUrlSource(param || def.absUrl);
  if (!supported) {
    setPhase('unsupported');
    showError({
      code: 'NO_WEBGPU',
      message: `WebGPU is not available here (${state.device.reason}). This demo needs a browser with WebGPU: Chrome or Edge 113+ on desktop, or another browser with WebGPU turned on.`,
    });
    return;
  }
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
  showError(e);
  setPhase('idle');
});
