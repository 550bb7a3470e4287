#!/usr/bin/env node
// Static HTTP server for the demo (scripts/demo) and for pages that load models from this repo.
//
// - GET and HEAD; one byte range per request (`bytes=a-b`, `a-`, `-n`) → 206 + Content-Range, 416 when
//   unsatisfiable; `Accept-Ranges: bytes`, a strong ETag from size + mtime, Last-Modified, If-Range,
//   If-None-Match → 304. Files are streamed, never read whole into memory.
// - Cross-origin isolation headers (COOP/COEP/CORP) on every response, `Cache-Control: no-cache`.
// - `hooks` let a caller answer a request itself or shape a response body; the browser tests' server
//   (tests/web/fault-server.mjs) injects its network faults through them.
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

/**
 * Writes one piece of a body.
 * @returns {Promise<boolean>} false when the client has gone (then nothing more should be written)
 */
export function writeChunk(res, buf) {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve(false);
    res.write(buf, (err) => resolve(!err && !res.destroyed));
  });
}

/**
 * One request as the hooks see it.
 * @typedef {object} RequestContext
 * @property {http.IncomingMessage} req
 * @property {http.ServerResponse} res
 * @property {URL} url
 * @property {{status: number, bytes: number}} record what was answered: the status and the body bytes
 *   sent so far, kept current by the server. A hook may replace it with its own object (a log entry)
 *   before the answer starts, to have that filled in instead.
 * @property {(code: number, body?: string, type?: string, headers?: object) => void} reply answers with
 *   a small uncached body (and the isolation headers).
 */

/**
 * How to send a GET's body, from the `body` hook; every field is optional.
 * @typedef {object} BodyPlan
 * @property {boolean} [chunked] send without Content-Length (chunked transfer encoding)
 * @property {number} [bytes] how many of the response's bytes to send from the file (default: all)
 * @property {(sent: number, elapsedMs: number) => Promise<void>} [pace] awaited after every piece
 * @property {(res: http.ServerResponse, sent: number) => Promise<void> | void} [finish] ends the response
 *   in place of `res.end()`, once `sent` bytes are out
 */

/**
 * Where a caller can step into a request. The demo uses none.
 * @typedef {object} ServerHooks
 * @property {(ctx: RequestContext) => Promise<boolean> | boolean} [begin] called first for every
 *   request; true when it has answered (through `ctx.reply`)
 * @property {(ctx: RequestContext) => boolean} [ignoreRange] asked for a GET with a Range header: true
 *   serves it as if it had none
 * @property {(ctx: RequestContext, length: number) => BodyPlan | null} [body] asked before the
 *   headers of a GET answered 200 or 206 with `length` bytes
 */

/**
 * Starts the server.
 * @param {{root: string, port?: number, host?: string, mounts?: Record<string, string>, hooks?: ServerHooks}} options
 *   `mounts` maps URL prefixes (`/models/`) to directories served in place of `root` below them.
 * @returns {Promise<{url: string, port: number, close: () => Promise<void>}>}
 */
