// @ts-check
// One shard's bytes, produced in order into a bounded queue: first the verified chunks the OPFS
// cache (./cache.js) holds, then the rest from the network (./http.js), written to the cache as
// it arrives; or a File's bytes. A whole-shard SHA-256 is checked when the caller expects one.

import { ErrorCode, LlamaError, abortError } from './errors.js';
import { CacheEntry, CorruptChunkError, cacheSupported, tryLock } from './cache.js';
import { download, sameEtag } from './http.js';
import { emitSafely } from './progress.js';

/** @typedef {import('./sources.js').Shard} Shard */
/** @typedef {import('./progress.js').DownloadProgress} DownloadProgress */
/** @typedef {import('./progress.js').StreamEventHandler} StreamEventHandler */
/** @typedef {import('./progress.js').LoadWarningCode} LoadWarningCode */
/** @typedef {{update(u8: Uint8Array): void, digest(): string}} Hasher */
/** @typedef {import('./errors.js').LlamaErrorDetails} LlamaErrorDetails */

/**
 * A shard's cache entry and its record (meta.json) while it is produced; both null once the
 * cache is out of this load (unavailable, busy, or failed).
 * @typedef {{entry: CacheEntry | null, meta: any}} CacheState
 */

/**
 * The settings every shard of one openShards() call shares.
 * @typedef {object} ProducerOptions
 * @property {AbortSignal | undefined} userSignal the caller's signal
 * @property {AbortSignal} internalSignal aborts when the caller's does or openShards ends
 * @property {boolean} cache
 * @property {number} retries
 * @property {StreamEventHandler | undefined} onEvent
 * @property {number} chunkBytes
 * @property {number} readAheadBytes
 * @property {number} cacheChunkBytes
 * @property {Record<string, string> | null} sha256
 * @property {() => Hasher} createSha256
 * @property {typeof fetch} fetchImpl
 * @property {number} stallTimeoutMs
 */

/**
 * An AbortController that also aborts when `parent` does.
 * @param {AbortSignal} [parent]
 */
export function linkedController(parent) {
  const c = new AbortController();
  if (parent) {
    if (parent.aborted) c.abort(parent.reason);
    else parent.addEventListener('abort', () => c.abort(parent.reason), { once: true });
  }
  return c;
}

/** Whether a URL's bytes may be cached: http(s) only. @param {string | undefined} url */
export const cacheableUrl = (url) => /^https?:/i.test(url ?? '');

/**
 * Whether a cache record still holds the file the server has now.
 * @param {{size: number, etag: string | null, lastModified: string | null}} meta
 * @param {Shard} shard
 */
function cacheIsValidFor(meta, shard) {
  if (!meta || meta.size !== shard.size) return false;
  if (shard.offline) return true;
  if (meta.etag && shard.etag) return sameEtag(meta.etag, shard.etag);
  if (meta.etag || shard.etag) return false;
  return !!meta.lastModified && meta.lastModified === shard.lastModified;
}

/**
 * The bytes between a shard's producer and the caller, at most `limit` of them buffered: the
 * producer's push waits while the queue is full.
 */
class ChunkQueue {
  /** @param {number} limitBytes */
  constructor(limitBytes) {
    this.limit = limitBytes;
    /** @type {Uint8Array[]} */
    this.items = [];
    this.bytes = 0;
    this.done = false;
    /** @type {unknown} */
    this.error = null;
    /** @type {{resolve: () => void, reject: (e: unknown) => void} | null} */
    this.consumerWait = null;
    /** @type {{resolve: () => void, reject: (e: unknown) => void} | null} */
    this.producerWait = null;
    /** Set when the consumer gives up: the producer's push rejects with it. @type {unknown} */
    this.cancelled = null;
  }

  /** @param {Uint8Array} u8 */
  async push(u8) {
    if (this.cancelled) throw this.cancelled;
    while (this.items.length > 0 && this.bytes + u8.length > this.limit) {
      await new Promise((resolve, reject) => (this.producerWait = { resolve: () => resolve(undefined), reject }));
      if (this.cancelled) throw this.cancelled;
    }
    this.items.push(u8);
    this.bytes += u8.length;
    this._wakeConsumer();
  }

  end() {
    this.done = true;
    this._wakeConsumer();
  }

  /** Ends the stream with an error, dropping what is buffered: the consumer sees it next. @param {unknown} err */
  fail(err) {
    if (this.done && this.items.length === 0 && !this.error) return;
    this.error ??= err;
    this.items = [];
    this.bytes = 0;
    this._wakeConsumer();
  }

