// @ts-check
// What a load tells the app while it runs: download events with a byte rate (the shard streams),
// the load's own progress calls (phase, bytes and tensors, every 100 ms), and warnings. An app's
// callback that throws is reported, never allowed to break the load.

/** Least time between two progress reports, in ms. */
const INTERVAL_MS = 100;
/** The byte rate is measured over about this much recent time, in ms. */
const RATE_WINDOW_MS = 2000;

/**
 * What `onProgress` receives, about every 100 ms while a load runs.
 * @typedef {object} LoadProgress
 * @property {'download' | 'upload' | 'compile'} phase `'download'`: bytes come from the network;
 *   `'upload'`: from the cache or a local File (they still stream into GPU memory); `'compile'`:
 *   every byte is on the GPU and the kernels are being built (no byte counts move in this phase).
 * @property {number} loadedBytes Bytes of all shards consumed so far.
 * @property {number} totalBytes Bytes of all shards together (known before the first byte is read).
 * @property {number} tensorsLoaded Tensors fully uploaded to the GPU so far.
 * @property {number} tensorsTotal Tensors in the model (0 until the first shard's header has been read).
 * @property {number} bytesPerSecond Recent rate at which model bytes arrive (network, cache or File),
 *   in bytes per second.
 */

/**
 * Codes of non-fatal load warnings: the load goes on.
 *
 * - `CACHE_UNAVAILABLE`: no OPFS or WebCrypto here (not a secure context?); nothing is cached.
 * - `CACHE_QUOTA`: the cache could not be written (usually the storage quota); continuing uncached.
 * - `CACHE_BUSY`: another tab or worker is caching the same shard; this load does not use the cache.
 * - `CACHE_CORRUPT`: a cached chunk failed its check; it is downloaded again from there.
 * - `OFFLINE`: the network failed, but the complete cached copy is used.
 * @typedef {'CACHE_CORRUPT' | 'CACHE_QUOTA' | 'CACHE_BUSY' | 'CACHE_UNAVAILABLE' | 'OFFLINE'} LoadWarningCode
 */

/**
 * What `onWarning` receives.
 * @typedef {object} LoadWarning
 * @property {'warning'} type
 * @property {LoadWarningCode} code
 * @property {string} message A readable description naming the URL involved.
 * @property {number} [shardIndex] The 0-based shard the warning is about, when it is about one.
 * @property {string} [url] The shard's URL, when it is about one.
 */

/**
 * Bytes of the shard streams so far. `loadedBytes`/`totalBytes` are over all shards; emitted for
 * the first bytes, then at most every 100 ms while bytes flow, and once when the last byte arrived
 * (`loadedBytes === totalBytes`).
 * @typedef {object} DownloadEvent
 * @property {'download'} type
 * @property {number} shardIndex
 * @property {number} loadedBytes
 * @property {number} totalBytes
 * @property {number} bytesPerSecond
 * @property {boolean} fromCache
 */

/** @typedef {(ev: DownloadEvent | LoadWarning) => void} StreamEventHandler */

/** @param {unknown} e */
function report(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else setTimeout(() => {
    throw e;
  });
}

/**
 * Calls an app's event handler; what it throws is reported (as an uncaught error would be) and
 * does not reach the caller.
 * @template T
 * @param {((ev: T) => void) | null | undefined} handler
 * @param {T} ev
 */
export function emitSafely(handler, ev) {
  if (!handler) return;
  try {
    handler(ev);
  } catch (e) {
    report(e);
  }
}

/** A byte rate over the last ~2 s of a growing count. */
class RateMeter {
  constructor() {
    /** @type {Array<[number, number]>} [time in ms, count] */
    this.samples = [[performance.now(), 0]];
  }

  /**
   * Records the count at time `now`.
   * @param {number} count
   * @param {number} now performance.now()
   */
  add(count, now) {
    this.samples.push([now, count]);
    while (this.samples.length > 2 && now - this.samples[0][0] > RATE_WINDOW_MS) this.samples.shift();
  }

