// @ts-check
// Model sources → ordered streams of shard bytes. The shards of a source (./sources.js) are
// probed first, so a missing one fails before any download; then each is produced (from the OPFS
// cache, the network or a File: ./shard-producer.js) while the caller consumes the one before it,
// through a bounded read-ahead queue. Nothing holds a whole shard in memory.

import { ErrorCode, LlamaError, abortError } from './errors.js';
import { DEFAULT_CACHE_CHUNK_BYTES, cacheSupported, cacheUsage, createSha256, deleteCached, readCachedMeta } from './cache.js';
import { probe } from './http.js';
import { DownloadProgress, emitSafely } from './progress.js';
import { RETRY_POLICY } from './retry.js';
import { ShardProducer, cacheableUrl, linkedController } from './shard-producer.js';
import { resolveSource } from './sources.js';

export { cacheUsage, resolveSource };

/** @typedef {import('./sources.js').Shard} Shard */
/** @typedef {import('./progress.js').StreamEventHandler} StreamEventHandler */

const MiB = 1024 * 1024;
const PROBE_CONCURRENCY = 4;

/**
 * @typedef {object} OpenShardsOptions
 * @property {AbortSignal | undefined} [signal] abort at any point: the iteration throws abortError(signal) (ABORTED)
 * @property {boolean} [cache=true] read and write the OPFS cache for URL shards
 * @property {number | undefined} [retries=5] consecutive failed attempts allowed per shard (see ./retry.js)
 * @property {StreamEventHandler} [onEvent]
 * @property {number} [chunkBytes=4194304] largest chunk yielded
 * @property {number} [readAheadBytes=67108864] bytes buffered ahead of the caller per shard
 * @property {Record<string, string> | undefined} [sha256] expected hex SHA-256 per shard, keyed by URL, name or File name
 * @property {() => {update(u8: Uint8Array): void, digest(): string}} [createSha256] incremental hasher
 *   for `sha256` (default: a plain-JS one)
 * @property {typeof fetch} [fetchImpl=fetch]
 * @property {number} [stallTimeoutMs=30000] a request that delivers no byte for this long is retried
 * @property {number} [cacheChunkBytes=33554432] chunk file size for new cache entries (resume granularity)
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
 * A probed shard cannot be fetched but is complete in the cache: take its record from there.
 * @param {Shard & {url: string}} shard
 * @param {Promise<any>} record the shard's cache record (readCachedMeta)
 * @param {LlamaError} err
 * @param {StreamEventHandler | undefined} onEvent
 */
async function cachedStandIn(shard, record, err, onEvent) {
  const m = await record;
  if (!m || !m.complete) return false;
  Object.assign(shard, { size: m.size, etag: m.etag, lastModified: m.lastModified, offline: true });
  emitSafely(onEvent, {
    type: 'warning',
    code: 'OFFLINE',
    message: `could not reach ${shard.url} (${err.message}); using the cached copy`,
    url: shard.url,
  });
  return true;
}

/**
 * Finds each shard's size (and ETag, Last-Modified) before any big download: HEAD, or a one-byte
 * `Range: bytes=0-0` GET where HEAD is refused. Files give their own size. A shard that cannot be
 * reached but is complete in the cache is taken from the cache's record (`offline: true`, with an
 * `OFFLINE` warning event).
 *
 * @param {Shard[]} shards from resolveSource; mutated and returned
 * @param {{signal?: AbortSignal | undefined, fetchImpl?: typeof fetch | undefined, retries?: number | undefined,
 *   cache?: boolean | undefined, onEvent?: StreamEventHandler | undefined}} [opts]
 * @returns {Promise<Shard[]>}
 * @throws {LlamaError} NETWORK_ERROR naming the URL and HTTP status (e.g. a 404 shard), ABORTED
 */
export async function probeShards(shards, { signal, fetchImpl, retries = RETRY_POLICY.retries, cache = true, onEvent } = {}) {
  const f = fetchImpl ?? globalThis.fetch.bind(globalThis);
  if (signal?.aborted) throw abortError(signal);
  let next = 0;
  /** @type {unknown} */
  let failed = null;
  const worker = async () => {
    while (next < shards.length && !failed) {
      const sh = shards[next++];
      if (sh.file) {
        sh.size = sh.file.size;
        sh.etag = null;
        const modified = /** @type {File} */ (sh.file).lastModified;
        sh.lastModified = modified != null ? String(modified) : null;
        continue;
      }
      const urlShard = /** @type {Shard & {url: string}} */ (sh);
      const useCache = cache !== false && cacheSupported() && cacheableUrl(sh.url);
      /** @type {Promise<any> | undefined} read once, on the first failure */
      let record;
      /** @param {LlamaError} err */
      const standIn = async (err) => useCache && (await cachedStandIn(urlShard, (record ??= readCachedMeta(urlShard.url)), err, onEvent));
      try {
        await probe(urlShard, { signal, fetchImpl: f, retries, standIn });
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, shards.length) }, worker));
  if (failed) throw failed;
  return shards;
}

