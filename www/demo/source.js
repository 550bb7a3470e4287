// Section: the model source picker. Known models (models.json), a URL, or local .gguf files opened
// or dropped on the page; what is known of the source's size and shape; the cache marker and
// "Clear from cache"; the Load, Load anyway and Open files buttons (a load itself is the loading
// section's, asked for through the state).

import { $, el } from './dom.js';
import { formatBytes, modelName, sourceName } from './format.js';
import { guessArch } from './estimate.js';
import { LlamaEngine, resolveSource } from './package.js';
import {
  state, subscribe, setModels, setSource, setFacts, requestLoad, reportError, clearError, setNotice,
} from './state.js';

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
};

const CUSTOM = 'custom';
const FALLBACK_CONFIG = {
  default: 'smollm2-135m-local',
  models: [{
    id: 'smollm2-135m-local',
    name: 'SmolLM2-135M-Instruct Q4_1 (local)',
    url: 'models/SmolLM2-135M-Instruct-Q4_1-00001-of-00003.gguf',
    sizeBytes: 98362752,
    arch: { nLayer: 30, nEmbd: 576, nHead: 9, nHeadKv: 3, headDim: 64, nFf: 1536, nVocab: 49152, contextLength: 8192 },
  }],
};

function absoluteUrl(u) {
  try {
    return new URL(u, location.href).href;
  } catch {
    return u;
  }
}

async function fetchModelsConfig() {
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

/**
 * Reads models.json (or the built-in list) into the "Known models" list.
 * @returns {Promise<object>} the model the page starts with when no ?model= is given
 */
export async function loadKnownModels() {
  const cfg = await fetchModelsConfig();
  setModels(cfg.models.map((m) => ({ ...m, absUrl: absoluteUrl(m.url) })));
  ui.knownModels.replaceChildren();
  for (const m of state.models) {
    const o = el('option', '', `${m.name}${m.sizeBytes ? ` · ${formatBytes(m.sizeBytes)}` : ''}`);
    o.value = m.id;
    ui.knownModels.append(o);
  }
  const custom = el('option', '', 'Custom URL or local files');
  custom.value = CUSTOM;
  ui.knownModels.append(custom);
  return state.models.find((m) => m.id === cfg.default) ?? state.models[0];
}

/** Makes `url` the source (relative URLs are taken against the page). */
export function chooseUrl(url, { fromInput = false } = {}) {
  const abs = url ? absoluteUrl(url.trim()) : '';
  const entry = abs ? (state.models.find((m) => m.absUrl === abs) ?? null) : null;
  if (!fromInput) ui.modelUrl.value = abs;
  ui.knownModels.value = entry ? entry.id : CUSTOM;
  if (!abs) {
    ui.modelSize.textContent = '';
    setSource(null, { sizeBytes: null, arch: null });
  } else if (entry) {
    ui.modelSize.textContent = entry.sizeBytes ? `≈ ${formatBytes(entry.sizeBytes)} download` : '';
    setSource({ kind: 'url', url: abs, entry }, { sizeBytes: entry.sizeBytes ?? null, arch: entry.arch ?? guessArch(abs) });
  } else {
    ui.modelSize.textContent = 'Checking size…';
    const source = { kind: 'url', url: abs, entry: null };
    const pending = probeUrlSize(abs).then((size) => {
      if (state.source !== source) return;
      ui.modelSize.textContent = size ? `${formatBytes(size)} download` : 'Size unknown (the server did not say)';
      setFacts({ ...state.facts, sizeBytes: size });
    });
    setSource(source, { sizeBytes: null, arch: guessArch(abs) }, pending);
  }
  refreshCacheStatus();
}

/** Makes local files the source; false (with the error shown) when they are not one model's shards. */
function chooseFiles(fileList) {
  clearError();
  const files = Array.from(fileList ?? []).filter((f) => /\.gguf$/i.test(f.name));
  if (!files.length) {
    reportError({ code: 'INVALID_ARGUMENT', message: 'no .gguf files among the chosen files' });
    return false;
  }
  try {
    resolveSource(files); // checks a split model's shard set before anything is read
  } catch (e) {
    reportError(e);
    return false;
  }
  const sorted = files.slice().sort((a, b) => a.name.localeCompare(b.name));
  const source = {
    kind: 'files',
    files: sorted,
    name: modelName(sorted[0].name),
    sizeBytes: sorted.reduce((a, f) => a + f.size, 0),
  };
  ui.knownModels.value = CUSTOM;
  ui.modelUrl.value = '';
  const n = sorted.length;
  ui.modelSize.textContent = `Local: ${sorted[0].name}${n > 1 ? ` + ${n - 1} more` : ''} · ${formatBytes(source.sizeBytes)}`;
  setSource(source, { sizeBytes: source.sizeBytes, arch: guessArch(sorted[0].name) });
  refreshCacheStatus();
  return true;
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

function hideCacheStatus() {
  ui.cacheStatus.hidden = true;
  ui.clearCache.hidden = true;
}

async function refreshCacheStatus() {
  const src = state.source;
  if (src?.kind !== 'url' || !window.isSecureContext) {
    hideCacheStatus();
    return;
  }
  let cached = false;
  try {
    cached = await LlamaEngine.hasModelInCache(src.url);
  } catch {
    hideCacheStatus();
    return;
  }
  if (state.source !== src) return;
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
    setNotice(removed ? `Removed ${sourceName(src)} from the browser cache.` : 'Nothing of this model was in the cache.');
  } catch (e) {
    reportError(e);
  }
  refreshCacheStatus();
}

function chooseFilesAndLoad(fileList) {
  if (chooseFiles(fileList)) requestLoad();
}

/** Files may be dropped anywhere on the page. */
function acceptDrops() {
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
    chooseFilesAndLoad(e.dataTransfer.files);
  });
}