  /** Consumer gives up: drop the buffered bytes, make the producer stop. @param {unknown} reason */
  cancel(reason) {
    this.cancelled ??= reason;
    this.items = [];
    this.bytes = 0;
    this.done = true;
    this._wakeProducer();
    this._wakeConsumer();
  }

  _wakeProducer() {
    const w = this.producerWait;
    this.producerWait = null;
    w?.resolve();
  }

  _wakeConsumer() {
    const w = this.consumerWait;
    if (!w) return;
    this.consumerWait = null;
    if (this.error) w.reject(this.error);
    else w.resolve();
  }

  /** @returns {Promise<IteratorResult<Uint8Array, undefined>>} */
  async next() {
    for (;;) {
      if (this.error) throw this.error;
      const v = this.items.shift();
      if (v) {
        this.bytes -= v.length;
        this._wakeProducer();
        return { value: v, done: false };
      }
      if (this.done) return { value: undefined, done: true };
      await new Promise((resolve, reject) => (this.consumerWait = { resolve: () => resolve(undefined), reject }));
    }
  }
}

/** Re-chunks arbitrary byte pieces into fresh buffers of `size` bytes (the last may be shorter). */
class Rechunker {
  /**
   * @param {number} size
   * @param {number} remaining bytes still to come
   * @param {(b: Uint8Array) => Promise<void>} out
   */
  constructor(size, remaining, out) {
    this.size = size;
    this.remaining = remaining;
    this.out = out;
    /** @type {Uint8Array | null} */
    this.buf = null;
    this.fill = 0;
  }

  /** @param {Uint8Array} u8 */
  async push(u8) {
    let pos = 0;
    while (pos < u8.length) {
      if (!this.buf) {
        this.buf = new Uint8Array(Math.min(this.size, this.remaining));
        this.fill = 0;
      }
      const buf = this.buf;
      const n = Math.min(u8.length - pos, buf.length - this.fill);
      buf.set(n === u8.length ? u8 : u8.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
      if (this.fill === buf.length) {
        this.buf = null;
        this.remaining -= buf.length;
        await this.out(buf);
      }
    }
  }
}

/**
 * Produces shard `index` of `count` into its `queue`, after the previous shard's producer
 * finished (`after`), so shards download one at a time while the caller reads ahead.
 */
export class ShardProducer {
  /**
   * @param {Shard & {size: number}} shard probed
   * @param {number} index
   * @param {ProducerOptions} o
   * @param {DownloadProgress} progress
   * @param {Promise<unknown>} after
   */
  constructor(shard, index, o, progress, after) {
    this.shard = shard;
    this.index = index;
    this.o = o;
    this.progress = progress;
    this.after = after;
    this.queue = new ChunkQueue(o.readAheadBytes);
    this.ctl = linkedController(o.internalSignal);
    this.fromCache = false;
    /** @type {() => void} */
    let readyResolve = () => {};
    /** Resolves once `fromCache` is known (or the producer failed). @type {Promise<void>} */
    this.ready = new Promise((r) => (readyResolve = r));
    this._ready = readyResolve;
    this.finished = this._run().then(
      () => this.queue.end(),
      (e) => this.queue.fail(e),
    );
  }

  get signal() {
    return this.ctl.signal;
  }

  /** Stops this shard's work (caller moved on or gave up). @param {unknown} reason */
  cancel(reason) {
    this.queue.cancel(reason);
    this.ctl.abort(reason);
  }

  /** @param {LoadWarningCode} code @param {string} message */
  warn(code, message) {
    // Only URL shards warn.
    emitSafely(this.o.onEvent, { type: 'warning', code, message, shardIndex: this.index, url: /** @type {string} */ (this.shard.url) });
  }

