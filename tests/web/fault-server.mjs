#!/usr/bin/env node
// The browser tests' server (and tests/net.rs's): scripts/serve.mjs plus injected network faults and a
// request log, driven from Node (`setFaults`, `log`) or over HTTP from a page or another process
// (POST /__faults, GET /__log).
//
// CLI: node tests/web/fault-server.mjs --root DIR [--port 8080] [--host 127.0.0.1] [--mount /models/=DIR]...

import { startServer as startStaticServer, writeChunk, runIfMain } from '../../scripts/serve.mjs';

const CONTROL = new Set(['/__faults', '/__faults/clear', '/__log', '/__log/clear']);

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

async function readJson(req) {
  const parts = [];
  for await (const c of req) parts.push(c);
  const text = Buffer.concat(parts).toString('utf8');
  return text ? JSON.parse(text) : {};
}

/**
 * Starts the static server (scripts/serve.mjs, same options) with fault injection.
 *
 * Faults (`setFaults` or POST /__faults with the same JSON; each replaces the previous set):
 * - `cut: [{path, afterBytes, times = 1, reset = false}]`: close the connection after `afterBytes` body
 *   bytes (`reset`: a TCP reset (RST) at once, which may lose bytes still in flight).
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
 * @returns {Promise<{url: string, port: number, close: () => Promise<void>, setFaults: (f: object) => void,
 *   clearFaults: () => void, log: () => object[], clearLog: () => void}>}
 */
export async function startServer(options) {
  let faults = {};
  let requestLog = [];

  /** Answers a control endpoint; these requests are not logged. */
  async function control(ctx, p) {
    const method = ctx.req.method;
    try {
      if (p === '/__log' && method === 'GET') return ctx.reply(200, JSON.stringify(requestLog), 'application/json');
      if (p === '/__log/clear' && method === 'POST') {
        requestLog = [];
        return ctx.reply(204);
      }
      if (p === '/__faults/clear' && method === 'POST') {
        faults = {};
        return ctx.reply(204);
      }
      if (p === '/__faults' && method === 'POST') {
        faults = await readJson(ctx.req);
        return ctx.reply(204);
      }
      if (p === '/__faults' && method === 'GET') return ctx.reply(200, JSON.stringify(faults), 'application/json');
      return ctx.reply(405, 'method not allowed');
    } catch (e) {
      return ctx.reply(400, String(e && e.message));
    }
  }

  /** Shapes a GET's body by the rules for its path: framing, cut or stall, throttling. */
  function planBody(ctx, length) {
    const p = ctx.url.pathname;
    const mismatch = takeRule(faults.lengthMismatch, p, 'GET');
    // A cut or stall is spent only on a response that has a body to cut.
    const cut = length > 0 ? (takeRule(faults.cut, p, 'GET') ?? takeRule(faults.stall, p, 'GET')) : null;
    const rate = faults.bytesPerSecond > 0 ? faults.bytesPerSecond : 0;
    if (!mismatch && !cut && !rate) return null;
    const stall = cut && faults.stall?.includes(cut);
    const cutAfter = cut ? Math.max(0, cut.afterBytes ?? 0) : Infinity;
    const toSend = mismatch?.missingBytes ? Math.max(0, length - mismatch.missingBytes) : length;
    const record = ctx.record;
    return {
      // Chunked body: the client can only find out by counting against the size it probed.
      chunked: !!mismatch,
      bytes: Math.min(toSend, cutAfter),
      pace: rate
        ? async (sent, elapsedMs) => {
            const wait = (sent / rate) * 1000 - elapsedMs;
            if (wait > 0) await sleep(wait);
          }
        : undefined,
      async finish(res, sent) {
        if (cut && sent >= cutAfter) {
          // Everything up to afterBytes has been handed to the kernel; now cut the connection: by
          // default with a FIN once those bytes are out (an incomplete body; a browser may still drop
          // the tail it had buffered), with `reset: true` at once with a TCP RST.
          if (stall) await new Promise((resolve) => (res.destroyed ? resolve() : res.once('close', resolve)));
          else if (cut.reset) res.socket?.resetAndDestroy();
          else res.socket?.destroySoon();
          return;
        }
        if (mismatch?.extraBytes) {
          const extra = Buffer.alloc(mismatch.extraBytes);
          if (!(await writeChunk(res, extra))) return;
          record.bytes += extra.length;
        }
        res.end();
      },
    };
  }

  const hooks = {
    async begin(ctx) {
      const { req, res } = ctx;
      const p = ctx.url.pathname;
      if (CONTROL.has(p)) {
        await control(ctx, p);
        return true;
      }
      const entry = {
        method: req.method,
        path: p,
        range: req.headers.range ?? null,
        ifRange: req.headers['if-range'] ?? null,
        status: 0,
        bytes: 0,
        start: Date.now(),
        complete: false,
      };
      ctx.record = entry;
      requestLog.push(entry);
      res.on('close', () => {
        entry.ms = Date.now() - entry.start;
        entry.complete = res.writableFinished;
      });
      if (faults.delayMs > 0) await sleep(faults.delayMs);
      // Other methods fall through to the static server's 405 without spending a rule.
      const rule = req.method === 'GET' || req.method === 'HEAD' ? takeRule(faults.status, p, req.method) : null;
      if (!rule) return false;
      ctx.reply(rule.code, `injected ${rule.code}`);
      return true;
    },
    ignoreRange: (ctx) => !!takeRule(faults.ignoreRange, ctx.url.pathname, 'GET'),
    body: planBody,
  };

  const server = await startStaticServer({ ...options, hooks });
  return {
    ...server,
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

runIfMain(import.meta.url, startServer, 'tests/web/fault-server.mjs');
