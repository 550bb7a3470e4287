// Model sources → ordered streams of shard bytes.
//
// A source is a URL, a list of URLs, a File/Blob or a list of Files. A gguf-split name
// (`model-00001-of-00003.gguf`) expands to, or is checked against, the full set of shards.
// URL shards are streamed with fetch(): interrupted bodies resume with HTTP Range requests, and the
// bytes are persisted in the OPFS cache (./cache.js) as they arrive, so a later load — or a reload in
// the middle of this one — reads them from disk. While the caller consumes shard k, shard k+1 is
// already downloading into a bounded read-ahead queue.

import { ErrorCode, LlamaError, abortError } from './errors.js';
import {
  CacheEntry,
  CorruptChunkError,
  DEFAULT_CACHE_CHUNK_BYTES,
  cacheSupported,
  cacheUsage,
  createSha256 as createSha256Js,
  deleteCached,
  readCachedMeta,
  tryLock,
} from './cache.js';

export { cacheUsage };

const MiB = 1024 * 1024;
const SPLIT_RE = /-(\d{5})-of-(\d{5})\.gguf$/;
const PROGRESS_INTERVAL_MS = 100;
const BACKOFF_START_MS = 100;
const BACKOFF_CAP_MS = 2000;
const PROBE_CONCURRENCY = 4;
const RETRY_RESET_BYTES = 1024 * 1024;
const INTEGRITY_ERROR = ErrorCode.INTEGRITY_ERROR;

const STATUS_TEXT = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  408: 'Request Timeout', 410: 'Gone', 416: 'Range Not Satisfiable', 429: 'Too Many Requests',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/**
 * @typedef {object} Shard
 * @property {string} key   stable identity: the absolute URL, or `file:<name>:<size>:<lastModified>`
 * @property {string} name  file name (last URL path segment, decoded)
 * @property {string} [url] absolute URL (URL sources)
 * @property {Blob} [file]  the File/Blob (file sources)
 * @property {number} [size]            set by probeShards
 * @property {string|null} [etag]       set by probeShards
 * @property {string|null} [lastModified] set by probeShards
 * @property {boolean} [offline]        set by probeShards when the network failed and the complete cached copy stands in
 */

const pad5 = (n) => String(n).padStart(5, '0');

function splitInfo(name) {
  const m = SPLIT_RE.exec(name);
  if (!m) return null;
  return { index: Number(m[1]), count: Number(m[2]), prefix: name.slice(0, m.index) };
}

function isBlob(x) {
  return typeof Blob !== 'undefined' && x instanceof Blob;
}

function urlName(u) {
  const seg = u.pathname.split('/').pop() || u.hostname;
  try {
    return decodeURIComponent(seg);
  } catch {
    return seg;
  }
}

function toUrl(s, baseUrl) {
  try {
    return new URL(String(s), baseUrl);
  } catch {
    throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `not a valid URL: ${String(s)}${baseUrl ? '' : ' (relative URLs need a base URL)'}`);
  }
}

function urlShard(u) {
  return { key: u.href, name: urlName(u), url: u.href };
}

function fileShard(f) {
  const name = typeof f.name === 'string' && f.name ? f.name : 'model.gguf';
  return { key: `file:${name}:${f.size}:${f.lastModified ?? 0}`, name, file: f };
}

/** The URL of shard `i` (1-based) of a split whose first shard is `u`. */
function shardUrl(u, i, count) {
  const v = new URL(u.href);
  const suffix = `-${pad5(i)}-of-${pad5(count)}.gguf`;
  if (SPLIT_RE.test(v.pathname)) v.pathname = v.pathname.replace(SPLIT_RE, suffix);
  else {
    const dir = v.pathname.slice(0, v.pathname.lastIndexOf('/') + 1);
    const name = urlName(v).replace(SPLIT_RE, suffix);
    v.pathname = dir + encodeURIComponent(name);
  }
  return v;
}

/**
 * Turns a model source into its shards, in shard order.
 *
 * - A URL (string or URL object) whose name is `…-00001-of-0000N.gguf` expands to all N shard URLs
 *   (query strings are kept); another shard index alone is BAD_SPLIT.
 * - A list of URLs or Files must be the complete set of one model's gguf-split shards, in any order;
 *   a missing, repeated or foreign shard is BAD_SPLIT. A one-element list is treated as its element.
 * - A single File/Blob is one shard; a File named as one shard of several is BAD_SPLIT (select them all).
 *
 * @param {string|URL|Blob|File|Array<string|URL>|Array<File|Blob>|FileList} source
 * @param {string} [baseUrl] base for relative URLs (default: the page's or worker's location)
 * @returns {Shard[]}
 * @throws {LlamaError} BAD_SPLIT or INVALID_ARGUMENT
 */
