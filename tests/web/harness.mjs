// Browser test harness: headless Debian Chromium through playwright-core (never downloads a browser),
// the test server (fault-server.mjs: scripts/serve.mjs with fault injection), and helpers to open a
// page on the same origin as the models and import package modules into it.
//
//   const server = await startTestServer({ mounts: { '/split/': dir } });
//   const b = await launchBrowser();                 // fresh profile in a temp dir
//   const page = await openPage(b, server);          // /tests/web/pages/index.html
//   await importInPage(page, '/www/package/src/index.js');
//   ... page.evaluate(...) ...
//   await b.close(); await server.close();
//
// Engine tests take all of that, with the package imported, from startEngineTest().
// The repo root is served at `/`, `.cache/models` at `/models/`.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { startServer } from './fault-server.mjs';

export { startServer };

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MODELS_DIR = path.join(REPO_ROOT, '.cache/models');
export const DEFAULT_MODEL = path.join(MODELS_DIR, 'SmolLM2-135M-Instruct.Q4_1.gguf');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

const require = createRequire(path.join(REPO_ROOT, 'scripts/node_modules/'));
/** playwright-core's `chromium` (from scripts/node_modules). */
export const { chromium } = require('playwright-core');

/** A fresh temp directory. */
export function tmpDir(prefix = 'llama-webgpu-test-') {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * Starts the test server on the repo root with `.cache/models` at `/models/`.
 * @param {{port?: number, mounts?: Record<string,string>}} [opts] extra mounts are added
 */
export function startTestServer({ port = 0, mounts = {} } = {}) {
  return startServer({ root: REPO_ROOT, port, mounts: { '/models/': MODELS_DIR, ...mounts } });
}

/**
 * Launches headless Chromium with a persistent profile (OPFS survives within it; pass the same
 * `userDataDir` again to reopen the profile). A profile created here is deleted by `close()` unless
 * `keepProfile` is passed there.
 * @param {{userDataDir?: string, headless?: boolean, args?: string[], debug?: boolean}} [opts]
 * @returns {Promise<{context: import('playwright-core').BrowserContext, userDataDir: string,
 *   close: (o?: {keepProfile?: boolean}) => Promise<void>, newCDPSession: Function}>}
 */
export async function launchBrowser({ userDataDir, headless = true, args = [], debug = !!process.env.DEBUG_BROWSER } = {}) {
  const own = !userDataDir;
  const dir = userDataDir ?? (await tmpDir('llama-webgpu-profile-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless,
    args: [...CHROMIUM_ARGS, ...args],
    viewport: { width: 800, height: 600 },
  });
  if (debug) {
    context.on('console', (m) => console.log(`[page ${m.type()}] ${m.text()}`));
    context.on('weberror', (e) => console.log(`[page error] ${e.error()}`));
  }
  let closed = false;
  return {
    context,
    userDataDir: dir,
    async close({ keepProfile = false } = {}) {
      if (!closed) {
        closed = true;
        await context.close().catch(() => {});
      }
      if (own && !keepProfile) await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
    },
  };
}

/**
 * Opens a page of the test server (default: the blank test page, which has `<input id=files multiple>`)
 * and imports `modules` into it; each module namespace lands in `window.__mods[path]`.
 * @param {{context: object}|object} browser a launchBrowser() result or a BrowserContext
 * @param {{url: string}} server
 * @param {{path?: string, modules?: string[], reuse?: boolean}} [opts]
 */
export async function openPage(browser, server, { path: p = '/tests/web/pages/index.html', modules = [], reuse = true } = {}) {
  const context = browser.context ?? browser;
  const blank = reuse ? context.pages().find((pg) => pg.url() === 'about:blank') : null;
  const page = blank ?? (await context.newPage());
  page.on('pageerror', (e) => {
    if (process.env.DEBUG_BROWSER) console.log(`[pageerror] ${e}`);
  });
  await page.goto(new URL(p, server.url).href);
  for (const m of modules) await importInPage(page, m);
  return page;
}

/** Imports a module (path on the server) into the page as `window.__mods[path]`. */
export async function importInPage(page, modulePath) {
  await page.evaluate(async (m) => {
    window.__mods ??= {};
    window.__mods[m] = await import(m);
  }, modulePath);
}

/**
 * Calls `window.__mods[modulePath][fn](...args)` in the page and returns its (cloneable) result.
 */
export function callInPage(page, modulePath, fn, ...args) {
  return page.evaluate(
    async ([m, f, a]) => {
      const mod = window.__mods?.[m] ?? (await import(m));
      return mod[f](...a);
    },
    [modulePath, fn, args],
  );
}

/**
 * Starts a module worker from `workerPath` in the page. The worker must answer messages
 * `{id, fn, args}` with `{id, result}` or `{id, error}` and post `{ready: true}` once loaded.
 * Returns `call(fn, ...args)`.
 */
export async function startWorker(page, workerPath) {
  await page.evaluate(async (w) => {
    const worker = new Worker(w, { type: 'module' });
    let seq = 0;
    const pending = new Map();
    await new Promise((resolve, reject) => {
      worker.onerror = (e) => reject(new Error(`worker failed to load: ${e.message}`));
      worker.onmessage = ({ data }) => {
        if (data.ready) return resolve();
        const p = pending.get(data.id);
        pending.delete(data.id);
        if (data.error) p.reject(Object.assign(new Error(data.error.message), data.error));
        else p.resolve(data.result);
      };
    });
    window.__worker = (fn, args) =>
      new Promise((resolve, reject) => {
        const id = ++seq;
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, fn, args });
      });
  }, workerPath);
  return (fn, ...args) => page.evaluate(([f, a]) => window.__worker(f, a), [fn, args]);
}

