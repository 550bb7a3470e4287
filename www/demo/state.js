// The page's state and the only functions that change it. Sections never reach into each other's
// DOM: they change the state through these functions and re-render what they own when a topic they
// subscribed to is announced. Announcements are synchronous, so by the time a change returns every
// section shows it (tests read the page right after `body[data-state]` changes).

/**
 * @typedef {import('../package/src/index.js').ModelShape} ModelShape
 * @typedef {{kind: 'url', url: string, entry: object|null}
 *   | {kind: 'files', files: File[], name: string, sizeBytes: number}} ModelSource
 * @typedef {'starting'|'unsupported'|'idle'|'loading'|'ready'|'generating'|'benchmarking'} Phase
 */

export const state = {
  /** @type {Phase} */
  phase: 'starting',
  /** Display name of the model being loaded, while `phase` is 'loading'. */
  loadingName: null,
  /** Entries of models.json, each with `absUrl`. */
  models: [],
  /** @type {ModelSource|null} */
  source: null,
  /** What the memory estimate knows about the source: {sizeBytes, arch} (either may be null). */
  facts: { sizeBytes: null, arch: null },
  /** Settles once a size still being asked of the server is in `facts`. */
  factsPending: null,
  /** The fit verdict of the current estimate (null when there is none). */
  fit: null,
  /** True after a load was refused as too large, until the source changes or a load starts. */
  loadRefused: false,
  /** What WebGPU said about this machine (probeAdapter's answer). */
  device: null,
  engine: null,
  /** The loaded model: {name, source, info}. */
  loaded: null,
  /** The settings panel's raw values (strings and booleans, as the inputs hold them). */
  settings: {},
  /** The conversation as sent to the engine: [{role, content}]. */
  messages: [],
  /** Settles when the reply being generated has finished (null when none is). */
  generation: null,
  lastUsage: null,
  /** The error on show ({code, message}) or null. */
  error: null,
  notice: '',
};

const listeners = new Map();

/**
 * Calls `fn(detail)` whenever `topic` is announced.
 * Topics: phase ({from, to}), source, facts, device, engine, settings, refusal, error, notice,
 * conversation (cleared), reply ({stage: 'start'} or {stage: 'end', usage, finish}), load-request ({force}).
 * @returns {() => void} unsubscribes
 */
export function subscribe(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, new Set());
  listeners.get(topic).add(fn);
  return () => listeners.get(topic).delete(fn);
}

function announce(topic, detail) {
  for (const fn of listeners.get(topic) ?? []) fn(detail);
}

/** @param {Phase} phase @param {{loadingName?: string|null}} [extra] */
export function setPhase(phase, { loadingName = state.loadingName } = {}) {
  const from = state.phase;
  state.phase = phase;
  state.loadingName = loadingName;
  announce('phase', { from, to: phase });
}

export function setModels(models) {
  state.models = models;
}

/**
 * A new model source, with what is known of it so far; `factsPending` settles when more is.
 * @param {ModelSource|null} source
 */
export function setSource(source, facts, factsPending = null) {
  state.source = source;
  state.facts = facts;
  state.factsPending = factsPending;
  state.loadRefused = false;
  announce('source');
}

/** Better knowledge of the current source's size or shape. */
export function setFacts(facts) {
  state.facts = facts;
  announce('facts');
}

export function setFit(fit) {
  state.fit = fit;
}

export function setLoadRefused(refused) {
  state.loadRefused = refused;
  announce('refusal');
}

export function setDevice(device) {
  state.device = device;
  announce('device');
}

/** The engine now in use, or null with `loaded` null once it is unloaded. */
export function setEngine(engine, loaded = null) {
  state.engine = engine;
  state.loaded = engine ? loaded : null;
  announce('engine');
}

export function setSettings(settings) {
  state.settings = settings;
  announce('settings');
}

/** Asks the loading section to load the current source (`force` skips the fit check). */
export function requestLoad({ force = false } = {}) {
  announce('load-request', { force });
}

/** Shows an error ({code, message}, a LlamaError or anything thrown). */
export function reportError(e) {
  state.error = { code: e?.code ?? 'ERROR', message: e?.message ?? String(e) };
  announce('error');
}

export function clearError() {
  state.error = null;
  announce('error');
}

export function setNotice(text) {
  state.notice = text;
  announce('notice');
}

export function clearConversation() {
  state.messages = [];
  state.lastUsage = null;
  announce('conversation');
}

export function addTurn(role, content) {
  state.messages.push({ role, content });
}

/** Takes back the user's turn of a reply that failed with nothing said, so it stays out of the context. */
export function dropLastTurn() {
  state.messages.pop();
}

let endGeneration = null;

/** A reply starts streaming: `state.generation` settles when `endReply` is called. */
export function beginReply() {
  state.generation = new Promise((resolve) => { endGeneration = resolve; });
  announce('reply', { stage: 'start' });
}

/** @param {object|null} usage the reply's `usage` (null when none came) @param {string|null} finish */
export function endReply(usage, finish) {
  state.lastUsage = usage;
  announce('reply', { stage: 'end', usage, finish });
  state.generation = null;
  endGeneration?.();
  endGeneration = null;
}

/** Interrupts the reply being generated, if any; settles when it has finished. */
export async function interruptReply() {
  if (!state.generation) return;
  state.engine?.interrupt();
  await state.generation;
}