export function resolveSource(source, baseUrl = globalThis.location?.href) {
  if (source == null) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'no model source given');
  let list;
  if (typeof source === 'string' || source instanceof URL || isBlob(source)) list = [source];
  else if (Array.isArray(source)) list = source;
  else if (typeof source.length === 'number' && typeof source !== 'function') list = Array.from(source);
  else throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `unsupported model source: ${Object.prototype.toString.call(source)} (want a URL, File, Blob or a list of them)`);
  if (list.length === 0) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'empty list of model sources');
  const blobs = list.filter(isBlob).length;
  if (blobs !== 0 && blobs !== list.length) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, 'a model source list mixes Files and URLs');
  for (const s of list) {
    if (!isBlob(s) && typeof s !== 'string' && !(s instanceof URL)) {
      throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `unsupported model source entry: ${Object.prototype.toString.call(s)}`);
    }
  }
  const areFiles = blobs > 0;

  if (list.length === 1) {
    if (areFiles) {
      const sh = fileShard(list[0]);
      const sp = splitInfo(sh.name);
      if (sp && sp.count > 1) {
        const missing = sp.index === 1 ? 2 : 1;
        throw new LlamaError(
          ErrorCode.BAD_SPLIT,
          `shard ${missing} of ${sp.count} is missing: ${sh.name} is one shard of a split model; select all ${sp.count} files (${sp.prefix}-${pad5(1)}-of-${pad5(sp.count)}.gguf …)`,
        );
      }
      return [sh];
    }
    const u = toUrl(list[0], baseUrl);
    const name = urlName(u);
    const sp = splitInfo(name);
    if (!sp || sp.count === 1) return [urlShard(u)];
    if (sp.index < 1 || sp.index > sp.count || sp.count < 1) throw new LlamaError(ErrorCode.BAD_SPLIT, `bad gguf-split shard name: ${name}`);
    if (sp.index !== 1) {
      throw new LlamaError(
        ErrorCode.BAD_SPLIT,
        `${u.href} is shard ${sp.index} of ${sp.count}; open the first shard (${sp.prefix}-${pad5(1)}-of-${pad5(sp.count)}.gguf) or pass all shard URLs`,
      );
    }
    const out = [];
    for (let i = 1; i <= sp.count; i++) out.push(urlShard(shardUrl(u, i, sp.count)));
    return out;
  }

  const shards = list.map((s) => (areFiles ? fileShard(s) : urlShard(toUrl(s, baseUrl))));
  let count = null;
  let prefix = null;
  const byIndex = new Map();
  for (const sh of shards) {
    const sp = splitInfo(sh.name);
    if (!sp) {
      throw new LlamaError(
        ErrorCode.BAD_SPLIT,
        `${sh.url ?? sh.name} is not a gguf-split shard (name-00001-of-00003.gguf); a list must hold all shards of one split model`,
      );
    }
    if (count === null) {
      count = sp.count;
      prefix = sp.prefix;
    } else if (sp.count !== count) {
      throw new LlamaError(ErrorCode.BAD_SPLIT, `shards disagree on the shard count: ${sh.name} says ${sp.count}, another says ${count}`);
    } else if (sp.prefix !== prefix) {
      throw new LlamaError(ErrorCode.BAD_SPLIT, `shards of different models: ${sh.name} does not belong to ${prefix}`);
    }
    if (sp.index < 1 || sp.index > sp.count) throw new LlamaError(ErrorCode.BAD_SPLIT, `bad gguf-split shard name: ${sh.name}`);
    if (byIndex.has(sp.index)) throw new LlamaError(ErrorCode.BAD_SPLIT, `shard ${sp.index} of ${count} is given twice: ${sh.name}`);
    byIndex.set(sp.index, sh);
  }
  const out = [];
  for (let i = 1; i <= count; i++) {
    const sh = byIndex.get(i);
    if (!sh) {
      const expect = `${prefix}-${pad5(i)}-of-${pad5(count)}.gguf`;
      const first = byIndex.values().next().value;
      const where = first.url ? shardUrl(new URL(first.url), i, count).href : expect;
      throw new LlamaError(ErrorCode.BAD_SPLIT, `shard ${i} of ${count} is missing: ${where}`);
    }
    out.push(sh);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// small helpers

function statusLine(res) {
  return `HTTP ${res.status}${res.statusText ? ' ' + res.statusText : STATUS_TEXT[res.status] ? ' ' + STATUS_TEXT[res.status] : ''}`;
}

function httpError(method, url, res) {
  return new LlamaError(ErrorCode.NETWORK_ERROR, `${method} ${url} → ${statusLine(res)}`, { url, status: res.status });
}

function fetchFailed(url, e) {
  const why = e && e.message ? ` (${e.message})` : '';
  return new LlamaError(ErrorCode.NETWORK_ERROR, `network error or CORS policy blocked ${url}${why}`, { url });
}

const retryableStatus = (s) => s === 408 || s === 425 || s === 429 || s >= 500;

function isAbort(e, signal) {
  return (signal && signal.aborted) || (e && e.name === 'AbortError' && !(e instanceof LlamaError));
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const backoffMs = (attempt) => Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** Math.max(0, attempt - 1));

function report(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else setTimeout(() => {
    throw e;
  });
}

function safeEmit(onEvent, ev) {
  if (!onEvent) return;
  try {
    onEvent(ev);
  } catch (e) {
    report(e);
  }
}

function headerInt(res, name) {
  const v = res.headers.get(name);
  if (v == null || !/^\s*\d+\s*$/.test(v)) return null;
  return Number(v);
}

/** `bytes a-b/total` → {start, end, total|null} */
function parseContentRange(v) {
  const m = v && /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v);
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
}