  async _run() {
    try {
      await this.after;
    } catch {}
    const sh = this.shard;
    if (this.signal.aborted) {
      this._ready();
      throw this._abortErr();
    }
    const expected = this.o.sha256 ? this.o.sha256[sh.key] ?? this.o.sha256[/** @type {string} */ (sh.url)] ?? this.o.sha256[sh.name] : undefined;
    const expectedHex = typeof expected === 'string' ? expected.toLowerCase() : null;
    /** @type {Hasher | null} */
    let hasher = null;
    // Network bytes count toward progress as they arrive (onBytes in _fromNetwork), other bytes as they are queued.
    /** @param {Uint8Array} u8 @param {boolean} fromCache @param {boolean} [counted] */
    const emit = async (u8, fromCache, counted = false) => {
      hasher?.update(u8);
      if (!counted) this.progress.add(this.index, u8.length, fromCache);
      await this.queue.push(u8);
    };
    if (sh.file) {
      this._ready();
      if (expectedHex) hasher = this.o.createSha256();
      await this._readFile(sh.file, emit);
      this._checkHash(hasher, expectedHex);
      return;
    }
    /** @type {(() => void) | null} */
    let release = null;
    const url = /** @type {string} */ (sh.url);
    /** @type {CacheState} */
    const c = { entry: null, meta: null };
    /** @type {{writer: import('./cache.js').ChunkWriter | null}} */
    const writerRef = { writer: null };
    try {
      if (this.o.cache && cacheSupported() && cacheableUrl(sh.url)) {
        release = await tryLock(sh.key);
        if (!release) this.warn('CACHE_BUSY', `${sh.url} is being cached by another tab or worker; loading it without the cache`);
        else await this._openEntry(c);
      }
      if (sh.offline && !(c.meta && c.meta.complete)) {
        throw new LlamaError(ErrorCode.NETWORK_ERROR, `${url} is unreachable and its cached copy is gone`, { url });
      }
      this.fromCache = !!(c.meta && c.meta.complete);
      this._ready();
      const hashKnownGood = expectedHex && c.meta && c.meta.complete && c.meta.shardSha256 === expectedHex;
      if (expectedHex && !hashKnownGood) hasher = this.o.createSha256();
      const offset = await this._fromCache(c, emit);
      let allFromCache = true;
      if (offset < sh.size) {
        allFromCache = false;
        await this._fromNetwork(c, writerRef, offset, emit);
      }
      if (sh.size === 0) this.progress.add(this.index, 0, allFromCache);
      this._checkHash(hasher, expectedHex);
      if (hasher && c.entry && c.meta && c.meta.complete) {
        c.meta.shardSha256 = expectedHex;
        try {
          await c.entry.writeMeta(c.meta);
        } catch {}
      }
    } catch (e) {
      if (e instanceof LlamaError && e.code === ErrorCode.INTEGRITY_ERROR) {
        writerRef.writer = null;
        if (c.entry) await c.entry.remove();
      }
      throw e;
    } finally {
      if (writerRef.writer) await writerRef.writer.abandon();
      if (release) release();
    }
  }

  /**
   * Opens the shard's cache entry and checks it still matches the remote (or starts a fresh
   * record): where the network starts depends on it.
   * @param {CacheState} c
   */
  async _openEntry(c) {
    const sh = this.shard;
    const url = /** @type {string} */ (sh.url);
    try {
      c.entry = await CacheEntry.open(url, { create: true });
      if (!c.entry) return;
      c.meta = await c.entry.readMeta();
      if (c.meta && !cacheIsValidFor(c.meta, sh)) {
        await c.entry.truncate(c.meta, 0);
        c.meta = null;
      }
      if (!c.meta) {
        c.meta = CacheEntry.newMeta(url, sh, this.o.cacheChunkBytes);
        await c.entry.writeMeta(c.meta);
      }
    } catch (e) {
      await this._dropCache(c, e);
    }
  }

  /**
   * Emits the verified chunks the cache holds, up to the first missing or damaged one (which is
   * truncated away, with a CACHE_CORRUPT warning). Returns the byte the network must start at.
   * @param {CacheState} c
   * @param {(u8: Uint8Array, fromCache: boolean) => Promise<void>} emit
   */
  async _fromCache(c, emit) {
    const sh = this.shard;
    let offset = 0;
    if (!c.entry || !c.meta) return offset;
    const { entry, meta } = c;
    const n = meta.chunks.length;
    for (let i = 0; i < n; i++) {
      if (this.signal.aborted) throw this._abortErr();
      let buf;
      try {
        buf = await entry.readChunk(meta, i);
      } catch (e) {
        if (this.signal.aborted) throw this._abortErr();
        const why = e instanceof CorruptChunkError ? e.message : `chunk ${i} unreadable: ${e && /** @type {any} */ (e).message}`;
        this.warn('CACHE_CORRUPT', `cache of ${sh.url}: ${why}; fetching from byte ${offset} again`);
        try {
          await entry.truncate(meta, i);
        } catch (e2) {
          await this._dropCache(c, e2);
        }
        if (sh.offline) throw new LlamaError(ErrorCode.NETWORK_ERROR, `${sh.url} is unreachable and its cached copy is damaged (${why})`, { url: /** @type {string} */ (sh.url) });
        break;
      }
      for (let p = 0; p < buf.length; p += this.o.chunkBytes) {
        const piece = buf.length <= this.o.chunkBytes ? buf : buf.slice(p, p + this.o.chunkBytes);
        await emit(piece, true);
      }
      offset += buf.length;
    }
    return offset;
  }

