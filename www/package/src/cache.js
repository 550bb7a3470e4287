// @ts-check
// Persistent model cache in the Origin Private File System (OPFS).
//
// Why OPFS rather than the Cache API: a Cache API entry is one whole Response, so a download that
// stops at 3 GB of 4 is lost, and reading it back means one giant body. Here every shard is a
// directory of fixed-size chunk files written as they arrive, so a partial download persists across
// page reloads and resumes with an HTTP Range request from the last complete chunk, and reads stream
// chunk by chunk. Works on the main thread and in workers (FileSystemFileHandle.createWritable).
//
// Layout: <OPFS root>/llama-webgpu-cache-v1/<sha256(url)>/
//   meta.json  {version, url, size, etag, lastModified, chunkBytes, chunks: [{bytes, sha256}], complete, shardSha256?}
//   c00000, c00001, …  chunk i holds bytes [i·chunkBytes, min(size, (i+1)·chunkBytes)) of the shard.
// A chunk file is written in one createWritable() session (which commits atomically on close) and
// only then listed in meta.json, so meta.json never names a chunk that is not fully on disk. Every
// chunk is checked against its size and SHA-256 (WebCrypto, computed at write time) before any of
// its bytes are handed out.

const ROOT_NAME = 'llama-webgpu-cache-v1';
const META = 'meta.json';

/** Default size of one chunk file (bytes): the resume granularity, and the unit read and verified at once. */
export const DEFAULT_CACHE_CHUNK_BYTES = 32 * 1024 * 1024;

/** Thrown by {@link CacheEntry#readChunk} when a chunk is missing, truncated or fails its hash. */
export class CorruptChunkError extends Error {
  constructor(index, reason) {
    super(`cached chunk ${index} ${reason}`);
    this.name = 'CorruptChunkError';
    this.index = index;
    this.reason = reason;
  }
}

const hex = (buf) => {
  const b = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16);
  return s;
};