const isStrongEtag = (e) => typeof e === 'string' && e.startsWith('"');
const stripWeak = (e) => e.replace(/^W\//, '');

function sameOriginAs(url) {
  try {
    return globalThis.location ? new URL(url).origin === new URL(globalThis.location.href).origin : false;
  } catch {
    return false;
  }
}

function cacheableUrl(url) {
  return /^https?:/i.test(url);
}

function cacheIsValidFor(meta, shard) {
  if (!meta || meta.size !== shard.size) return false;
  if (shard.offline) return true;
  if (meta.etag && shard.etag) return stripWeak(meta.etag) === stripWeak(shard.etag);
  if (meta.etag || shard.etag) return false;
  return !!meta.lastModified && meta.lastModified === shard.lastModified;
}

// ---------------------------------------------------------------------------------------------
// probing

async function probeUrl(shard, { signal, fetchImpl, retries, useCache, onEvent }) {
  const url = shard.url;
  let cachedMeta;
  const cachedComplete = async () => {
    if (!useCache) return null;
    if (cachedMeta === undefined) cachedMeta = await readCachedMeta(url);
    return cachedMeta && cachedMeta.complete ? cachedMeta : null;
  };
  const fromCache = async (err) => {
    const m = await cachedComplete();
    if (!m) return false;
    Object.assign(shard, { size: m.size, etag: m.etag, lastModified: m.lastModified, offline: true });
    safeEmit(onEvent, {
      type: 'warning',
      code: 'OFFLINE',
      message: `could not reach ${url} (${err.message}); using the cached copy`,
      url,
    });
    return true;
  };
  // Never the HTTP cache: it cannot hold big models, and its partial entries rewrite our Range requests.
  const init = { signal, cache: 'no-store' };

  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw abortError(signal);
    let err;
    try {
      let res = await fetchImpl(url, { ...init, method: 'HEAD' });
      let method = 'HEAD';
      let size = res.ok ? headerInt(res, 'content-length') : null;
      if ((res.ok && size === null) || (!res.ok && res.status !== 404 && res.status !== 410 && !retryableStatus(res.status))) {
        // HEAD not allowed (405/501/403 on GET-signed URLs) or no length: ask for one byte instead.
        method = 'GET';
        res = await fetchImpl(url, { ...init, method: 'GET', headers: { Range: 'bytes=0-0' } });
        if (res.status === 206) {
          size = parseContentRange(res.headers.get('content-range'))?.total ?? null;
        } else if (res.ok) {
          size = headerInt(res, 'content-length');
        }
        try {
          await res.body?.cancel();
        } catch {}
      }
      if (!res.ok) {
        err = httpError(method, url, res);
        if (!retryableStatus(res.status)) {
          if (await fromCache(err)) return shard;
          throw err;
        }
      } else if (size === null) {
        throw new LlamaError(ErrorCode.NETWORK_ERROR, `${method} ${url} gave no Content-Length: cannot tell the size of the shard`, { url, status: res.status });
      } else {
        Object.assign(shard, {
          size,
          etag: res.headers.get('etag'),
          lastModified: res.headers.get('last-modified'),
          offline: false,
        });
        shard.ifRangeOk = sameOriginAs(res.url || url) && sameOriginAs(url);
        return shard;
      }
    } catch (e) {
      if (e instanceof LlamaError) throw e;
      if (isAbort(e, signal)) throw abortError(signal);
      err = fetchFailed(url, e);
      if (await fromCache(err)) return shard;
    }
    if (attempt >= retries) {
      throw new LlamaError(ErrorCode.NETWORK_ERROR, `${err.message}; gave up after ${retries} retries`, err.details);
    }
    await sleep(backoffMs(attempt + 1), signal);
  }
}

/**
 * Finds each shard's size (and ETag, Last-Modified) before any big download: HEAD, or a one-byte
 * `Range: bytes=0-0` GET where HEAD is refused. Files give their own size. A shard that cannot be
 * reached but is complete in the cache is taken from the cache's record (`offline: true`, with an
 * `OFFLINE` warning event).
 *
 * @param {Shard[]} shards from resolveSource; mutated and returned
 * @param {{signal?: AbortSignal, fetchImpl?: typeof fetch, retries?: number, cache?: boolean,
 *   onEvent?: (ev: object) => void}} [opts]
 * @returns {Promise<Shard[]>}
 * @throws {LlamaError} NETWORK_ERROR naming the URL and HTTP status (e.g. a 404 shard), ABORTED
 */
export async function probeShards(shards, { signal, fetchImpl, retries = 5, cache = true, onEvent } = {}) {
  const f = fetchImpl ?? globalThis.fetch.bind(globalThis);
  const useCacheFor = (sh) => cache !== false && cacheSupported() && cacheableUrl(sh.url);
  if (signal?.aborted) throw abortError(signal);
  let next = 0;
  let failed = null;
  const worker = async () => {
    while (next < shards.length && !failed) {
      const sh = shards[next++];
      if (sh.file) {
        sh.size = sh.file.size;
        sh.etag = null;
        sh.lastModified = sh.file.lastModified != null ? String(sh.file.lastModified) : null;
        continue;
      }
      try {
        await probeUrl(sh, { signal, fetchImpl: f, retries, useCache: useCacheFor(sh), onEvent });
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, shards.length) }, worker));
  if (failed) throw failed;
  return shards;
}