function wireInputs() {
  ui.knownModels.addEventListener('change', () => {
    const m = state.models.find((x) => x.id === ui.knownModels.value);
    if (m) chooseUrl(m.absUrl);
    else {
      ui.modelUrl.focus();
      ui.modelUrl.select();
    }
  });
  let urlTimer = 0;
  const commitTypedUrl = () => {
    clearTimeout(urlTimer);
    chooseUrl(ui.modelUrl.value, { fromInput: true });
  };
  ui.modelUrl.addEventListener('input', () => {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(commitTypedUrl, 400);
  });
  ui.modelUrl.addEventListener('change', commitTypedUrl);
  ui.modelUrl.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      commitTypedUrl();
      requestLoad();
    }
  });
  ui.load.addEventListener('click', () => {
    // A URL typed a moment ago may still be waiting for its debounce.
    if (state.source?.kind !== 'files' && absoluteUrl(ui.modelUrl.value.trim()) !== state.source?.url) {
      chooseUrl(ui.modelUrl.value, { fromInput: true });
    }
    requestLoad();
  });
  ui.loadAnyway.addEventListener('click', () => requestLoad({ force: true }));
  ui.clearCache.addEventListener('click', clearFromCache);
  ui.openFiles.addEventListener('click', () => ui.fileInput.click());
  ui.fileInput.addEventListener('change', () => {
    if (ui.fileInput.files?.length) chooseFilesAndLoad(ui.fileInput.files);
    ui.fileInput.value = '';
  });
  ui.dropZone.addEventListener('click', () => ui.openFiles.disabled || ui.fileInput.click());
}

/** Wires the picker; `loadKnownModels` and `chooseUrl` then give it its first source. */
export function initSourcePicker() {
  wireInputs();
  acceptDrops();
  subscribe('phase', ({ from, to }) => {
    const off = ['loading', 'unsupported', 'starting', 'generating', 'benchmarking'].includes(to);
    ui.load.disabled = off;
    ui.loadAnyway.disabled = off;
    ui.openFiles.disabled = off;
    // A finished or cancelled load may have changed what the cache holds.
    if (from === 'loading') refreshCacheStatus();
  });
  const showLoadAnyway = () => { ui.loadAnyway.hidden = !state.loadRefused; };
  subscribe('source', showLoadAnyway);
  subscribe('refusal', showLoadAnyway);
}
