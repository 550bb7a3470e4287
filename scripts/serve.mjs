#!/usr/bin/env node
// Static HTTP server for the demo and the browser tests.
//
// - GET and HEAD; one byte range per request (`bytes=a-b`, `a-`, `-n`) → 206 + Content-Range, 416 when
//   unsatisfiable; `Accept-Ranges: bytes`, a strong ETag from size + mtime, Last-Modified, If-Range,
//   If-None-Match → 304. Files are streamed, never read whole into memory.
// - Cross-origin isolation headers (COOP/COEP/CORP) on every response, `Cache-Control: no-cache`.
// - Fault injection for tests, from Node (`setFaults`) or from a page (POST /__faults, GET /__log).
//
// CLI: node scripts/serve.mjs --root DIR [--port 8080] [--host 127.0.0.1] [--mount /models/=DIR]...

import http from 'node:http';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.jinja': 'text/plain; charset=utf-8',
  '.gguf': 'application/octet-stream',
  '.bin': 'application/octet-stream',
};

const READ_BYTES = 256 * 1024;

/**
 * Parses one `Range` header against a file of `size` bytes.
 * @returns {null | 'unsatisfiable' | {start: number, end: number}} null when the header is absent,
 *   malformed or asks for several ranges (then the whole file is served, as RFC 9110 allows).
 */
export function parseRange(header, size) {
  if (!header) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start, end;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null; // invalid: ignore the header
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}

function matchPath(rulePath, p) {
  if (typeof rulePath !== 'string') return false;
  if (rulePath.endsWith('*')) return p.startsWith(rulePath.slice(0, -1));
  return rulePath === p;
}

function methodOk(rule, method) {
  return !rule.method || String(rule.method).toUpperCase() === method;
}