  /**
   * Downloads the shard from `offset` on: each piece counts toward progress as it arrives, goes
   * to the cache writer, and is re-chunked for the queue.
   * @param {CacheState} c
   * @param {{writer: import('./cache.js').ChunkWriter | null}} w
   * @param {number} offset
   * @param {(u8: Uint8Array, fromCache: boolean, counted?: boolean) => Promise<void>} emit
   */
  async _fromNetwork(c, w, offset, emit) {
    const sh = /** @type {Shard & {url: string, size: number}} */ (this.shard);
    if (c.entry && c.meta) w.writer = c.entry.writer(c.meta);
    const rechunk = new Rechunker(this.o.chunkBytes, sh.size - offset, (b) => emit(b, false, true));
    /** @param {Uint8Array} u8 */
    const onBytes = async (u8) => {
      this.progress.add(this.index, u8.length, false);
      if (w.writer) {
        try {
          await w.writer.push(u8);
        } catch (e) {
          w.writer = null;
          await this._dropCache(c, e);
        }
      }
      await rechunk.push(u8);
    };
    const { fetchImpl, retries, stallTimeoutMs } = this.o;
    await download(sh, offset, onBytes, { signal: this.signal, abortErr: () => this._abortErr(), fetchImpl, retries, stallTimeoutMs });
    if (w.writer) {
      try {
        await w.writer.finish();
      } catch (e) {
        w.writer = null;
        await this._dropCache(c, e);
      }
      w.writer = null;
    }
  }

  _abortErr() {
    return abortError(this.o.userSignal?.aborted ? this.o.userSignal : this.signal);
  }

  /** @param {Hasher | null} hasher @param {string | null} expectedHex */
  _checkHash(hasher, expectedHex) {
    if (!hasher) return;
    const got = String(hasher.digest()).toLowerCase();
    if (got !== expectedHex) {
      // A File's details have `url: undefined`, next to its name.
      const details = /** @type {LlamaErrorDetails} */ ({ url: this.shard.url, name: this.shard.name, expected: expectedHex, actual: got });
      throw new LlamaError(ErrorCode.INTEGRITY_ERROR, `SHA-256 of ${this.shard.url ?? this.shard.name} is ${got}, expected ${expectedHex}`, details);
    }
  }

  /**
   * The cache failed (quota, usually): warn, delete the entry, go on without it.
   * @param {CacheState} c
   * @param {any} e
   */
  async _dropCache(c, e) {
    let what = 'storage quota exceeded';
    if (e?.name !== 'QuotaExceededError') {
      what = `${e?.name || 'Error'}: ${e?.message || e}`;
      // Chromium may report a write over the quota as an aborted stream ("AbortError: Failed
      // to write data to data pipe"): say when the quota is the likely cause.
      const note = await quotaNote();
      if (note) what += `; ${note}`;
    }
    this.warn('CACHE_QUOTA', `cannot cache ${this.shard.url} (${what}); continuing without the cache`);
    if (c.entry) await c.entry.remove();
    c.entry = null;
    c.meta = null;
  }

  /**
   * @param {Blob} file
   * @param {(u8: Uint8Array, fromCache: boolean) => Promise<void>} emit
   */
  async _readFile(file, emit) {
    const size = /** @type {number} */ (this.shard.size);
    const step = this.o.chunkBytes;
    for (let off = 0; off < size; off += step) {
      if (this.signal.aborted) throw this._abortErr();
      let ab;
      try {
        ab = await file.slice(off, Math.min(size, off + step)).arrayBuffer();
      } catch (e) {
        if (this.signal.aborted) throw this._abortErr();
        throw new LlamaError(ErrorCode.IO_ERROR, `cannot read ${this.shard.name} at byte ${off}: ${e && /** @type {any} */ (e).message}`);
      }
      if (this.signal.aborted) throw this._abortErr();
      await emit(new Uint8Array(ab), false);
    }
    if (size === 0) this.progress.add(this.index, 0, false);
  }
}

/** "storage quota nearly used up (X of Y MB)" when less than two chunks' room is left, else ''. */
async function quotaNote() {
  try {
    const { usage, quota } = await navigator.storage.estimate();
    if (quota === undefined || usage === undefined || quota - usage > 64 * 2 ** 20) return '';
    return `storage quota nearly used up (${(usage / 1e6).toFixed(0)} of ${(quota / 1e6).toFixed(0)} MB)`;
  } catch {
    return '';
  }
}
