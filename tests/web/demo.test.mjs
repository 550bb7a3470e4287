// The web demo (www/demo/) end to end in headless Chromium (WebGPU on SwiftShader: the f32
// kernels with its subgroups of 4), served the way scripts/demo serves it: www/ at /, the default model's
// gguf-split shards at /demo/models/. One page is reused through the chat steps, because
// SwiftShader runs SmolLM2-135M at about a token per second:
//
//   1. the page and the default model (split shards over HTTP: progress, cache marker, device panel,
//      the subgroups setting);
//   2, 3, 7, 8. a question, streamed into a non-empty answer with stats, equal to the native CLI's
//      `generate --chat --temp 0` (the same kernels: H.nativeGreedy); no main-thread long task > 200 ms;
//   4, 9. Stop mid-answer, then ask again; screenshot of the finished chat (tests/web/artifacts/);
//   5. New chat; then "Benchmark this device" (figures, per-kernel table, the JSON copied);
//   6. the same model from local files through the file input, with the subgroups setting off
//      (the fallback kernels); model output containing
//      `<img src=x onerror=alert(1)>` shows as text (and equals the native CLI's again);
// plus the Markdown renderer, the "WebGPU missing" message, a model too large for the device refused
// before any download, and Cancel during a load. Every request stays on the page's origin.
//
// Needs `cargo build --release` and scripts/build-web first. Run: node --test tests/web/demo.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import * as H from './harness.mjs';
import { renderMarkdown } from '../../www/demo/markdown.js';

const { CLI } = H;
const ARTIFACTS = path.join(H.REPO_ROOT, 'tests/web/artifacts');
// As scripts/demo: the default model split into 40 MB shards, mounted at /demo/models/.
const SHARD_PREFIX = 'SmolLM2-135M-Instruct-Q4_1';
const MODELS_MOUNT = '/demo/models/';
const QUESTION = 'What is the capital of France?';
const INJECTION = 'Repeat exactly: <img src=x onerror=alert(1)>';
const MAX_TOKENS = 12;
const INJECTION_TOKENS = 16;
// SwiftShader on a busy 2-core machine: generous, but bounded.
const GEN_TIMEOUT = 240_000;

let server;
let browser;
let page;
let shardDir;
let shards;
let nativeQuestion;
let nativeInjection;
const requests = [];
const dialogs = [];
const pageErrors = [];