/** SHA-256 of bytes (WebCrypto) as lowercase hex. */
export async function sha256Hex(bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

const chunkName = (i) => 'c' + String(i).padStart(5, '0');

/** True when this context can use the cache (secure context with OPFS and WebCrypto). */
export function cacheSupported() {
  const storage = /** @type {Partial<StorageManager> | undefined} */ (globalThis.navigator?.storage);
  return !!(storage?.getDirectory && globalThis.crypto?.subtle);
}

let rootPromise = null;
/** The cache's root directory handle, or null when OPFS is unavailable. */
async function cacheRoot() {
  if (!cacheSupported()) return null;
  if (!rootPromise) {
    rootPromise = (async () => {
      const top = await navigator.storage.getDirectory();
      return top.getDirectoryHandle(ROOT_NAME, { create: true });
    })();
    rootPromise.catch(() => {
      rootPromise = null;
    });
  }
  try {
    return await rootPromise;
  } catch {
    return null;
  }
}

/** Name of the cache directory for a URL: hex SHA-256 of the absolute URL. */
export async function cacheKey(url) {
  return sha256Hex(new TextEncoder().encode(url));
}

async function writeFile(dir, name, data) {
  const fh = await dir.getFileHandle(name, { create: true });
  const w = await fh.createWritable();
  try {
    await w.write(data);
    await w.close();
  } catch (e) {
    try {
      await w.abort();
    } catch {}
    throw e;
  }
}

function validMeta(m) {
  if (!m || typeof m !== 'object' || m.version !== 1) return false;
  if (!Number.isSafeInteger(m.size) || m.size < 0 || !Number.isSafeInteger(m.chunkBytes) || m.chunkBytes <= 0) return false;
  if (!Array.isArray(m.chunks)) return false;
  const n = Math.ceil(m.size / m.chunkBytes);
  if (m.chunks.length > n) return false;
  for (let i = 0; i < m.chunks.length; i++) {
    const c = m.chunks[i];
    const want = Math.min(m.chunkBytes, m.size - i * m.chunkBytes);
    if (!c || c.bytes !== want || typeof c.sha256 !== 'string') return false;
  }
  if (m.complete && m.chunks.length !== n) return false;
  return true;
}

/**
 * One shard's cache directory. Obtain with {@link CacheEntry.open}.
 */
export class CacheEntry {
  constructor(root, dir, name, url) {
    this.root = root;
    this.dir = dir;
    this.name = name;
    this.url = url;
  }

  /**
   * Opens (or with `create`, creates) the entry for `url`.
   * @returns {Promise<CacheEntry|null>} null when OPFS is unavailable or the entry does not exist.
   */
  static async open(url, { create = false } = {}) {
    const root = await cacheRoot();
    if (!root) return null;
    const name = await cacheKey(url);
    let dir;
    try {
      dir = await root.getDirectoryHandle(name, { create });
    } catch (e) {
      if (!create && e && (e.name === 'NotFoundError' || e.name === 'TypeMismatchError')) return null;
      throw e;
    }
    return new CacheEntry(root, dir, name, url);
  }

  /** meta.json, or null when absent or unreadable (treated as an empty entry). */
  async readMeta() {
    try {
      const fh = await this.dir.getFileHandle(META);
      const m = JSON.parse(await (await fh.getFile()).text());
      return validMeta(m) && m.url === this.url ? m : null;
    } catch {
      return null;
    }
  }

  /**
   * A fresh meta object for a shard.
   * @param {string} url
   * @param {{size: number, etag?: string | null, lastModified?: string | null}} shard
   * @param {number} [chunkBytes]
   */
  static newMeta(url, { size, etag = null, lastModified = null }, chunkBytes = DEFAULT_CACHE_CHUNK_BYTES) {
    return { version: 1, url, size, etag, lastModified, chunkBytes, chunks: [], complete: size === 0 };
  }

  async writeMeta(meta) {
    await writeFile(this.dir, META, JSON.stringify(meta));
  }

  /**
   * Reads chunk `i` and checks its size and SHA-256 before returning any of it.
   * @returns {Promise<Uint8Array>} the whole chunk
   * @throws {CorruptChunkError}
   */
  async readChunk(meta, i) {
    const want = meta.chunks[i];
    let file;
    try {
      file = await (await this.dir.getFileHandle(chunkName(i))).getFile();
    } catch (e) {
      throw new CorruptChunkError(i, `is missing (${e && e.name})`);
    }
    if (file.size !== want.bytes) throw new CorruptChunkError(i, `has ${file.size} bytes, expected ${want.bytes}`);
    let buf;
    try {
      buf = new Uint8Array(await file.arrayBuffer());
    } catch (e) {
      throw new CorruptChunkError(i, `is unreadable (${e && e.name}: ${e && e.message})`);
    }
    if (buf.length !== want.bytes) throw new CorruptChunkError(i, `has ${buf.length} bytes, expected ${want.bytes}`);
    const sha = await sha256Hex(buf);
    if (sha !== want.sha256) throw new CorruptChunkError(i, `fails its SHA-256 check`);
    return buf;
  }

  /** Forgets chunks `n` and later (meta first, then best-effort file removal). */
  async truncate(meta, n) {
    const old = meta.chunks.length;
    meta.chunks.length = Math.min(n, old);
    meta.complete = false;
    delete meta.shardSha256;
    await this.writeMeta(meta);
    for (let i = n; i < old; i++) {
      try {
        await this.dir.removeEntry(chunkName(i));
      } catch {}
    }
  }

  /** Deletes the whole entry. Never throws. */
  async remove() {
    try {
      await this.root.removeEntry(this.name, { recursive: true });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * A writer that appends the shard's bytes from `meta.chunks.length · meta.chunkBytes` on.
   * @param {object} meta the entry's meta (mutated as chunks are committed)
   */
  writer(meta) {
    return new ChunkWriter(this, meta);
  }
}

/**
 * Collects bytes into chunk-sized buffers; each full buffer is written to its chunk file, hashed,
 * and recorded in meta.json, while the next one fills (at most one write in flight).
 */
export class ChunkWriter {
  constructor(entry, meta) {
    this.entry = entry;
    this.meta = meta;
    this.index = meta.chunks.length;
    this.offset = this.index * meta.chunkBytes;
    /** @type {Uint8Array | null} */
    this.buf = null;
    this.fill = 0;
    /** @type {Promise<void>} */
    this.pending = Promise.resolve();
    /** @type {unknown} */
    this.error = null;
  }

  _newBuffer() {
    const n = Math.min(this.meta.chunkBytes, this.meta.size - this.offset);
    this.buf = new Uint8Array(n);
    this.fill = 0;
    return this.buf;
  }

  /** Appends bytes; resolves when they are buffered. Rejects with the first write error. */
  async push(u8) {
    if (this.error) throw this.error;
    let pos = 0;
    while (pos < u8.length) {
      const buf = this.buf ?? this._newBuffer();
      const n = Math.min(u8.length - pos, buf.length - this.fill);
      if (n <= 0) throw new Error('cache writer: more bytes than the shard size');
      buf.set(pos === 0 && n === u8.length ? u8 : u8.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
      if (this.fill === buf.length) await this._commitBuffer();
    }
  }

  async _commitBuffer() {
    const buf = /** @type {Uint8Array} */ (this.buf);
    const index = this.index;
    this.buf = null;
    this.index++;
    this.offset += buf.length;
    const last = this.offset >= this.meta.size;
    await this.pending;
    if (this.error) throw this.error;
    this.pending = this._write(buf, index, last).catch((e) => {
      this.error ??= e;
    });
  }

  async _write(buf, index, last) {
    const hash = sha256Hex(buf);
    hash.catch(() => {});
    await writeFile(this.entry.dir, chunkName(index), buf);
    const sha256 = await hash;
    if (this.meta.chunks.length !== index) throw new Error(`cache writer: chunk ${index} out of order`);
    this.meta.chunks.push({ bytes: buf.length, sha256 });
    if (last) this.meta.complete = true;
    await this.entry.writeMeta(this.meta);
  }

  /** Waits for the last write; rejects with the first write error. Call after the shard's last byte. */
  async finish() {
    if (this.buf && this.fill > 0) throw new Error('cache writer: finished with a partial chunk');
    await this.pending;
    if (this.error) throw this.error;
    return this.meta.complete;
  }

  /** Drops the partial chunk, waits for an in-flight write so committed chunks stay recorded. Never throws. */
  async abandon() {
    this.buf = null;
    await this.pending;
  }
}

/**
 * Runs `fn` only if this context gets the cache lock for `key` (Web Locks, shared by all tabs and workers
 * of the origin); resolves to a release function, or null when another context holds it.
 */
export async function tryLock(key) {
  const locks = globalThis.navigator?.locks;
  if (!locks?.request) return () => {};
  return new Promise((resolve) => {
    locks
      .request(`llama-webgpu-cache:${key}`, { ifAvailable: true }, (lock) => {
        if (!lock) {
          resolve(null);
          return undefined;
        }
        return new Promise((release) => resolve(release));
      })
      .catch(() => resolve(() => {}));
  });
}

/** meta.json for a URL, or null. */
export async function readCachedMeta(url) {
  try {
    const e = await CacheEntry.open(url);
    return e ? await e.readMeta() : null;
  } catch {
    return null;
  }
}

/** Deletes the entry for a URL; true when one was removed. */
export async function deleteCached(url) {
  try {
    const e = await CacheEntry.open(url);
    return e ? await e.remove() : false;
  } catch {
    return false;
  }
}

/**
 * Lists the cache: one record per shard entry.
 * @returns {Promise<Array<{url: string|null, size: number, bytes: number, complete: boolean}>>}
 */
export async function listCache() {
  const root = await cacheRoot();
  if (!root) return [];
  const out = [];
  for await (const [name, handle] of root.entries()) {
    if (handle.kind !== 'directory') continue;
    const e = new CacheEntry(root, handle, name, null);
    let meta = null;
    try {
      meta = JSON.parse(await (await (await handle.getFileHandle(META)).getFile()).text());
    } catch {}
    if (meta && validMeta(meta)) {
      out.push({ url: meta.url, size: meta.size, bytes: meta.chunks.reduce((a, c) => a + c.bytes, 0), complete: !!meta.complete });
    } else {
      out.push({ url: null, size: 0, bytes: 0, complete: false, key: e.name });
    }
  }
  return out;
}

/**
 * Bytes held by the model cache (committed chunks) and the number of shard entries.
 * @returns {Promise<{bytes: number, entries: number}>}
 */
export async function cacheUsage() {
  const list = await listCache();
  return { bytes: list.reduce((a, e) => a + e.bytes, 0), entries: list.length };
}

/** Deletes the whole model cache. */
export async function clearCache() {
  if (!cacheSupported()) return;
  try {
    const top = await navigator.storage.getDirectory();
    await top.removeEntry(ROOT_NAME, { recursive: true });
  } catch {}
  rootPromise = null;
}

// ---------------------------------------------------------------------------------------------
// Incremental SHA-256 in plain JS: the fallback for whole-shard verification (`opts.sha256`) when
// the caller injects no faster implementation. WebCrypto has no incremental digest.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/**
 * A plain-JS incremental SHA-256 (about 150–300 MB/s in V8).
 * @returns {{update(u8: Uint8Array): void, digest(): string}}
 */
export function createSha256() {
  const H = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const W = new Int32Array(64);
  const block = new Uint8Array(64);
  let blockFill = 0;
  let length = 0;

  function compress(p, o) {
    for (let t = 0; t < 16; t++, o += 4) W[t] = (p[o] << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3];
    for (let t = 16; t < 64; t++) {
      const a = W[t - 15];
      const b = W[t - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
    }
    let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t] + W[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
  }

  return {
    update(u8) {
      let i = 0;
      length += u8.length;
      if (blockFill > 0) {
        const n = Math.min(64 - blockFill, u8.length);
        block.set(u8.subarray(0, n), blockFill);
        blockFill += n;
        i = n;
        if (blockFill < 64) return;
        compress(block, 0);
        blockFill = 0;
      }
      for (; i + 64 <= u8.length; i += 64) compress(u8, i);
      if (i < u8.length) {
        block.set(u8.subarray(i), 0);
        blockFill = u8.length - i;
      }
    },
    digest() {
      const bits = length * 8;
      const tail = new Uint8Array(blockFill < 56 ? 64 : 128);
      tail.set(block.subarray(0, blockFill));
      tail[blockFill] = 0x80;
      const dv = new DataView(tail.buffer);
      dv.setUint32(tail.length - 8, Math.floor(bits / 2 ** 32));
      dv.setUint32(tail.length - 4, bits >>> 0);
      for (let o = 0; o < tail.length; o += 64) compress(tail, o);
      let s = '';
      for (let k = 0; k < 8; k++) s += (H[k] >>> 0).toString(16).padStart(8, '0');
      return s;
    },
  };
}