/** SHA-256 (hex) of a file, streamed. */
export async function sha256File(file) {
  const h = crypto.createHash('sha256');
  for await (const c of fs.createReadStream(file, { highWaterMark: 4 << 20 })) h.update(c);
  return h.digest('hex');
}

/**
 * Cuts a file into `n` raw byte pieces named `<prefix>-0000i-of-0000n.gguf` in `dir` (not real GGUF
 * split shards: enough for the fetch layer, which does not parse GGUF).
 * @returns {Promise<Array<{name: string, path: string, size: number}>>}
 */
export async function splitFile(src, n, dir, prefix = 'x') {
  const size = (await fsp.stat(src)).size;
  const per = Math.ceil(size / n);
  const out = [];
  const fd = await fsp.open(src, 'r');
  try {
    for (let i = 0; i < n; i++) {
      const name = `${prefix}-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.gguf`;
      const start = i * per;
      const len = Math.max(0, Math.min(per, size - start));
      const buf = Buffer.allocUnsafe(len);
      await fd.read(buf, 0, len, start);
      await fsp.writeFile(path.join(dir, name), buf);
      out.push({ name, path: path.join(dir, name), size: len });
    }
  } finally {
    await fd.close();
  }
  return out;
}

/** Polls `fn` until it returns a truthy value (returned) or `timeoutMs` passes (throws). */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 20, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Runs `fn(mod, ...args)` in the page, where `mod` is the module imported as `modulePath` (see
 * {@link importInPage}); `fn` is sent as source, so it may use only its arguments and page
 * globals. A throw comes back as `{thrown: {code, message, name, details}}` (errors are not
 * cloneable across the boundary).
 */
export function runInPage(page, modulePath, fn, ...args) {
  return page.evaluate(
    async ([m, src, a]) => {
      const mod = window.__mods[m];
      // eslint-disable-next-line no-new-func
      const f = new Function('return ' + src)();
      try {
        return await f(mod, ...a);
      } catch (e) {
        return { thrown: { code: e.code, message: e.message, name: e.name, details: e.details } };
      }
    },
    [modulePath, fn.toString(), args],
  );
}

/** The npm package's entry module, as the test server serves it. */
export const PACKAGE = '/www/package/src/index.js';

/**
 * @typedef {object} EngineTest
 * @property {Awaited<ReturnType<typeof startTestServer>>} server the test server; restartServer() replaces it
 * @property {Awaited<ReturnType<typeof launchBrowser>>} browser
 * @property {import('playwright-core').Page} page the test page, with {@link PACKAGE} imported
 * @property {string | null} dir the scratch directory, when one was asked for
 * @property {(fn: Function, ...args: any[]) => Promise<any>} inPage {@link runInPage} with the package
 * @property {(name: string, url: string, options?: object) => Promise<{info: object, progress: object[], ticks: number[]} | {thrown: object}>} load
 *   loads a model in the page as `window[name]`, in this thread and without the cache unless
 *   `options` (cloneable ones only) say otherwise; gives the engine's `info` and its progress
 *   events, each with `t` = performance.now(), and `ticks`: the times a 100 ms `setInterval` of
 *   the page's own fired during the load (how promptly the page ran timers meanwhile)
 * @property {(url: string, prompt: string, n: number, options?: object) => Promise<{ids: number[], info: any} | {thrown: object}>} greedy
 *   loads a model as {@link EngineTest.load} does, greedily generates `n` tokens after `prompt`
 *   (`engine.generate`, temperature 0) and unloads it: the token ids and the engine's `info`
 * @property {() => Promise<void>} restartServer starts the test server again, after `server.close()`,
 *   on the same port (so the page keeps its origin and OPFS cache) with the same mounts
 * @property {() => Promise<void>} close closes the browser and the server, and deletes the scratch directory
 */

/**
 * What every engine test starts with: the test server (see {@link startTestServer}; `mounts` are
 * added), a fresh headless Chromium and the test page with the npm package imported. With `scratch`
 * a fresh temp directory (`dir`) is served at that URL prefix, for the models a test makes.
 * @param {{scratch?: string, mounts?: Record<string, string>}} [opts]
 * @returns {Promise<EngineTest>}
 */