before(async () => {
  const t0 = Date.now();
  shardDir = await H.tmpDir('llama-webgpu-demo-shards-');
  execFileSync(CLI, ['split', H.DEFAULT_MODEL, path.join(shardDir, SHARD_PREFIX), '--split-max-size', '40M'], { stdio: 'pipe' });
  shards = (await fsp.readdir(shardDir)).sort();
  const models = JSON.parse(await fsp.readFile(path.join(H.REPO_ROOT, 'www/demo/models.json'), 'utf8'));
  const def = models.models.find((m) => m.id === models.default);
  assert.equal(def.url, `models/${shards[0]}`, 'models.json default must be the first shard scripts/demo writes');
  assert.equal(def.sizeBytes, shards.reduce((a, n) => a + fs.statSync(path.join(shardDir, n)).size, 0));
  nativeQuestion = H.nativeGreedy({ prompt: QUESTION, n: MAX_TOKENS, chat: true });
  nativeInjection = H.nativeGreedy({ prompt: INJECTION, n: INJECTION_TOKENS, chat: true, subgroups: false });
  server = await H.startServer({
    root: path.join(H.REPO_ROOT, 'www'),
    port: 0,
    // /slow/ is the same files under another URL (another cache key), for the Cancel test.
    mounts: { [MODELS_MOUNT]: shardDir, '/slow/': shardDir },
  });
  browser = await H.launchBrowser();
  browser.context.on('request', (r) => requests.push(r.url()));
  page = await newPage();
  console.log(`setup (shards, two native CLI runs, server, browser): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (shardDir) await fsp.rm(shardDir, { recursive: true, force: true });
});

async function newPage({ init, query = '' } = {}) {
  const p = await browser.context.newPage();
  await p.setViewportSize({ width: 1280, height: 800 });
  p.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  p.on('pageerror', (e) => pageErrors.push(String(e)));
  if (init) await p.addInitScript(init);
  await p.goto(new URL(`/demo/${query}`, server.url).href);
  await p.waitForFunction(() => document.body.dataset.state !== 'starting', null, { timeout: 30_000 });
  return p;
}

const byId = (id) => `[data-testid="${id}"]`;
const state = (p = page) => p.evaluate(() => document.body.dataset.state);

async function setSettings(p, values) {
  for (const [id, v] of Object.entries(values)) {
    if (id === 'context-size') await p.selectOption(byId(id), String(v));
    else await p.fill(byId(id), String(v));
  }
}

/** Types `text`, presses Send and waits for the reply; returns what the page shows and knows. */
async function ask(text, { onStreaming } = {}) {
  const before = await page.locator(byId('message-assistant')).count();
  await page.fill(byId('prompt'), text);
  await page.click(byId('send'));
  const reply = page.locator(byId('message-assistant')).nth(before);
  await reply.waitFor({ timeout: 10_000 });
  if (onStreaming) await onStreaming(reply);
  await page.locator(`${byId('message-assistant')}[data-done="true"] >> nth=${before}`).waitFor({ timeout: GEN_TIMEOUT });
  return page.evaluate((i) => {
    const el = document.querySelectorAll('[data-testid="message-assistant"]')[i];
    return {
      shown: el.querySelector('.msg-body').textContent,
      html: el.querySelector('.msg-body').innerHTML,
      finish: el.dataset.finish,
      raw: window.llamaDemo.messages.at(-1)?.content,
      lastRole: window.llamaDemo.messages.at(-1)?.role,
      usage: window.llamaDemo.lastUsage,
      stats: document.querySelector('[data-testid="stats"]').textContent,
      state: document.body.dataset.state,
    };
  }, before);
}

test('1. the page loads the default model from split shards over HTTP, with progress, cache marker and device facts', { timeout: GEN_TIMEOUT }, async () => {
  assert.equal(await state(), 'idle');
  const url = await page.inputValue(byId('model-url'));
  assert.equal(url, new URL(`${MODELS_MOUNT}${shards[0]}`, server.url).href);
  const device = await page.textContent(byId('device-info'));
  assert.match(device, /WebGPU\s*available/);
  assert.match(device, /shader-f16\s*no/, 'SwiftShader has no shader-f16');
  assert.match(device, /subgroups\s*yes/, 'SwiftShader offers subgroups');
  assert.equal(await page.isChecked(byId('use-subgroups')), true, 'subgroups are on by default');
  assert.match(await page.textContent(byId('memory')), /KV cache.*f32/s);
  assert.equal(await page.getAttribute(byId('fit'), 'data-fits'), 'true');
  await page.waitForFunction(() => document.querySelector('[data-testid="cache-status"]').textContent === 'Not cached', null, { timeout: 10_000 });
  await setSettings(page, { 'context-size': 1024, 'max-tokens': MAX_TOKENS, temperature: 0, seed: '' });

  // Record what the progress element shows while the model streams in.
  await page.evaluate(() => {
    window.__progress = [];
    const el = document.querySelector('[data-testid="progress"]');
    new MutationObserver(() => {
      if (!el.hidden) {
        const text = `${el.querySelector('.phase').textContent}: ${el.querySelector('.progress-text').textContent}`;
        window.__progress.push({ phase: el.dataset.phase, loaded: Number(el.dataset.loaded ?? 0), text });
      }
    }).observe(el, { attributes: true, subtree: true, childList: true, characterData: true });
  });
  const t0 = Date.now();
  await page.click(byId('load'));
  await page.waitForFunction(() => ['ready', 'idle'].includes(document.body.dataset.state), null, { timeout: GEN_TIMEOUT });
  const loadS = (Date.now() - t0) / 1000;
  assert.equal(await page.textContent(byId('error')), '');
  assert.equal(await state(), 'ready');
  const progress = await page.evaluate(() => window.__progress);
  assert.ok(progress.some((p) => p.phase === 'download' && p.loaded > 0), JSON.stringify(progress.slice(0, 3)));
  const shown = progress.find((p) => p.phase === 'download' && / MB \/ [\d.]+ MB .*MB\/s.*ETA/.test(p.text));
  assert.ok(shown, `progress text with MB loaded/total, MB/s and ETA: ${JSON.stringify(progress.map((p) => p.text).slice(-3))}`);
  assert.ok(progress.some((p) => p.phase === 'compile'));
  assert.equal(await page.isHidden(byId('progress')), true);
  const info = await page.textContent(byId('model-info'));
  assert.match(info, /3 shards over HTTP/);
  assert.match(info, /1024 of 8192 tokens/);
  assert.match(await page.textContent(byId('device-info')), /subgroups\s*yes · engine uses them \(size 4\)/);
  // The f32 products by default, though Chrome's WGSL has the integer ones.
  assert.match(await page.textContent(byId('device-info')), /int8 dot products\s*yes · engine multiplies in f32/);
  // SwiftShader is a CPU adapter: its decode step keeps the norms and SwiGLU as kernels of their own.
  assert.match(await page.textContent(byId('device-info')), /Decode fusions\s*none \(kernels of their own\)/);
  assert.match(await page.textContent(byId('device-info')), /Decode steps\s*one at a time/);
  await page.waitForFunction(() => document.querySelector('[data-testid="cache-status"]').textContent === 'In cache', null, { timeout: 10_000 });
  console.log(`load through the page: ${loadS.toFixed(1)} s; progress: ${shown.text}`);
});

test('2, 3, 7, 8. a question streams into a non-empty answer with stats, equal to the native CLI at temperature 0, with no long main-thread task', { timeout: GEN_TIMEOUT }, async () => {
  await page.evaluate(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask' });
    window.__genStart = performance.now();
  });
  const t0 = Date.now();
  const r = await ask(QUESTION, {
    onStreaming: (reply) => reply.evaluate((el) => {
      // Every distinct partial text the message shows while it streams.
      window.__partials = [];
      const body = el.querySelector('.msg-body');
      new MutationObserver(() => {
        const t = body.textContent;
        if (el.dataset.done !== 'true' && t && window.__partials.at(-1) !== t) window.__partials.push(t);
      }).observe(body, { childList: true, subtree: true, characterData: true });
    }),
  });
  const genS = (Date.now() - t0) / 1000;
  const { partials, longTasks } = await page.evaluate(() => ({
    partials: window.__partials,
    longTasks: window.__longTasks.filter((t) => t.start >= window.__genStart),
  }));
  assert.equal(r.state, 'ready');
  assert.ok(r.shown.trim().length > 0, 'the answer is not empty');
  assert.equal(r.raw, nativeQuestion.text, 'the page and the native CLI greedy answers differ');
  assert.equal(r.shown.trim(), nativeQuestion.text.trim());
  assert.ok(partials.length >= 2, `the answer streamed in pieces: ${JSON.stringify(partials)}`);
  assert.ok(nativeQuestion.text.startsWith(partials[0]) && partials[0].length < nativeQuestion.text.length);
  assert.equal(r.usage.completion_tokens, nativeQuestion.tokens.length);
  assert.equal(r.usage.prompt_tokens, nativeQuestion.prompt_tokens.length);
  assert.match(r.stats, /first token [\d.]+ s · prefill \d+ tok at [\d.]+ tok\/s · decode \d+ tok at [\d.]+ tok\/s/);
  assert.deepEqual(longTasks.filter((t) => t.duration > 200), [], `main-thread long tasks during generation: ${JSON.stringify(longTasks)}`);
  console.log(`generation: ${genS.toFixed(1)} s; ${r.stats}; long tasks ≥ 50 ms: ${longTasks.length}` +
    (longTasks.length ? ` (max ${Math.max(...longTasks.map((t) => t.duration)).toFixed(0)} ms)` : ''));
});

test('4, 9. Stop ends a reply mid-answer, the next question is answered; screenshot of the chat', { timeout: 2 * GEN_TIMEOUT }, async () => {
  await setSettings(page, { 'max-tokens': 64 });
  const stopped = await ask('Tell me more about Paris.', {
    onStreaming: async (reply) => {
      await page.waitForFunction((el) => el.querySelector('.msg-body').textContent.length > 0, await reply.elementHandle(), { timeout: GEN_TIMEOUT });
      assert.equal(await page.isEnabled(byId('stop')), true);
      await page.click(byId('stop'));
    },
  });
  assert.equal(stopped.finish, 'abort');
  assert.ok(stopped.usage.completion_tokens >= 1 && stopped.usage.completion_tokens < 64, JSON.stringify(stopped.usage));
  assert.match(stopped.stats, /stopped/);
  assert.equal(stopped.lastRole, 'assistant');
  assert.equal(await page.isDisabled(byId('stop')), true);

  await setSettings(page, { 'max-tokens': 6 });
  const again = await ask('Thank you!');
  assert.ok(['stop', 'length'].includes(again.finish), again.finish);
  assert.ok(again.shown.trim().length > 0, 'the next answer is not empty');
  assert.ok(again.usage.prompt_tokens_details.cached_tokens > 0, 'the follow-up reused the KV cache');
  assert.equal(await page.textContent(byId('error')), '');
  assert.equal(await page.locator(byId('message-assistant')).count(), 3);

  await fsp.mkdir(ARTIFACTS, { recursive: true });
  await page.evaluate(() => document.querySelector('.sidebar').scrollTo(0, 0));
  const shot = path.join(ARTIFACTS, 'demo-chat.png');
  await page.screenshot({ path: shot });
  assert.ok((await fsp.stat(shot)).size > 10_000);
});

test('5. New chat clears the conversation', async () => {
  await page.click(byId('new-chat'));
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="message-assistant"]').length === 0);
  assert.deepEqual(await page.evaluate(() => window.llamaDemo.messages), []);
  assert.equal(await page.textContent(byId('stats')), '');
  assert.equal(await state(), 'ready');
});

test('Benchmark this device: the panel times a fixed prefill and decode on the loaded model in the worker, shows each kernel, and copies JSON that carries the per-kernel times', { timeout: GEN_TIMEOUT }, async () => {
  assert.equal(await page.isEnabled(byId('bench-run')), true);
  await page.fill(byId('bench-prompt'), '8');
  await page.fill(byId('bench-decode'), '4');
  await page.click(byId('bench-run'));
  assert.equal(await state(), 'benchmarking');
  assert.equal(await page.isDisabled(byId('send')), true);
  assert.equal(await page.isDisabled(byId('load')), true);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: GEN_TIMEOUT });
  assert.equal(await page.textContent(byId('error')), '');
  const shown = await page.evaluate(() => ({
    summary: document.querySelector('[data-testid="bench-summary"]').textContent,
    rows: [...document.querySelectorAll('[data-testid="bench-kernels"] tr')].map((tr) => [...tr.children].map((c) => c.textContent)),
    json: document.querySelector('[data-testid="bench-json"]').textContent,
    last: window.llamaDemo.lastBenchmark,
    info: window.llamaDemo.engine.info,
  }));
  const r = JSON.parse(shown.json);
  assert.deepEqual(r, shown.last);
  assert.deepEqual([r.workload.promptTokens, r.workload.decodeTokens, r.prefill.tokens, r.decode.tokens], [8, 4, 8, 4]);
  assert.deepEqual([r.adapter, r.features, r.limits], [shown.info.adapter, shown.info.features, shown.info.limits]);
  assert.ok(r.decode.tokensPerSecond > 0 && r.prefill.tokensPerSecond > 0 && r.decode.weightGBPerSecond > 0, shown.json);
  assert.match(shown.summary, /Prefill[\d.]+ tok\/s \(8 tokens\)/);
  assert.match(shown.summary, /Decode[\d.]+ tok\/s · [\d.]+ ms\/token \(4 tokens\)/);
  assert.match(shown.summary, /Kernelsf32 · subgroups 4 · f32 products/);
  // SwiftShader has timestamp-query: the JSON and the table carry each kernel's time.
  assert.ok(Array.isArray(r.profile) && r.profile.length >= 15, shown.json);
  assert.deepEqual(shown.rows[0], ['kernel', 'ms/token', '%', 'GB/s']);
  assert.deepEqual(shown.rows.slice(1).map((row) => row[0]), r.profile.map((k) => k.kernel));
  for (const k of r.profile) assert.ok(Number.isFinite(k.msPerToken) && k.msPerToken >= 0, JSON.stringify(k));
  assert.ok(r.profile.find((k) => k.kernel === 'ffn_down').weightGBPerSecond > 0);
  await fsp.mkdir(ARTIFACTS, { recursive: true });
  await page.locator('section[aria-labelledby="bench-h"]').screenshot({ path: path.join(ARTIFACTS, 'demo-benchmark.png') });
  // Copy JSON puts the same report on the clipboard.
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(server.url).origin });
  await page.click(byId('bench-copy'));
  await page.waitForFunction(() => document.querySelector('[data-testid="bench-copy"]').textContent === 'Copied', null, { timeout: 5_000 });
  assert.deepEqual(JSON.parse(await page.evaluate(() => navigator.clipboard.readText())), r);
  // The benchmark emptied the KV cache, not the chat: the next question is answered as before.
  await setSettings(page, { 'max-tokens': MAX_TOKENS });
  const again = await ask(QUESTION);
  assert.equal(again.raw, nativeQuestion.text);
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, 0);
  await page.click(byId('new-chat'));
  await page.waitForFunction(() => window.llamaDemo.messages.length === 0);
});

test('6, 7. the model loads from local shard files through the file input, with subgroups switched off; model output with HTML shows as text', { timeout: 2 * GEN_TIMEOUT }, async () => {
  await setSettings(page, { 'max-tokens': INJECTION_TOKENS });
  // The setting takes effect at this load: the fallback kernels, as the native CLI's --no-subgroups.
  await page.uncheck(byId('use-subgroups'));
  await page.setInputFiles(byId('file-input'), shards.map((n) => path.join(shardDir, n)));
  await page.waitForFunction(() => document.body.dataset.state === 'loading', null, { timeout: 10_000 });
  await page.waitForFunction(() => ['ready', 'idle'].includes(document.body.dataset.state), null, { timeout: GEN_TIMEOUT });
  assert.equal(await page.textContent(byId('error')), '');
  assert.match(await page.textContent(byId('model-info')), /3 local files/);
  assert.match(await page.textContent(byId('device-info')), /subgroups\s*yes · engine does without/);

  const r = await ask(INJECTION);
  assert.equal(r.raw, nativeInjection.text, 'the page and the native CLI greedy answers differ');
  assert.ok(r.raw.includes('<img src=x onerror=alert(1)>'), `the model repeated the tag: ${JSON.stringify(r.raw)}`);
  // Shown as text, in the reply and in the user's message; no element was created from it.
  assert.ok(r.shown.includes('<img src=x onerror=alert(1)>'), r.shown);
  assert.ok(!/<img/i.test(r.html), r.html);
  const dom = await page.evaluate(() => ({
    imgs: document.querySelectorAll('#messages img, #messages script').length,
    user: document.querySelector('[data-testid="message-user"] .msg-body').textContent,
  }));
  assert.deepEqual(dom, { imgs: 0, user: INJECTION });
  assert.deepEqual(dialogs, [], 'no script ran');
});

test('Markdown: escape-first rendering, so HTML in model output never becomes markup', async () => {
  const evil = '<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> '
    + '[click](javascript:window.__pwned=3) [x](https://e.com/" onmouseover="window.__pwned=4) <a href="javascript:1">a</a>';
  const html = renderMarkdown(evil);
  assert.ok(!/<(script|img|a )[^>]*(javascript|onerror|onmouseover)/i.test(html), html);
  assert.ok(!/<script|<img/i.test(html), html);
  assert.equal(
    renderMarkdown('# Hi\n\n**bold** *em* `a<b>` [ok](https://example.com/?a=1&b=2)\n\n- one\n- two\n\n```js\nlet x = "<i>";\n```'),
    '<h1>Hi</h1><p><strong>bold</strong> <em>em</em> <code>a&lt;b&gt;</code> '
    + '<a href="https://example.com/?a=1&amp;b=2" target="_blank" rel="noopener noreferrer">ok</a></p>'
    + '<ul><li>one</li><li>two</li></ul><pre><code class="language-js">let x = &quot;&lt;i&gt;&quot;;</code></pre>',
  );
  // The same text through the page's message path (the renderer streamed replies use).
  const r = await page.evaluate((text) => {
    const el = window.llamaDemo.showAssistantMessage(text + '\n\n**bold** and [safe](https://example.com)');
    const links = Array.from(el.querySelectorAll('a')).map((a) => ({ href: a.getAttribute('href'), rel: a.rel }));
    const out = {
      tags: Array.from(el.querySelectorAll('.msg-body *')).map((e) => e.tagName.toLowerCase()),
      links,
      text: el.querySelector('.msg-body').textContent,
      pwned: window.__pwned ?? null,
    };
    el.remove();
    return out;
  }, evil);
  assert.deepEqual([...new Set(r.tags)].sort(), ['a', 'p', 'strong']);
  assert.deepEqual(r.links, [{ href: 'https://e.com/', rel: 'noopener noreferrer' }, { href: 'https://example.com', rel: 'noopener noreferrer' }]);
  assert.ok(r.text.includes('<script>window.__pwned = 1</script>') && r.text.includes('<img src=x onerror="window.__pwned = 2">'), r.text);
  assert.equal(r.pwned, null);
});

test('without WebGPU the page says so and offers no load', async () => {
  const p = await newPage({
    init: () => {
      Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });
      if (globalThis.WorkerNavigator) Object.defineProperty(WorkerNavigator.prototype, 'gpu', { get: () => undefined });
    },
  });
  try {
    assert.equal(await state(p), 'unsupported');
    assert.match(await p.textContent(byId('error')), /^NO_WEBGPU: WebGPU is not available/);
    assert.match(await p.textContent(byId('device-info')), /WebGPU\s*not available/);
    assert.equal(await p.isDisabled(byId('load')), true);
    assert.equal(await p.isDisabled(byId('send')), true);
  } finally {
    await p.close();
  }
});

test('a model too large for the device is refused before anything is downloaded', async () => {
  const p = await newPage({ init: () => Object.defineProperty(Navigator.prototype, 'deviceMemory', { get: () => 2 }) });
  try {
    const before = requests.length;
    await p.selectOption(byId('known-models'), 'llama-3.1-8b');
    assert.match(await p.inputValue(byId('model-url')), /^https:\/\/huggingface\.co\/.*Llama-3\.1-8B-Instruct-Q4_K_M(-00001-of-\d{5})?\.gguf$/);
    assert.equal(await p.getAttribute(byId('fit'), 'data-fits'), 'false');
    assert.match(await p.textContent(byId('fit')), /Will probably not fit: needs ≈ [\d.]+ GB, more than .*2 GB of memory this device reports/);
    await p.click(byId('load'));
    assert.match(await p.textContent(byId('error')), /^MODEL_TOO_LARGE: .*Nothing was downloaded/);
    assert.equal(await p.isVisible(byId('load-anyway')), true);
    assert.equal(await state(p), 'idle');
    assert.deepEqual(requests.slice(before).filter((u) => !u.startsWith(server.url)), []);
    // The small model fits the same device.
    await p.selectOption(byId('known-models'), 'smollm2-135m-local');
    assert.equal(await p.getAttribute(byId('fit'), 'data-fits'), 'true');
    assert.equal(await p.isVisible(byId('load-anyway')), false);
  } finally {
    await p.close();
  }
});

test('Cancel stops a load in progress', { timeout: 60_000 }, async () => {
  // The shards stall after 20 MB each (the fetch layer hands over 4 MiB chunks), so the load is
  // still downloading when Cancel is pressed.
  server.setFaults({ stall: [{ path: '/slow/*', afterBytes: 20_000_000, times: -1 }] });
  const p = await newPage({ query: `?model=${encodeURIComponent(`/slow/${shards[0]}`)}` });
  try {
    assert.match(await p.inputValue(byId('model-url')), /\/slow\//);
    await p.click(byId('load'));
    await p.waitForFunction(() => Number(document.querySelector('[data-testid="progress"]').dataset.loaded) > 0, null, { timeout: 30_000 });
    assert.equal(await state(p), 'loading');
    const t0 = Date.now();
    await p.click(byId('cancel'));
    await p.waitForFunction(() => document.body.dataset.state === 'idle', null, { timeout: 10_000 });
    const ms = Date.now() - t0;
    assert.ok(ms < 5000, `cancel took ${ms} ms`);
    console.log(`cancel → idle in ${ms} ms`);
    assert.equal(await p.isHidden(byId('progress')), true);
    assert.match(await p.textContent(byId('notice')), /Load cancelled/);
    assert.equal(await p.textContent(byId('error')), '');
  } finally {
    server.clearFaults();
    await p.close();
  }
});

test('the site root leads to the demo', async () => {
  const p = await browser.context.newPage();
  try {
    await p.goto(server.url);
    await p.waitForURL(/\/demo\/$/, { timeout: 10_000 });
  } finally {
    await p.close();
  }
});

test('every request stayed on the page\'s origin, and no page threw', () => {
  assert.deepEqual(pageErrors, []);
  const foreign = requests.filter((u) => !u.startsWith(server.url) && !u.startsWith('data:') && !u.startsWith('blob:'));
  assert.deepEqual(foreign, []);
  assert.ok(requests.some((u) => u.endsWith('/package/wasm/llama_webgpu_bg.wasm')), 'the package loaded its wasm from the origin');
});