/** Takes the first rule matching path + method, consuming one of its `times` (negative = forever). */
function takeRule(list, p, method) {
  if (!Array.isArray(list)) return null;
  for (const rule of list) {
    if (!matchPath(rule.path, p) || !methodOk(rule, method)) continue;
    const times = rule.times ?? 1;
    if (times === 0) continue;
    if (times > 0) rule.times = times - 1;
    return rule;
  }
  return null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts the server.
 *
 * Faults (`setFaults` or POST /__faults with the same JSON; each replaces the previous set):
 * - `cut: [{path, afterBytes, times = 1, reset = false}]`: close the connection after `afterBytes` body
 *   bytes (`reset`: destroy the socket at once, which may lose bytes still in flight).
 * - `status: [{path, code, times = 1, method?}]`: answer with HTTP `code` instead.
 * - `stall: [{path, afterBytes, times = 1}]`: stop sending after `afterBytes` body bytes, keeping the
 *   connection open until the client gives up.
 * - `lengthMismatch: [{path, extraBytes | missingBytes, times = 1}]`: send the body without
 *   Content-Length (chunked) and with that many bytes more (zeros) or fewer than announced by HEAD.
 * - `ignoreRange: [{path, times = 1}]`: answer a GET with Range as if it had none (200, whole file).
 * - `delayMs`: wait before answering each request.
 * - `bytesPerSecond`: throttle every response body to about this rate.
 * `path` is the URL path (e.g. `/models/x.gguf`); a trailing `*` makes it a prefix. `times` < 0 means
 * forever. Control endpoints: POST /__faults, POST /__faults/clear, GET /__log, POST /__log/clear.
 *
 * @param {{root: string, port?: number, host?: string, mounts?: Record<string, string>}} options
 *   `mounts` maps URL prefixes (`/models/`) to directories served in place of `root` below them.
 * @returns {Promise<{url: string, port: number, close: () => Promise<void>, setFaults: (f: object) => void,
 *   clearFaults: () => void, log: () => object[], clearLog: () => void}>}
 */
export async function startServer({ root, port = 0, host = '127.0.0.1', mounts = {} } = {}) {
  if (!root) throw new Error('startServer: root is required');
  const rootDir = path.resolve(root);
  const mountList = Object.entries(mounts)
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : prefix + '/', path.resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length);
  let faults = {};
  let requestLog = [];
  const sockets = new Set();

  /** URL path → absolute file path inside root or a mount, or null (traversal, bad encoding). */
  function resolveFile(urlPath) {
    let decoded;
    try {
      decoded = decodeURIComponent(urlPath);
    } catch {
      return null;
    }
    if (decoded.includes('\0')) return null;
    let base = rootDir;
    let rest = decoded;
    for (const [prefix, dir] of mountList) {
      if (decoded.startsWith(prefix) || decoded + '/' === prefix) {
        base = dir;
        rest = decoded.slice(prefix.length - 1);
        break;
      }
    }
    const segments = rest.split(/[\\/]+/);
    if (segments.some((s) => s === '..')) return null;
    const full = path.resolve(base, '.' + path.posix.normalize('/' + segments.join('/')));
    if (full !== base && !full.startsWith(base + path.sep)) return null;
    return full;
  }

  function baseHeaders(extra = {}) {
    return {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      ...extra,
    };
  }

  function sendSimple(req, res, entry, code, body = '', type = 'text/plain; charset=utf-8', extra = {}) {
    const buf = Buffer.from(body);
    res.writeHead(code, baseHeaders({ 'Content-Type': type, 'Content-Length': buf.length, 'Cache-Control': 'no-store', ...extra }));
    entry.status = code;
    if (req.method === 'HEAD') res.end();
    else {
      res.end(buf);
      entry.bytes = buf.length;
    }
  }

  async function readJson(req) {
    const parts = [];
    for await (const c of req) parts.push(c);
    const text = Buffer.concat(parts).toString('utf8');
    return text ? JSON.parse(text) : {};
  }

  async function handle(req, res) {
    const url = new URL(req.url, 'http://x');
    const p = url.pathname;
    const method = req.method;

    // Control endpoints (not logged).
    if (p === '/__faults' || p === '/__faults/clear' || p === '/__log' || p === '/__log/clear') {
      const entry = {};
      try {
        if (p === '/__log' && method === 'GET') return sendSimple(req, res, entry, 200, JSON.stringify(requestLog), 'application/json');
        if (p === '/__log/clear' && method === 'POST') {
          requestLog = [];
          return sendSimple(req, res, entry, 204);
        }
        if (p === '/__faults/clear' && method === 'POST') {
          faults = {};
          return sendSimple(req, res, entry, 204);
        }
        if (p === '/__faults' && method === 'POST') {
          faults = await readJson(req);
          return sendSimple(req, res, entry, 204);
        }
        if (p === '/__faults' && method === 'GET') return sendSimple(req, res, entry, 200, JSON.stringify(faults), 'application/json');
        return sendSimple(req, res, entry, 405, 'method not allowed');
      } catch (e) {
        return sendSimple(req, res, entry, 400, String(e && e.message));
      }
    }

    const entry = {
      method,
      path: p,
      range: req.headers.range ?? null,
      ifRange: req.headers['if-range'] ?? null,
      status: 0,
      bytes: 0,
      start: Date.now(),
      complete: false,
    };
    requestLog.push(entry);
    res.on('close', () => {
      entry.ms = Date.now() - entry.start;
      entry.complete = res.writableFinished;
    });

    if (faults.delayMs > 0) await sleep(faults.delayMs);

    if (method !== 'GET' && method !== 'HEAD') return sendSimple(req, res, entry, 405, 'method not allowed', undefined, { Allow: 'GET, HEAD' });

    const statusRule = takeRule(faults.status, p, method);
    if (statusRule) return sendSimple(req, res, entry, statusRule.code, `injected ${statusRule.code}`);

    let file = resolveFile(p);
    if (!file) return sendSimple(req, res, entry, 403, 'forbidden');
    let st;
    try {
      st = await fsp.stat(file);
      if (st.isDirectory()) {
        if (!p.endsWith('/')) return sendSimple(req, res, entry, 301, '', undefined, { Location: p + '/' + url.search });
        file = path.join(file, 'index.html');
        st = await fsp.stat(file);
      }
      if (!st.isFile()) throw new Error('not a file');
    } catch {
      return sendSimple(req, res, entry, 404, 'not found');
    }

    const size = st.size;
    const etag = `"${size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const lastModified = new Date(Math.floor(st.mtimeMs / 1000) * 1000).toUTCString();
    const headers = baseHeaders({
      'Content-Type': MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      ETag: etag,
      'Last-Modified': lastModified,
      'Cache-Control': 'no-cache',
    });

    const inm = req.headers['if-none-match'];
    if (inm && !req.headers.range && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag || t.trim() === '*')) {
      res.writeHead(304, headers);
      entry.status = 304;
      return res.end();
    }

    let range = parseRange(req.headers.range, size);
    if (range && method === 'GET' && takeRule(faults.ignoreRange, p, method)) range = null;
    const ifRange = req.headers['if-range'];
    if (range && ifRange) {
      const v = ifRange.trim();
      const ok = v.startsWith('"') ? v === etag : v === lastModified;
      if (!ok) range = null;
    }
    if (range === 'unsatisfiable') {
      return sendSimple(req, res, entry, 416, 'range not satisfiable', undefined, {
        'Content-Range': `bytes */${size}`,
        'Accept-Ranges': 'bytes',
      });
    }
    let start = 0;
    let end = size - 1;
    let status = 200;
    if (range) {
      ({ start, end } = range);
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    let length = end - start + 1;
    if (size === 0) length = 0;

    let mismatch = method === 'GET' ? takeRule(faults.lengthMismatch, p, method) : null;
    if (mismatch) {
      // Chunked body: the client can only find out by counting against the size it probed.
      headers['Transfer-Encoding'] = 'chunked';
    } else {
      headers['Content-Length'] = length;
    }
    res.writeHead(status, headers);
    entry.status = status;
    if (method === 'HEAD' || length === 0) return res.end();

    const cut = takeRule(faults.cut, p, method) ?? takeRule(faults.stall, p, method);
    const cutAfter = cut ? Math.max(0, cut.afterBytes ?? 0) : Infinity;
    const stall = cut && faults.stall?.includes(cut);
    let toSend = length;
    if (mismatch?.missingBytes) toSend = Math.max(0, length - mismatch.missingBytes);
    const rate = faults.bytesPerSecond > 0 ? faults.bytesPerSecond : 0;

    const fh = await fsp.open(file, 'r');
    const t0 = Date.now();
    try {
      let sent = 0;
      while (sent < toSend) {
        if (res.destroyed) return;
        let n = Math.min(READ_BYTES, toSend - sent, cutAfter - sent);
        if (n <= 0) break;
        const buf = Buffer.allocUnsafe(n);
        const { bytesRead } = await fh.read(buf, 0, n, start + sent);
        if (bytesRead <= 0) break;
        const piece = bytesRead < n ? buf.subarray(0, bytesRead) : buf;
        if (!(await write(res, piece))) return;
        sent += bytesRead;
        entry.bytes = sent;
        if (rate) {
          const due = t0 + (sent / rate) * 1000;
          const wait = due - Date.now();
          if (wait > 0) await sleep(wait);
        }
      }
      if (sent >= cutAfter && cut) {
        // Everything up to afterBytes has been handed to the kernel; now cut the connection: by
        // default with a FIN once those bytes are out (an incomplete body; a browser may still drop
        // the tail it had buffered), with `reset: true` at once.
        if (stall) await new Promise((resolve) => (res.destroyed ? resolve() : res.once('close', resolve)));
        else if (cut.reset) res.socket?.destroy();
        else res.socket?.destroySoon();
        return;
      }
      if (mismatch?.extraBytes) {
        const extra = Buffer.alloc(mismatch.extraBytes);
        if (!(await write(res, extra))) return;
        entry.bytes += extra.length;
      }
      res.end();
    } finally {
      await fh.close();
    }
  }

  function write(res, buf) {
    return new Promise((resolve) => {
      if (res.destroyed) return resolve(false);
      res.write(buf, (err) => resolve(!err && !res.destroyed));
    });
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) {
        try {
          res.writeHead(500, baseHeaders({ 'Content-Type': 'text/plain' }));
          res.end(String(e && e.stack));
        } catch {}
      } else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = server.address().port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${actualPort}/`,
    port: actualPort,
    /** Stops listening and destroys open connections. */
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
    /** Replaces the active faults (see startServer). */
    setFaults(f) {
      faults = structuredClone(f ?? {});
    },
    clearFaults() {
      faults = {};
    },
    /** The request log: [{method, path, range, ifRange, status, bytes, ms, complete}], oldest first. */
    log() {
      return requestLog.map((e) => ({ ...e }));
    },
    clearLog() {
      requestLog = [];
    },
  };
}

async function main(argv) {
  let root = null;
  let port = 8080;
  let host = '127.0.0.1';
  const mounts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--root') root = val();
    else if (a === '--port') port = Number(val());
    else if (a === '--host') host = val();
    else if (a === '--mount') {
      const v = val();
      const eq = v.indexOf('=');
      if (eq <= 0) throw new Error(`--mount wants /prefix/=DIR, got ${v}`);
      mounts[v.slice(0, eq)] = v.slice(eq + 1);
    } else if (a === '-h' || a === '--help') {
      console.log('usage: node scripts/serve.mjs --root DIR [--port 8080] [--host 127.0.0.1] [--mount /models/=DIR]...');
      return;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!root) throw new Error('--root DIR is required');
  if (!fs.existsSync(root)) throw new Error(`--root ${root} does not exist`);
  const s = await startServer({ root, port, host, mounts });
  console.log(`Serving ${path.resolve(root)} at ${s.url}`);
  for (const [prefix, dir] of Object.entries(mounts)) console.log(`  ${prefix} → ${path.resolve(dir)}`);
  const stop = () => s.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`serve: ${e.message}`);
    process.exit(1);
  });
}