export async function startServer({ root, port = 0, host = '127.0.0.1', mounts = {}, hooks = {} } = {}) {
  if (!root) throw new Error('startServer: root is required');
  const rootDir = path.resolve(root);
  const mountList = Object.entries(mounts)
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : prefix + '/', path.resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length);
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

  function sendSimple(ctx, code, body = '', type = 'text/plain; charset=utf-8', extra = {}) {
    const { req, res } = ctx;
    const buf = Buffer.from(body);
    res.writeHead(code, baseHeaders({ 'Content-Type': type, 'Content-Length': buf.length, 'Cache-Control': 'no-store', ...extra }));
    ctx.record.status = code;
    if (req.method === 'HEAD') res.end();
    else {
      res.end(buf);
      ctx.record.bytes = buf.length;
    }
  }

  /** Sends `count` bytes of `file` from `start`; the bytes sent, or null when the client went away. */
  async function sendFileBytes(ctx, file, start, count, pace) {
    const fh = await fsp.open(file, 'r');
    const t0 = Date.now();
    try {
      let sent = 0;
      while (sent < count) {
        if (ctx.res.destroyed) return null;
        const n = Math.min(READ_BYTES, count - sent);
        const buf = Buffer.allocUnsafe(n);
        const { bytesRead } = await fh.read(buf, 0, n, start + sent);
        if (bytesRead <= 0) break;
        const piece = bytesRead < n ? buf.subarray(0, bytesRead) : buf;
        if (!(await writeChunk(ctx.res, piece))) return null;
        sent += bytesRead;
        ctx.record.bytes = sent;
        if (pace) await pace(sent, Date.now() - t0);
      }
      return sent;
    } finally {
      await fh.close();
    }
  }

  async function handle(req, res) {
    const url = new URL(req.url, 'http://x');
    const p = url.pathname;
    const method = req.method;
    const ctx = { req, res, url, record: { status: 0, bytes: 0 } };
    ctx.reply = (code, body, type, extra) => sendSimple(ctx, code, body, type, extra);
    if (hooks.begin && (await hooks.begin(ctx))) return;

    if (method !== 'GET' && method !== 'HEAD') return ctx.reply(405, 'method not allowed', undefined, { Allow: 'GET, HEAD' });

    let file = resolveFile(p);
    if (!file) return ctx.reply(403, 'forbidden');
    let st;
    try {
      st = await fsp.stat(file);
      if (st.isDirectory()) {
        if (!p.endsWith('/')) return ctx.reply(301, '', undefined, { Location: p + '/' + url.search });
        file = path.join(file, 'index.html');
        st = await fsp.stat(file);
      }
      if (!st.isFile()) throw new Error('not a file');
    } catch {
      return ctx.reply(404, 'not found');
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
      ctx.record.status = 304;
      return res.end();
    }

    let range = parseRange(req.headers.range, size);
    if (range && method === 'GET' && hooks.ignoreRange?.(ctx)) range = null;
    const ifRange = req.headers['if-range'];
    if (range && ifRange) {
      const v = ifRange.trim();
      const ok = v.startsWith('"') ? v === etag : v === lastModified;
      if (!ok) range = null;
    }
    if (range === 'unsatisfiable') {
      return ctx.reply(416, 'range not satisfiable', undefined, {
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

    const plan = (method === 'GET' && hooks.body?.(ctx, length)) || {};
    if (plan.chunked) headers['Transfer-Encoding'] = 'chunked';
    else headers['Content-Length'] = length;
    res.writeHead(status, headers);
    ctx.record.status = status;
    if (method === 'HEAD' || length === 0) return res.end();

    const sent = await sendFileBytes(ctx, file, start, plan.bytes ?? length, plan.pace);
    if (sent === null) return;
    if (plan.finish) await plan.finish(res, sent);
    else res.end();
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
  };
}

async function main(argv, start, script) {
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
      console.log(`usage: node ${script} --root DIR [--port 8080] [--host 127.0.0.1] [--mount /models/=DIR]...`);
      return;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!root) throw new Error('--root DIR is required');
  if (!fs.existsSync(root)) throw new Error(`--root ${root} does not exist`);
  const s = await start({ root, port, host, mounts });
  // The first line is read by programs that start the server on port 0 (tests/net.rs): keep its shape.
  console.log(`Serving ${path.resolve(root)} at ${s.url}`);
  for (const [prefix, dir] of Object.entries(mounts)) console.log(`  ${prefix} → ${path.resolve(dir)}`);
  const stop = () => s.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/**
 * Runs `start` (this file's startServer, or a server built on it) with the command-line arguments
 * when `moduleUrl` is the script node was started with; `script` names it in the usage line.
 */
export function runIfMain(moduleUrl, start, script) {
  if (!process.argv[1] || path.resolve(process.argv[1]) !== fileURLToPath(moduleUrl)) return;
  main(process.argv.slice(2), start, script).catch((e) => {
    console.error(`serve: ${e.message}`);
    process.exit(1);
  });
}

runIfMain(import.meta.url, startServer, 'scripts/serve.mjs');