  /**
   * Units per second over the window, 0 until 20 ms have passed.
   * @param {number} count the count now
   * @param {number} now performance.now()
   */
  rate(count, now) {
    const first = this.samples[0];
    if (!first) return 0;
    const dt = (now - first[0]) / 1000;
    if (dt <= 0.02) return 0;
    return Math.round((count - first[1]) / dt);
  }
}

/** Counts the bytes of all shards of a load and emits {@link DownloadEvent}s. */
export class DownloadProgress {
  /**
   * @param {number} totalBytes
   * @param {StreamEventHandler} [onEvent]
   */
  constructor(totalBytes, onEvent) {
    this.total = totalBytes;
    this.loaded = 0;
    this.onEvent = onEvent;
    this.lastEmit = -Infinity;
    this.meter = new RateMeter();
    this.finalSent = false;
  }

  /**
   * `n` more bytes of shard `shardIndex` arrived.
   * @param {number} shardIndex
   * @param {number} n
   * @param {boolean} fromCache
   */
  add(shardIndex, n, fromCache) {
    this.loaded += n;
    const now = performance.now();
    this.meter.add(this.loaded, now);
    if (this.loaded >= this.total) this._final(shardIndex, fromCache);
    else if (now - this.lastEmit >= INTERVAL_MS) this._emit(shardIndex, fromCache, now);
  }

  /** @param {number} shardIndex @param {boolean} fromCache @param {number} [now] */
  _emit(shardIndex, fromCache, now = performance.now()) {
    this.lastEmit = now;
    if (!this.onEvent) return;
    emitSafely(this.onEvent, {
      type: 'download',
      shardIndex,
      loadedBytes: this.loaded,
      totalBytes: this.total,
      bytesPerSecond: this.meter.rate(this.loaded, now),
      fromCache,
    });
  }

  /** @param {number} shardIndex @param {boolean} fromCache */
  _final(shardIndex, fromCache) {
    if (this.finalSent) return;
    this.finalSent = true;
    this._emit(shardIndex, fromCache);
  }
}

/**
 * The load's calls of `onProgress`: every 100 ms from a timer (so a stalled network still
 * reports), and from {@link LoadReporter#maybeReport} between pushes, because a busy thread
 * delays timers. Set the fields, then report.
 */
export class LoadReporter {
  /** @param {((p: LoadProgress) => void) | undefined} onProgress */
  constructor(onProgress) {
    this.onProgress = onProgress;
    /** @type {LoadProgress['phase']} */
    this.phase = 'download';
    this.loadedBytes = 0;
    this.totalBytes = 0;
    this.bytesPerSecond = 0;
    /** The loader's counts, read only between its calls. @type {{tensorsLoaded?: number, tensorsTotal?: number, headersParsed?: number}} */
    this.counts = { tensorsLoaded: 0, tensorsTotal: 0 };
    this.last = 0;
    this.timer = setInterval(() => this.report(), INTERVAL_MS);
  }

  report() {
    if (!this.onProgress) return;
    this.last = performance.now();
    const c = this.counts;
    try {
      this.onProgress({
        phase: this.phase,
        loadedBytes: this.loadedBytes,
        totalBytes: this.totalBytes,
        tensorsLoaded: c.tensorsLoaded ?? 0,
        tensorsTotal: c.tensorsTotal ?? 0,
        bytesPerSecond: this.bytesPerSecond,
      });
    } catch (e) {
      console.error('llama-webgpu: onProgress threw', e);
    }
  }

  /** Reports unless the last report is less than 100 ms old. */
  maybeReport() {
    if (performance.now() - this.last >= INTERVAL_MS) this.report();
  }

  /** Stops the timer; call once the load ended, either way. */
  stop() {
    clearInterval(this.timer);
  }
}