/**
 * Streams the shards' bytes in order. Shard k+1 starts downloading (up to readAheadBytes) while shard k
 * is still being consumed; nothing holds a whole shard in memory. Advancing to the next shard before
 * finishing this one's `chunks` drops the rest of it; breaking out of the loop stops all downloads.
 *
 * @param {Shard[] | import('./sources.js').ModelSource} shards from resolveSource/probeShards (probed
 *   here when needed), or a source, which is resolved against the page's location
 * @param {OpenShardsOptions} [opts]
 * @returns {AsyncGenerator<OpenedShard>}
 * @throws {LlamaError} NETWORK_ERROR, ABORTED, BAD_SPLIT, IO_ERROR, INTEGRITY_ERROR
 */
export async function* openShards(shards, opts = {}) {
  const list = Array.isArray(shards) && shards.every((s) => s && typeof s === 'object' && typeof s.key === 'string')
    ? /** @type {Shard[]} */ (shards)
    : resolveSource(/** @type {import('./sources.js').ModelSource} */ (shards));
  const userSignal = opts.signal;
  const internal = linkedController(userSignal);
  /** @type {import('./shard-producer.js').ProducerOptions} */
  const o = {
    userSignal,
    internalSignal: internal.signal,
    cache: opts.cache !== false,
    retries: opts.retries ?? RETRY_POLICY.retries,
    onEvent: opts.onEvent,
    chunkBytes: Math.max(1, Math.floor(opts.chunkBytes ?? 4 * MiB)),
    readAheadBytes: Math.max(1, Math.floor(opts.readAheadBytes ?? 64 * MiB)),
    cacheChunkBytes: Math.max(1, Math.floor(opts.cacheChunkBytes ?? DEFAULT_CACHE_CHUNK_BYTES)),
    sha256: opts.sha256 ?? null,
    createSha256: opts.createSha256 ?? createSha256,
    fetchImpl: opts.fetchImpl ?? globalThis.fetch.bind(globalThis),
    stallTimeoutMs: opts.stallTimeoutMs ?? 30000,
  };
  if (userSignal?.aborted) throw abortError(userSignal);
  if (o.cache && !cacheSupported() && list.some((s) => s.url)) {
    emitSafely(o.onEvent, { type: 'warning', code: 'CACHE_UNAVAILABLE', message: 'OPFS or WebCrypto is unavailable here (not a secure context?); models are not cached' });
  }
  if (list.some((s) => !Number.isSafeInteger(s.size))) {
    await probeShards(list, { signal: userSignal, fetchImpl: o.fetchImpl, retries: o.retries, cache: o.cache, onEvent: o.onEvent });
  }
  const sized = /** @type {Array<Shard & {size: number}>} */ (list);
  const total = sized.reduce((a, s) => a + s.size, 0);
  const progress = new DownloadProgress(total, o.onEvent);
  /** @type {ShardProducer[]} */
  const producers = [];
  const count = sized.length;
  const onAbort = () => {
    const err = abortError(userSignal);
    for (const p of producers) p?.queue.fail(err);
  };
  userSignal?.addEventListener('abort', onAbort, { once: true });
  /** @param {number} i */
  const start = (i) => {
    if (i >= count || producers[i]) return;
    const after = i === 0 ? Promise.resolve() : producers[i - 1].finished;
    producers[i] = new ShardProducer(sized[i], i, o, progress, after);
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
      /** @type {AsyncIterable<Uint8Array>} */
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
      yield { index: i, count, name: sized[i].name, size: sized[i].size, fromCache: p.fromCache, chunks };
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
 * @param {import('./sources.js').ModelSource | URL} source
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
 * @param {import('./sources.js').ModelSource | URL} source
 * @returns {Promise<boolean>} true when at least one entry was removed
 */
export async function deleteFromCache(source) {
  const shards = resolveSource(source);
  let any = false;
  for (const sh of shards) if (sh.url && (await deleteCached(sh.url))) any = true;
  return any;
}