export async function startEngineTest({ scratch, mounts = {} } = {}) {
  const session = {
    server: null,
    browser: null,
    page: null,
    dir: scratch ? await tmpDir() : null,
    inPage: (fn, ...args) => runInPage(session.page, PACKAGE, fn, ...args),
    load: (name, url, options = {}) =>
      session.inPage(async (mod, n, u, o) => {
        const progress = [];
        const onProgress = (p) => progress.push({ ...p, t: performance.now() });
        // A 100 ms timer of the page's own, beside the engine's: how late the event loop ran timers.
        const ticks = [];
        const probe = setInterval(() => ticks.push(performance.now()), 100);
        try {
          window[n] = await mod.LlamaEngine.load(u, { worker: false, cache: false, ...o, onProgress });
        } finally {
          clearInterval(probe);
        }
        return { info: window[n].info, progress, ticks };
      }, name, url, options),
    async greedy(url, prompt, n, options = {}) {
      const loaded = await session.load('__greedy', url, options);
      if (loaded.thrown) return loaded;
      return session.inPage(async (mod, p, k) => {
        const engine = window.__greedy;
        try {
          const ids = [];
          for await (const tok of engine.generate(p, { temperature: 0, max_tokens: k })) ids.push(tok.id);
          return { ids, info: engine.info };
        } finally {
          await engine.unload();
        }
      }, prompt, n);
    },
    async restartServer() {
      session.server = await startTestServer({ port: session.server.port, mounts });
    },
    async close() {
      await session.browser?.close();
      await session.server?.close();
      if (session.dir) await fsp.rm(session.dir, { recursive: true, force: true });
    },
  };
  if (scratch) mounts = { ...mounts, [scratch]: session.dir };
  try {
    session.server = await startTestServer({ mounts });
    session.browser = await launchBrowser();
    session.page = await openPage(session.browser, session.server, { modules: [PACKAGE] });
  } catch (e) {
    await session.close();
    throw e;
  }
  return session;
}

/** The release CLI that the browser results are compared with. */
export const CLI = path.join(REPO_ROOT, 'target/release/llama-webgpu');

/**
 * The native CLI's greedy generation on the kernels SwiftShader runs in the browser, as its
 * `--json` summary `{prompt_tokens, tokens, text, finish_reason, ...}`: f32, and with
 * `subgroups` (the browser's default path) lavapipe's subgroups narrowed to SwiftShader's 4
 * (`LP_NATIVE_VECTOR_WIDTH=128`), so the same kernel variants add in the same order; without,
 * `--no-subgroups` (the browser's `subgroups: false`). `chat` renders `prompt` with the model's
 * chat template (no system prompt). `extra`: more CLI flags (`['--int-dot', 'on']`).
 */
export function nativeGreedy({ model = DEFAULT_MODEL, prompt, n, chat = false, subgroups = true, extra = [] }) {
  const args = ['generate', '-m', model, '-p', prompt, ...(chat ? ['--chat'] : []), '-n', String(n),
    '--temp', '0', '--json', '--no-f16', ...(subgroups ? [] : ['--no-subgroups']), ...extra];
  return nativeJson(args, subgroups ? { LP_NATIVE_VECTOR_WIDTH: '128' } : {});
}

/**
 * The last JSON line the native CLI prints for `args`, run on the system's lavapipe (Vulkan,
 * quiet) with `env` added (VK_DRIVER_FILES there picks another driver).
 * @param {string[]} args
 * @param {Record<string, string>} [env]
 */
export function nativeJson(args, env = {}) {
  const full = { ...process.env, WGPU_BACKEND: 'vulkan', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  // A driver file set for Dawn (tests/dawn/globals.mjs) is not the native tests' lavapipe,
  // unless `env` names it.
  delete full.VK_DRIVER_FILES;
  Object.assign(full, env);
  const out = execFileSync(CLI, args, { env: full, encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop());
}

/**
 * The largest difference between two runs' top log-probabilities (OpenAI `logprobs.content`
 * entries), position by position. The greedy tokens must be the same; an alternative in only one
 * list counts as its distance below the other list's last entry (a near-tie at the edge is close).
 * @param {Array<{token: string, top_logprobs: Array<{token: string, logprob: number}>}>} a
 * @param {typeof a} b
 */
export function logprobDifference(a, b) {
  let worst = 0;
  for (const [i, s] of a.entries()) {
    const t = b[i];
    assert.equal(s.token, t.token, `position ${i}: greedy token`);
    const other = new Map(t.top_logprobs.map((e) => [e.token, e.logprob]));
    const edge = t.top_logprobs.at(-1).logprob;
    for (const e of s.top_logprobs) {
      const d = other.has(e.token) ? Math.abs(e.logprob - other.get(e.token)) : edge - e.logprob;
      worst = Math.max(worst, d);
    }
  }
  return worst;
}
