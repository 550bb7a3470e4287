// In-page helpers for tests/web/fetch.test.mjs. Work on the main thread and in a worker
// (fetch-worker.js). Everything returned is structured-cloneable.
import * as F from '/www/package/src/fetch.js';
import * as C from '/www/package/src/cache.js';

export { F, C };

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
const now = () => performance.timeOrigin + performance.now();
const plainError = (e) => ({ name: e && e.name, code: e && e.code, message: e && e.message, details: e && e.details });

/**
 * Loads a source with openShards, collecting bytes, events and timings.
 * opts: everything openShards takes (except onEvent/signal), plus
 *   hash (default true): SHA-256 of all bytes (WebCrypto, over one buffer)
 *   abortAtBytes: abort the signal once this many bytes were consumed
 *   breakAtBytes: break out of the loops once this many bytes were consumed
 *   consumeDelayMs: sleep after each chunk (a slow consumer), in the shards listed in delayShards (default all)
 *   files: use the page's <input id=files> FileList as the source
 */
export async function loadAll(source, opts = {}) {
  const { hash = true, abortAtBytes, breakAtBytes, consumeDelayMs = 0, delayShards = null, files = false, ...rest } = opts;
  if (files) source = document.getElementById('files').files;
  const ctl = new AbortController();
  const events = [];
  const out = { events, warnings: [], shards: [], bytes: 0, error: null };
  const t0 = now();
  let all = null;
  let abortedAt = null;
  try {
    const gen = F.openShards(F.resolveSource(source), {
      ...rest,
      signal: ctl.signal,
      onEvent: (ev) => {
        events.push({ ...ev, t: now() });
        if (ev.type === 'warning') out.warnings.push(ev);
      },
    });
    shards: for await (const shard of gen) {
      const info = { index: shard.index, count: shard.count, name: shard.name, size: shard.size, fromCache: shard.fromCache, chunks: 0, maxChunk: 0, minChunk: Infinity, bytes: 0, start: now(), ownBuffers: true };
      out.shards.push(info);
      if (!all && hash) {
        // shards arrive in order; allocate once we know the total from the first event or sizes
        all = { parts: [] };
      }
      for await (const c of shard.chunks) {
        info.chunks++;
        info.bytes += c.length;
        info.maxChunk = Math.max(info.maxChunk, c.length);
        if (c.length) info.minChunk = Math.min(info.minChunk, c.length);
        if (c.byteOffset !== 0 || c.byteLength !== c.buffer.byteLength) info.ownBuffers = false;
        if (hash) all.parts.push(c);
        out.bytes += c.length;
        if (breakAtBytes != null && out.bytes >= breakAtBytes) {
          out.broke = true;
          break shards;
        }
        if (abortAtBytes != null && out.bytes >= abortAtBytes && !abortedAt) {
          abortedAt = now();
          ctl.abort();
        }
        if (consumeDelayMs && (!delayShards || delayShards.includes(shard.index))) await new Promise((r) => setTimeout(r, consumeDelayMs));
      }
      info.end = now();
    }
  } catch (e) {
    out.error = plainError(e);
    out.errorAt = now();
  }
  out.abortedAt = abortedAt;
  out.ms = now() - t0;
  if (hash && all && !out.error) {
    const buf = new Uint8Array(out.bytes);
    let o = 0;
    for (const p of all.parts) {
      buf.set(p, o);
      o += p.length;
    }
    all = null;
    out.sha256 = hex(await crypto.subtle.digest('SHA-256', buf));
  }
  return out;
}

/** The cache record of a URL (absolute or relative to the page). */
export async function cacheMeta(url) {
  const abs = new URL(url, location.href).href;
  const e = await C.CacheEntry.open(abs);
  return e ? e.readMeta() : null;
}

/** Damages chunk `i` of a cached URL: 'flip' one byte at `at`, 'truncate' to `at` bytes, or 'delete'. */
export async function damageChunk(url, i, how, at = 12345) {
  const abs = new URL(url, location.href).href;
  const e = await C.CacheEntry.open(abs);
  const name = 'c' + String(i).padStart(5, '0');
  if (how === 'delete') return e.dir.removeEntry(name);
  const fh = await e.dir.getFileHandle(name);
  const w = await fh.createWritable({ keepExistingData: true });
  if (how === 'flip') {
    const f = await fh.getFile();
    const b = new Uint8Array(await f.slice(at, at + 1).arrayBuffer());
    await w.write({ type: 'write', position: at, data: new Uint8Array([b[0] ^ 0xff]) });
  } else if (how === 'truncate') {
    await w.truncate(at);
  }
  await w.close();
}

export async function info() {
  return { usage: await C.cacheUsage(), list: await C.listCache() };
}

export const call = { loadAll, cacheMeta, damageChunk, info, hasInCache: (s) => F.hasInCache(s), deleteFromCache: (s) => F.deleteFromCache(s) };

export const hasInCache = (s) => F.hasInCache(s);
export const deleteFromCache = (s) => F.deleteFromCache(s);