// ---------------------------------------------------------------------------------------------
// bounded chunk queue between a shard's producer and the caller

class ChunkQueue {
  constructor(limitBytes) {
    this.limit = limitBytes;
    this.items = [];
    this.bytes = 0;
    this.done = false;
    this.error = null;
    this.consumerWait = null; // {resolve, reject}
    this.producerWait = null; // {resolve, reject}
    this.cancelled = null; // set when the consumer gives up: the producer's push rejects with it
  }

  async push(u8) {
    if (this.cancelled) throw this.cancelled;
    while (this.items.length > 0 && this.bytes + u8.length > this.limit) {
      await new Promise((resolve, reject) => (this.producerWait = { resolve, reject }));
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

  fail(err) {
    if (this.done && this.items.length === 0 && !this.error) return;
    this.error ??= err;
    this.items = [];
    this.bytes = 0;
    this._wakeConsumer();
  }

  /** Consumer gives up: drop the buffered bytes, make the producer stop. */
  cancel(reason) {
    this.cancelled ??= reason;
    this.items = [];
    this.bytes = 0;
    this.done = true;
    const w = this.producerWait;
    this.producerWait = null;
    w?.resolve();
    this._wakeConsumer();
  }

  _wakeConsumer() {
    const w = this.consumerWait;
    if (!w) return;
    this.consumerWait = null;
    if (this.error) w.reject(this.error);
    else w.resolve();
  }

  async next() {
    for (;;) {
      if (this.error) throw this.error;
      if (this.items.length > 0) {
        const v = this.items.shift();
        this.bytes -= v.length;
        const w = this.producerWait;
        this.producerWait = null;
        w?.resolve();
        return { value: v, done: false };
      }
      if (this.done) return { value: undefined, done: true };
      await new Promise((resolve, reject) => (this.consumerWait = { resolve, reject }));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// progress

class Progress {
  constructor(totalBytes, onEvent) {
    this.total = totalBytes;
    this.loaded = 0;
    this.onEvent = onEvent;
    this.lastEmit = -Infinity;
    this.samples = [[performance.now(), 0]];
    this.finalSent = false;
  }

  add(shardIndex, n, fromCache) {
    this.loaded += n;
    const now = performance.now();
    this.samples.push([now, this.loaded]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 2000) this.samples.shift();
    if (this.loaded >= this.total) this.final(shardIndex, fromCache);
    else if (now - this.lastEmit >= PROGRESS_INTERVAL_MS) this._emit(shardIndex, fromCache, now);
  }

  rate(now) {
    const first = this.samples[0];
    if (!first) return 0;
    const dt = (now - first[0]) / 1000;
    if (dt <= 0.02) return 0;
    return Math.round((this.loaded - first[1]) / dt);
  }

  _emit(shardIndex, fromCache, now = performance.now()) {
    this.lastEmit = now;
    if (!this.onEvent) return;
    safeEmit(this.onEvent, {
      type: 'download',
      shardIndex,
      loadedBytes: this.loaded,
      totalBytes: this.total,
      bytesPerSecond: this.rate(now),
      fromCache,
    });
  }

  final(shardIndex, fromCache) {
    if (this.finalSent) return;
    this.finalSent = true;
    this._emit(shardIndex, fromCache);
  }
}

// ---------------------------------------------------------------------------------------------
// per-shard producer

/** Re-chunks arbitrary byte pieces into fresh buffers of `size` bytes (the last may be shorter). */
class Rechunker {
  constructor(size, remaining, out) {
    this.size = size;
    this.remaining = remaining;
    this.out = out;
    this.buf = null;
    this.fill = 0;
  }

  async push(u8) {
    let pos = 0;
    while (pos < u8.length) {
      if (!this.buf) {
        this.buf = new Uint8Array(Math.min(this.size, this.remaining));
        this.fill = 0;
      }
      const n = Math.min(u8.length - pos, this.buf.length - this.fill);
      this.buf.set(n === u8.length ? u8 : u8.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
      if (this.fill === this.buf.length) {
        const b = this.buf;
        this.buf = null;
        this.remaining -= b.length;
        await this.out(b);
      }
    }
  }
}

function linkedController(parent) {
  const c = new AbortController();
  if (parent) {
    if (parent.aborted) c.abort(parent.reason);
    else parent.addEventListener('abort', () => c.abort(parent.reason), { once: true });
  }
  return c;
}

class ShardProducer {
  constructor(shard, index, count, o, progress, after) {
    this.shard = shard;
    this.index = index;
    this.count = count;
    this.o = o;
    this.progress = progress;
    this.after = after;
    this.queue = new ChunkQueue(o.readAheadBytes);
    this.ctl = linkedController(o.internalSignal);
    this.fromCache = false;
    let readyResolve;
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

  /** Stops this shard's work (caller moved on or gave up). */
  cancel(reason) {
    this.queue.cancel(reason);
    this.ctl.abort(reason);
  }

  warn(code, message) {
    safeEmit(this.o.onEvent, { type: 'warning', code, message, shardIndex: this.index, url: this.shard.url });
  }

  async _run() {
    try {
      await this.after;
    } catch {}
    const sh = this.shard;
    const { signal } = this;
    if (signal.aborted) {
      this._ready();
      throw this._abortErr();
    }
    const expected = this.o.sha256 ? this.o.sha256[sh.key] ?? this.o.sha256[sh.url] ?? this.o.sha256[sh.name] : undefined;
    const expectedHex = typeof expected === 'string' ? expected.toLowerCase() : null;
    let hasher = null;
    // Network bytes count toward progress as they arrive (onBytes below), other bytes as they are queued.
    const emit = async (u8, fromCache, counted = false) => {
      hasher?.update(u8);
      if (!counted) this.progress.add(this.index, u8.length, fromCache);
      await this.queue.push(u8);
    };
    if (sh.file) {
      this._ready();
      if (expectedHex) hasher = this.o.createSha256();
      await this._readFile(emit);
      this._checkHash(hasher, expectedHex);
      return;
    }
    let release = null;
    let entry = null;
    let meta = null;
    let writer = null;
    try {
      // Cache entry: lock it, check it still matches the remote, decide where the network starts.
      if (this.o.cache && cacheSupported() && cacheableUrl(sh.url)) {
        release = await tryLock(sh.key);
        if (!release) {
          this.warn('CACHE_BUSY', `${sh.url} is being cached by another tab or worker; loading it without the cache`);
        } else {
          try {
            entry = await CacheEntry.open(sh.url, { create: true });
            if (entry) {
              meta = await entry.readMeta();
              if (meta && !cacheIsValidFor(meta, sh)) {
                await entry.truncate(meta, 0);
                meta = null;
              }
              if (!meta) {
                meta = CacheEntry.newMeta(sh.url, sh, this.o.cacheChunkBytes);
                await entry.writeMeta(meta);
              }
            }
          } catch (e) {
            await this._cacheFailed(entry, e);
            entry = null;
            meta = null;
          }
        }
      }
      if (sh.offline && !(meta && meta.complete)) {
        throw new LlamaError(ErrorCode.NETWORK_ERROR, `${sh.url} is unreachable and its cached copy is gone`, { url: sh.url });
      }
      this.fromCache = !!(meta && meta.complete);
      this._ready();
      const hashKnownGood = expectedHex && meta && meta.complete && meta.shardSha256 === expectedHex;
      if (expectedHex && !hashKnownGood) hasher = this.o.createSha256();

      // 1. Verified chunks from the cache.
      let offset = 0;
      let allFromCache = true;
      if (meta) {
        const n = meta.chunks.length;
        for (let i = 0; i < n; i++) {
          if (signal.aborted) throw this._abortErr();
          let buf;
          try {
            buf = await entry.readChunk(meta, i);
          } catch (e) {
            if (signal.aborted) throw this._abortErr();
            const why = e instanceof CorruptChunkError ? e.message : `chunk ${i} unreadable: ${e && e.message}`;
            this.warn('CACHE_CORRUPT', `cache of ${sh.url}: ${why}; fetching from byte ${offset} again`);
            try {
              await entry.truncate(meta, i);
            } catch (e2) {
              await this._cacheFailed(entry, e2);
              entry = null;
              meta = null;
            }
            if (sh.offline) throw new LlamaError(ErrorCode.NETWORK_ERROR, `${sh.url} is unreachable and its cached copy is damaged (${why})`, { url: sh.url });
            break;
          }
          for (let p = 0; p < buf.length; p += this.o.chunkBytes) {
            const piece = buf.length <= this.o.chunkBytes ? buf : buf.slice(p, p + this.o.chunkBytes);
            await emit(piece, true);
          }
          offset += buf.length;
        }
      }

      // 2. The rest from the network, written to the cache as it arrives.
      if (offset < sh.size) {
        allFromCache = false;
        if (entry && meta) writer = entry.writer(meta);
        const rechunk = new Rechunker(this.o.chunkBytes, sh.size - offset, (b) => emit(b, false, true));
        const onBytes = async (u8) => {
          this.progress.add(this.index, u8.length, false);
          if (writer) {
            try {
              await writer.push(u8);
            } catch (e) {
              writer = null;
              await this._cacheFailed(entry, e);
              entry = null;
              meta = null;
            }
          }
          await rechunk.push(u8);
        };
        await this._download(offset, onBytes);
        if (writer) {
          try {
            await writer.finish();
          } catch (e) {
            writer = null;
            await this._cacheFailed(entry, e);
            entry = null;
            meta = null;
          }
          writer = null;
        }
      }
      if (sh.size === 0) this.progress.add(this.index, 0, allFromCache);
      this._checkHash(hasher, expectedHex);
      if (hasher && entry && meta && meta.complete) {
        meta.shardSha256 = expectedHex;
        try {
          await entry.writeMeta(meta);
        } catch {}
      }
    } catch (e) {
      if (e instanceof LlamaError && e.code === INTEGRITY_ERROR) {
        writer = null;
        if (entry) await entry.remove();
      }
      throw e;
    } finally {
      if (writer) await writer.abandon();
      if (release) release();
    }
  }

  _abortErr() {
    return abortError(this.o.userSignal?.aborted ? this.o.userSignal : this.signal);
  }

  _checkHash(hasher, expectedHex) {
    if (!hasher) return;
    const got = String(hasher.digest()).toLowerCase();
    if (got !== expectedHex) {
      throw new LlamaError(INTEGRITY_ERROR, `SHA-256 of ${this.shard.url ?? this.shard.name} is ${got}, expected ${expectedHex}`, {
        url: this.shard.url,
        name: this.shard.name,
        expected: expectedHex,
        actual: got,
      });
    }
  }

  async _cacheFailed(entry, e) {
    const what = e && e.name === 'QuotaExceededError' ? 'storage quota exceeded' : `${(e && e.name) || 'Error'}: ${(e && e.message) || e}`;
    this.warn('CACHE_QUOTA', `cannot cache ${this.shard.url} (${what}); continuing without the cache`);
    if (entry) await entry.remove();
  }

  async _readFile(emit) {
    const { file, size } = this.shard;
    const step = this.o.chunkBytes;
    for (let off = 0; off < size; off += step) {
      if (this.signal.aborted) throw this._abortErr();
      let ab;
      try {
        ab = await file.slice(off, Math.min(size, off + step)).arrayBuffer();
      } catch (e) {
        if (this.signal.aborted) throw this._abortErr();
        throw new LlamaError(ErrorCode.IO_ERROR, `cannot read ${this.shard.name} at byte ${off}: ${e && e.message}`);
      }
      if (this.signal.aborted) throw this._abortErr();
      await emit(new Uint8Array(ab), false);
    }
    if (size === 0) this.progress.add(this.index, 0, false);
  }

  /** GET bytes [from, size) of the shard into onBytes, resuming with Range after body errors. */
  async _download(from, onBytes) {
    const sh = this.shard;
    const { url, size } = sh;
    const o = this.o;
    const etag = sh.etag ?? null;
    const ifRange = sh.ifRangeOk ? (isStrongEtag(etag) ? etag : sh.lastModified) : null;
    let received = from;
    let attempt = 0;
    let lastErr = null;
    let lastStatus;
    while (received < size) {
      if (this.signal.aborted) throw this._abortErr();
      const startedAt = received;
      const req = linkedController(this.signal);
      const headers = {};
      if (received > 0) {
        headers.Range = `bytes=${received}-`;
        if (ifRange) headers['If-Range'] = ifRange;
      }
      let res;
      let reader = null;
      const stalled = () => req.abort(new Error(`no data for ${o.stallTimeoutMs / 1000} s`));
      try {
        const timer = setTimeout(stalled, o.stallTimeoutMs);
        try {
          res = await o.fetchImpl(url, { signal: req.signal, headers, cache: 'no-store' });
        } catch (e) {
          if (this.signal.aborted) throw this._abortErr();
          const why = req.signal.aborted && req.signal.reason?.message ? { message: req.signal.reason.message } : e;
          throw Object.assign(fetchFailed(url, why), { retry: true });
        } finally {
          clearTimeout(timer);
        }
        lastStatus = res.status;
        if (!res.ok) {
          const err = httpError('GET', url, res);
          try {
            await res.body?.cancel();
          } catch {}
          if (res.status === 416) throw new LlamaError(ErrorCode.NETWORK_ERROR, `${err.message}: the remote file changed size (expected ${size} bytes)`, { url, status: 416 });
          if (retryableStatus(res.status)) throw Object.assign(err, { retry: true });
          throw err;
        }
        const resEtag = res.headers.get('etag');
        if (etag && resEtag && stripWeak(resEtag) !== stripWeak(etag)) {
          throw new LlamaError(ErrorCode.NETWORK_ERROR, `${url} changed on the server during the download (ETag ${etag} → ${resEtag})`, { url, status: res.status });
        }
        let skip = 0;
        const len = headerInt(res, 'content-length');
        const encoded = !!res.headers.get('content-encoding');
        if (res.status === 206) {
          const cr = parseContentRange(res.headers.get('content-range'));
          if (!cr || cr.start !== received || (cr.total !== null && cr.total !== size)) {
            throw new LlamaError(
              ErrorCode.NETWORK_ERROR,
              `GET ${url} with Range: bytes=${received}- answered Content-Range: ${res.headers.get('content-range')} (expected bytes ${received}-${size - 1}/${size})`,
              { url, status: 206 },
            );
          }
          if (!encoded && len !== null && len !== size - received) {
            throw new LlamaError(ErrorCode.NETWORK_ERROR, `length mismatch: GET ${url} announces ${len} bytes from byte ${received}, expected ${size - received}`, { url, status: 206 });
          }
        } else {
          if (!encoded && len !== null && len !== size) {
            throw new LlamaError(ErrorCode.NETWORK_ERROR, `length mismatch: GET ${url} announces ${len} bytes, expected ${size}`, { url, status: res.status });
          }
          skip = received; // the server sent the whole file: drop what we already have
        }
        if (!res.body) throw new LlamaError(ErrorCode.NETWORK_ERROR, `GET ${url} has no body`, { url, status: res.status });
        reader = res.body.getReader();
        for (;;) {
          let r;
          const timer = setTimeout(stalled, o.stallTimeoutMs);
          try {
            r = await reader.read();
          } catch (e) {
            if (this.signal.aborted) throw this._abortErr();
            const msg = req.signal.aborted && req.signal.reason?.message ? req.signal.reason.message : (e && e.message) || String(e);
            throw Object.assign(new LlamaError(ErrorCode.NETWORK_ERROR, msg, { url, status: res.status }), { retry: true });
          } finally {
            clearTimeout(timer);
          }
          if (r.done) break;
          let v = r.value;
          if (skip > 0) {
            if (v.length <= skip) {
              skip -= v.length;
              continue;
            }
            v = v.subarray(skip);
            skip = 0;
          }
          if (received + v.length > size) {
            throw new LlamaError(
              ErrorCode.NETWORK_ERROR,
              `length mismatch: ${url} sent more than the ${size} bytes it announced`,
              { url, status: res.status },
            );
          }
          received += v.length;
          await onBytes(v);
          if (this.signal.aborted) throw this._abortErr();
        }
        reader = null;
        if (received < size) {
          throw Object.assign(new LlamaError(ErrorCode.NETWORK_ERROR, `the response ended early`, { url, status: res.status }), { retry: true });
        }
      } catch (e) {
        if (this.signal.aborted) throw this._abortErr();
        if (!(e && e.retry)) throw e;
        lastErr = e;
      } finally {
        if (reader) reader.cancel().catch(() => {});
        req.abort();
      }
      if (received >= size) break;
      // An attempt that moved at least 1 MiB resets the budget, which bounds consecutive failures
      // without giving up on a long download over a connection that drops now and then.
      if (received - startedAt >= RETRY_RESET_BYTES) attempt = 0;
      attempt++;
      if (attempt > o.retries) {
        throw new LlamaError(
          ErrorCode.NETWORK_ERROR,
          `download of ${url} failed after ${o.retries} retries at byte ${received} of ${size}: ${lastErr.message}`,
          { url, status: lastStatus },
        );
      }
      await sleep(backoffMs(attempt), this.signal).catch(() => {
        throw this._abortErr();
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} OpenShardsOptions
 * @property {AbortSignal} [signal] abort at any point: the iteration throws abortError(signal) (ABORTED)
 * @property {boolean} [cache=true] read and write the OPFS cache for URL shards
 * @property {number} [retries=5] consecutive failed attempts allowed per shard (backoff 100 ms doubling, cap 2 s)
 * @property {(ev: DownloadEvent|WarningEvent) => void} [onEvent]
 * @property {number} [chunkBytes=4194304] largest chunk yielded
 * @property {number} [readAheadBytes=67108864] bytes buffered ahead of the caller per shard
 * @property {Record<string, string>} [sha256] expected hex SHA-256 per shard, keyed by URL, name or File name
 * @property {() => {update(u8: Uint8Array): void, digest(): string}} [createSha256] incremental hasher
 *   for `sha256` (default: a plain-JS one)
 * @property {typeof fetch} [fetchImpl=fetch]
 * @property {number} [stallTimeoutMs=30000] a request that delivers no byte for this long is retried
 * @property {number} [cacheChunkBytes=33554432] chunk file size for new cache entries (resume granularity)
 */

/**
 * @typedef {{type: 'download', shardIndex: number, loadedBytes: number, totalBytes: number,
 *   bytesPerSecond: number, fromCache: boolean}} DownloadEvent
 * loadedBytes/totalBytes are over all shards; emitted for the first bytes, then at most every 100 ms while
 * bytes flow, and once when the last byte arrived (loadedBytes === totalBytes).
 * @typedef {{type: 'warning', code: string, message: string, shardIndex?: number, url?: string}} WarningEvent
 * codes: CACHE_CORRUPT, CACHE_QUOTA, CACHE_BUSY, CACHE_UNAVAILABLE, OFFLINE.
 */

/**
 * @typedef {object} OpenedShard
 * @property {number} index 0-based
 * @property {number} count number of shards
 * @property {string} name
 * @property {number} size bytes
 * @property {boolean} fromCache the shard is complete in the cache (bytes come from disk unless a chunk is found damaged)
 * @property {AsyncIterable<Uint8Array>} chunks the shard's bytes in order, each chunk ≤ chunkBytes and
 *   owning its whole ArrayBuffer (safe to transfer). Iterate once, before advancing to the next shard.
 */

/**
 * Streams the shards' bytes in order. Shard k+1 starts downloading (up to readAheadBytes) while shard k
 * is still being consumed; nothing holds a whole shard in memory. Advancing to the next shard before
 * finishing this one's `chunks` drops the rest of it; breaking out of the loop stops all downloads.
 *
 * @param {Shard[]|string|URL|Blob|Array} shards from resolveSource/probeShards (probed here when needed),
 *   or a source, which is resolved against the page's location
 * @param {OpenShardsOptions} [opts]
 * @returns {AsyncGenerator<OpenedShard>}
 * @throws {LlamaError} NETWORK_ERROR, ABORTED, BAD_SPLIT, IO_ERROR, INTEGRITY_ERROR
 */
export async function* openShards(shards, opts = {}) {
  if (!Array.isArray(shards) || !shards.every((s) => s && typeof s === 'object' && typeof s.key === 'string')) {
    shards = resolveSource(shards);
  }
  const userSignal = opts.signal;
  const internal = linkedController(userSignal);
  const o = {
    userSignal,
    internalSignal: internal.signal,
    cache: opts.cache !== false,
    retries: opts.retries ?? 5,
    onEvent: opts.onEvent,
    chunkBytes: Math.max(1, Math.floor(opts.chunkBytes ?? 4 * MiB)),
    readAheadBytes: Math.max(1, Math.floor(opts.readAheadBytes ?? 64 * MiB)),
    cacheChunkBytes: Math.max(1, Math.floor(opts.cacheChunkBytes ?? DEFAULT_CACHE_CHUNK_BYTES)),
    sha256: opts.sha256 ?? null,
    createSha256: opts.createSha256 ?? createSha256Js,
    fetchImpl: opts.fetchImpl ?? globalThis.fetch.bind(globalThis),
    stallTimeoutMs: opts.stallTimeoutMs ?? 30000,
  };
  if (userSignal?.aborted) throw abortError(userSignal);
  if (o.cache && !cacheSupported() && shards.some((s) => s.url)) {
    safeEmit(o.onEvent, { type: 'warning', code: 'CACHE_UNAVAILABLE', message: 'OPFS or WebCrypto is unavailable here (not a secure context?); models are not cached' });
  }
  if (shards.some((s) => !Number.isSafeInteger(s.size))) {
    await probeShards(shards, { signal: userSignal, fetchImpl: o.fetchImpl, retries: o.retries, cache: o.cache, onEvent: o.onEvent });
  }
  const total = shards.reduce((a, s) => a + s.size, 0);
  const progress = new Progress(total, o.onEvent);
  const producers = [];
  const count = shards.length;
  const onAbort = () => {
    const err = abortError(userSignal);
    for (const p of producers) p?.queue.fail(err);
  };
  userSignal?.addEventListener('abort', onAbort, { once: true });
  const start = (i) => {
    if (i >= count || producers[i]) return;
    const after = i === 0 ? Promise.resolve() : producers[i - 1].finished;
    producers[i] = new ShardProducer(shards[i], i, count, o, progress, after);
  };
  try {
    for (let i = 0; i < count; i++) {
      start(i);
      start(i + 1);
      const p = producers[i];
      await Promise.race([p.ready, p.finished]);
      if (userSignal?.aborted) throw abortError(userSignal);
      const q = p.queue;
      if (q.error) throw q.error;
      let iterated = false;
      const chunks = {
        [Symbol.asyncIterator]() {
          if (iterated) throw new LlamaError(ErrorCode.INVALID_ARGUMENT, `the chunks of shard ${i} can be iterated only once`);
          iterated = true;
          return {
            next: () => q.next(),
            return: async () => {
              p.cancel(new LlamaError(ErrorCode.ABORTED, `stopped reading shard ${i}`));
              return { value: undefined, done: true };
            },
            [Symbol.asyncIterator]() {
              return this;
            },
          };
        },
      };
      yield { index: i, count, name: shards[i].name, size: shards[i].size, fromCache: p.fromCache, chunks };
      if (userSignal?.aborted) throw abortError(userSignal);
      // The caller moved on; if it did not drain this shard, drop the rest of it.
      if (!q.done || q.items.length > 0) p.cancel(new LlamaError(ErrorCode.ABORTED, `shard ${i} was not read to the end`));
      if (q.error) throw q.error;
    }
  } finally {
    userSignal?.removeEventListener('abort', onAbort);
    const reason = userSignal?.aborted ? abortError(userSignal) : new LlamaError(ErrorCode.ABORTED, 'openShards closed');
    for (const p of producers) if (p && !(p.queue.done && p.queue.items.length === 0)) p.cancel(reason);
    internal.abort(reason);
  }
}

/**
 * True when every shard of a URL source is completely in the cache (no network access).
 * Files and Blobs are never cached: false.
 * @param {string|URL|string[]} source
 * @returns {Promise<boolean>}
 */
export async function hasInCache(source) {
  const shards = resolveSource(source);
  if (!cacheSupported()) return false;
  for (const sh of shards) {
    if (!sh.url || !cacheableUrl(sh.url)) return false;
    const m = await readCachedMeta(sh.url);
    if (!m || !m.complete) return false;
  }
  return true;
}

/**
 * Deletes every shard of a URL source from the cache, complete or partial.
 * @param {string|URL|string[]} source
 * @returns {Promise<boolean>} true when at least one entry was removed
 */
export async function deleteFromCache(source) {
  const shards = resolveSource(source);
  let any = false;
  for (const sh of shards) if (sh.url && (await deleteCached(sh.url))) any = true;
  return any;
}
