// The npm package's engine in headless Chromium (WebGPU on SwiftShader: no shader-f16, subgroups of
// 4, so the f32 subgroup kernels): loading SmolLM2 from a Range-capable local server as llama.cpp
// split shards, greedy output identical to the native CLI on the same kernel path (H.nativeGreedy), streaming,
// abort, KV reuse across turns, the offline second load, and worker mode.
// Needs `scripts/build-web` and `cargo build --release` first. Run: node --test tests/web/engine.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import fsp from 'node:fs/promises';
import * as H from './harness.mjs';

const PKG = H.PACKAGE;
const { CLI } = H;
const QUESTION = 'What is the capital of France?';

let session; // the test server, browser and page with the package (H.startEngineTest); shards in session.dir
let shardUrl;
let shardCount;
let loaded;
let native;

before(async () => {
  session = await H.startEngineTest({ scratch: '/shards/' });
  // llama.cpp's split layout (metadata in the first shard, split.* keys in all), ~35 MB each.
  execFileSync(CLI, ['split', H.DEFAULT_MODEL, path.join(session.dir, 'smol'), '--split-max-size', '35M'], { stdio: 'pipe' });
  const names = (await fsp.readdir(session.dir)).sort();
  shardCount = names.length;
  assert.ok(shardCount >= 3, `expected several shards, got ${names}`);
  shardUrl = `/shards/${names[0]}`;
  // One in-page engine (no worker, no cache) shared by the tests below: SwiftShader runs the
  // 135M model at about 1 token/s, so prompts share prefixes (KV reuse) and answers are short.
  loaded = await session.load('__engine', shardUrl, { contextSize: 512 });
  assert.ok(!loaded.thrown, JSON.stringify(loaded.thrown));
  native = H.nativeGreedy({ prompt: QUESTION, n: 12, chat: true });
});

after(() => session?.close());

test('split shards load in the page; greedy chat equals the native CLI; stats and usage', async () => {
  const r = await session.inPage(async (mod, q) => {
    const reply = await window.__engine.chat.completions.create({
      messages: [{ role: 'user', content: q }],
      temperature: 0,
      max_tokens: 12,
    });
    return { reply };
  }, QUESTION);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  Object.assign(r, loaded);
  assert.equal(r.info.features.shaderF16, false, 'SwiftShader has no shader-f16: the f32 path is under test');
  assert.equal(r.info.model.nVocab, 49152);
  assert.equal(r.info.model.source.length, shardCount, 'every shard was discovered from the first URL');
  const reply = r.reply;
  assert.equal(reply.object, 'chat.completion');
  assert.equal(reply.choices[0].message.role, 'assistant');
  assert.equal(reply.choices[0].message.content, native.text, 'browser and native greedy answers differ');
  assert.equal(reply.choices[0].finish_reason, native.finish_reason === 'stop' ? 'stop' : 'length');
  assert.equal(reply.usage.prompt_tokens, native.prompt_tokens.length);
  assert.equal(reply.usage.completion_tokens, native.tokens.length);
  for (const k of ['prefill_tokens_per_s', 'decode_tokens_per_s', 'time_to_first_token_ms']) {
    assert.ok(reply.usage.extra[k] > 0, `usage.extra.${k} = ${reply.usage.extra[k]}`);
  }
  // Progress: phases in order, totals right, about every 100 ms.
  const p = r.progress;
  assert.ok(p.length >= 3);
  const total = p.at(-1).totalBytes;
  assert.ok(total > 90e6 && p.at(-1).loadedBytes === total);
  assert.ok(p.some((e) => e.phase === 'download') && p.at(-1).phase === 'compile');
  assert.equal(p.at(-1).tensorsLoaded, p.at(-1).tensorsTotal);
  const gaps = [];
  for (let i = 1; i < p.length; i++) {
    assert.ok(p[i].loadedBytes >= p[i - 1].loadedBytes);
    gaps.push([p[i].t - p[i - 1].t, p[i - 1].phase]);
  }
  console.log(`progress: ${p.length} events; largest gaps (ms, phase):`, JSON.stringify([...gaps].sort((a, b) => b[0] - a[0]).slice(0, 5).map(([g, ph]) => [Math.round(g), ph])));
  // While bytes flow the engine reports every 100 ms (a timer) and after every 1 MiB it pushes.
  // The page's event loop itself stalls on a 2-core machine while the shards stream (the pushes
  // into the wasm, V8 compiling it, the local transfer), so every timer fires late then: a probe
  // found ticks up to 200 ms late (285 ms once in CI) while every push took < 30 ms. And the
  // local download lasts half a second here, a handful of reports. So the reports are counted
  // against a 100 ms timer of the page's own (session.load's `ticks`) over the same span: at
  // least as many reports as ticks, give or take one for the two timers' phase; and no gap is
  // long enough to mean a missed report.
  const flowingAt = [];
  for (let i = 1; i < p.length; i++) if (p[i - 1].phase !== 'compile') flowingAt.push([p[i - 1].t, p[i].t]);
  const flowing = flowingAt.map(([a, b]) => b - a).sort((a, b) => a - b);
  const [from, to] = [flowingAt[0][0], flowingAt.at(-1)[1]];
  const ticks = r.ticks.filter((t) => t >= from && t <= to).length;
  const reports = flowingAt.length + 1;
  console.log(`while bytes flowed (${(to - from).toFixed(0)} ms): ${reports} progress reports, ${ticks} ticks of the page's 100 ms timer; gaps ${JSON.stringify(flowing.map(Math.round))}`);
  assert.ok(reports >= ticks - 1, `${reports} progress reports while bytes flowed, against ${ticks} ticks of a 100 ms timer`);
  assert.ok(flowing.at(-1) < 500, `progress gaps while loading: ${JSON.stringify(flowing.slice(-3))}`);
  console.log(`load ${r.info.load.seconds.toFixed(1)} s (${(r.info.load.bytesPerSecond / 1e6).toFixed(0)} MB/s); `
    + `prefill ${reply.usage.extra.prefill_tokens_per_s.toFixed(1)} tok/s, decode ${reply.usage.extra.decode_tokens_per_s.toFixed(1)} tok/s; `
    + `wasm memory ${(r.info.load.wasmMemoryBytes / 2 ** 20).toFixed(0)} MiB`);
  // The README's bound: the shards stream through the wasm memory without ever being held whole.
  assert.ok(r.info.load.wasmMemoryBytes <= 20 * 2 ** 20, `peak wasm memory ${r.info.load.wasmMemoryBytes} bytes`);
});

test('streaming chat delivers chunks whose text equals the non-streamed answer, with usage last', async () => {
  const r = await session.inPage(async (mod, q) => {
    const engine = window.__engine;
    // The same conversation as the first test: the KV cache already holds the prompt.
    const req = { messages: [{ role: 'user', content: q }], temperature: 0, max_tokens: 5 };
    const full = await engine.chat.completions.create(req);
    const chunks = [];
    for await (const c of await engine.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } })) {
      chunks.push(c);
    }
    return { full, chunks };
  }, QUESTION);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const { full, chunks } = r;
  assert.ok(chunks.length > 3);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
  assert.equal(text, full.choices[0].message.content);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, full.usage.completion_tokens);
  assert.equal(chunks.at(-2).choices[0].finish_reason, full.choices[0].finish_reason);
});

test('KV reuse: a follow-up turn prefills only the new tokens and answers as a fresh run does', async () => {
  const r = await session.inPage(async (mod, q) => {
    const engine = window.__engine;
    const opts = { temperature: 0, max_tokens: 6 };
    const turn1 = [{ role: 'user', content: q }];
    const a = await engine.chat.completions.create({ ...opts, messages: turn1 });
    const turn2 = [...turn1, a.choices[0].message, { role: 'user', content: 'And of Italy?' }];
    const b = await engine.chat.completions.create({ ...opts, messages: turn2 });
    await engine.resetChat();
    const fresh = await engine.chat.completions.create({ ...opts, messages: turn2 });
    return { a, b, fresh };
  }, QUESTION);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const cached = r.b.usage.prompt_tokens_details.cached_tokens;
  assert.ok(cached >= r.a.usage.prompt_tokens, `turn 2 reused ${cached} cached tokens`);
  assert.equal(r.fresh.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(r.b.choices[0].message.content, r.fresh.choices[0].message.content);
});

test('abort mid-generation rejects with ABORTED, interrupt() ends with finish_reason abort, and the next request works', async () => {
  const r = await session.inPage(async () => {
    const engine = window.__engine;
    const req = { prompt: 'Once upon a time', temperature: 0, max_tokens: 200 };
    const ac = new AbortController();
    let n = 0;
    let aborted = null;
    try {
      for await (const c of await engine.completions.create({ ...req, stream: true, signal: ac.signal })) {
        if (++n === 4) ac.abort();
      }
    } catch (e) {
      aborted = { code: e.code, n };
    }
    const p = engine.completions.create(req);
    // interrupt() ends the generation that is running: on a slow runner the aborted stream's
    // last step can still hold the queue when a single timer fires, so keep interrupting
    // until this request ends.
    const timer = setInterval(() => engine.interrupt(), 500);
    const interrupted = await p.finally(() => clearInterval(timer));
    const after = await engine.completions.create({ ...req, max_tokens: 3 });
    return { aborted, interrupted, after };
  });
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.deepEqual(r.aborted, { code: 'ABORTED', n: 4 });
  assert.equal(r.interrupted.choices[0].finish_reason, 'abort');
  assert.ok(r.interrupted.usage.completion_tokens < 200);
  assert.equal(r.after.choices[0].finish_reason, 'length');
  assert.ok(r.after.choices[0].text.length > 0);
});

/**
 * In the page: the greedy first token after a prompt, then the same with that token banned by
 * `-Infinity` and by OpenAI's `-100`, and the typed error `+Infinity` gets. Passed to the page as
 * source, so the in-thread and the worker engine run the same check.
 */
const BAN_CHECK = `async (engine) => {
  const first = async (opts) => {
    const ids = [];
    for await (const t of engine.generate('The capital of France is', { temperature: 0, max_tokens: 1, ...opts })) ids.push(t.id);
    return ids[0];
  };
  const top = await first({});
  const banned = await first({ logit_bias: { [top]: -Infinity } });
  const hundred = await first({ logit_bias: { [top]: -100 } });
  let inf = 'no error';
  try { await first({ logit_bias: { [top]: Infinity } }); } catch (e) { inf = { code: e.code, message: e.message }; }
  return { top, banned, hundred, inf };
}`;

function assertBans(b) {
  assert.ok(Number.isInteger(b.top), JSON.stringify(b));
  assert.notEqual(b.banned, b.top, 'a -Infinity bias bans the token');
  assert.equal(b.hundred, b.banned, 'a -100 bias bans it as -Infinity does');
  assert.equal(b.inf.code, 'INVALID_SAMPLING_PARAMS', JSON.stringify(b.inf));
  assert.match(b.inf.message, new RegExp(`token ${b.top}\\b`));
}

test('completions, generate, logprobs, typed errors and logit_bias bans', async () => {
  const r = await session.inPage(async (mod, check) => {
    const engine = window.__engine;
    const c = await engine.completions.create({ prompt: 'The capital of France is', temperature: 0, max_tokens: 4, logprobs: true, top_logprobs: 3 });
    const pieces = [];
    for await (const t of engine.generate('The capital of France is', { temperature: 0, max_tokens: 4 })) pieces.push(t);
    const errs = {};
    const code = async (name, f) => {
      try { await f(); errs[name] = 'no error'; } catch (e) { errs[name] = e.code; }
    };
    await code('temperature', () => engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], temperature: -1 }));
    await code('messages', () => engine.chat.completions.create({ messages: [] }));
    await code('tooLong', () => engine.completions.create({ prompt: 'word '.repeat(2000) }));
    const bans = await (0, eval)(check)(engine);
    return { c, pieces, errs, bans };
  }, BAN_CHECK);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const ch = r.c.choices[0];
  assert.equal(r.c.object, 'text_completion');
  assert.equal(ch.text, r.pieces.map((p) => p.text).join(''));
  assert.equal(r.pieces.length, 4);
  assert.equal(ch.logprobs.content.length, 4);
  for (const lp of ch.logprobs.content) {
    assert.ok(lp.logprob <= 0 && lp.top_logprobs.length === 3);
    // Greedy: the chosen token is the most likely one.
    assert.ok(Math.abs(lp.top_logprobs[0].logprob - lp.logprob) < 1e-5, JSON.stringify(lp));
  }
  assert.deepEqual(r.errs, { temperature: 'INVALID_SAMPLING_PARAMS', messages: 'INVALID_PROMPT', tooLong: 'PROMPT_TOO_LONG' });
  assertBans(r.bans);
});

test('benchmark(): a fixed prefill and decode with each kernel timed, as plain data; typed errors; the chat afterwards answers as the native CLI', async () => {
  const r = await session.inPage(async (mod, q) => {
    const engine = window.__engine;
    const errs = {};
    const code = async (name, f) => {
      try { await f(); errs[name] = 'no error'; } catch (e) { errs[name] = e.code; }
    };
    await code('zero', () => engine.benchmark({ decodeTokens: 0 }));
    await code('fraction', () => engine.benchmark({ promptTokens: 2.5 }));
    await code('string', () => engine.benchmark({ profileSteps: '4' }));
    await code('notObject', () => engine.benchmark(7));
    await code('context', () => engine.benchmark({ promptTokens: 500, decodeTokens: 10, profileSteps: 4 }));
    const b = await engine.benchmark({ promptTokens: 6, decodeTokens: 3, profileSteps: 2 });
    const plain = JSON.parse(JSON.stringify(b));
    const noProfile = await engine.benchmark({ promptTokens: 2, decodeTokens: 1, profileSteps: 0 });
    const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: q }], temperature: 0, max_tokens: 12 });
    return { errs, b, plain, noProfile, reply: reply.choices[0].message.content, cached: reply.usage.prompt_tokens_details.cached_tokens, info: engine.info };
  }, QUESTION);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.deepEqual(r.errs, { zero: 'INVALID_ARGUMENT', fraction: 'INVALID_ARGUMENT', string: 'INVALID_ARGUMENT', notObject: 'INVALID_ARGUMENT', context: 'INVALID_ARGUMENT' });
  const b = r.b;
  assert.deepEqual(r.plain, b, 'the result is plain data');
  assert.deepEqual([b.workload, b.prefill.tokens, b.decode.tokens], [{ promptTokens: 6, decodeTokens: 3, profileSteps: 2 }, 6, 3]);
  assert.deepEqual([b.adapter, b.features, b.limits], [r.info.adapter, r.info.features, r.info.limits]);
  assert.equal(b.model.file, r.info.model.source[0].split('/').pop());
  assert.equal(b.model.nLayer, r.info.model.nLayer);
  for (const x of [b.prefill.tokensPerSecond, b.decode.tokensPerSecond, b.decode.weightGBPerSecond]) assert.ok(x > 0 && Number.isFinite(x), JSON.stringify(b));
  assert.ok(Math.abs(b.decode.msPerToken - (1000 * b.decode.seconds) / 3) < 1e-9);
  assert.ok(b.decode.dispatchesPerToken >= 7 * b.model.nLayer, JSON.stringify(b.decode));
  // The bytes a decode step reads, as the native CLI counts them from the GGUF's tensors.
  const nativeBench = H.nativeJson(['bench', '-m', H.DEFAULT_MODEL, '--prompt-len', '1', '-n', '1', '--json']);
  assert.equal(b.decode.weightBytesPerToken, nativeBench.weight_bytes_per_token);
  // SwiftShader offers timestamp-query: every kernel of a decode step is timed.
  assert.equal(b.features.timestampQuery, true);
  const names = b.profile.map((k) => k.kernel);
  for (const k of ['embedding', 'attn_norm', 'attn_q', 'attn_k', 'attn_v', 'rope', 'attention', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down', 'output_norm', 'output', 'argmax']) {
    assert.ok(names.includes(k), `${k} missing from ${names}`);
  }
  assert.ok(Math.abs(b.profile.reduce((a, k) => a + k.percent, 0) - 100) < 1e-6);
  for (const k of b.profile) assert.ok(k.msPerToken >= 0, JSON.stringify(k));
  assert.ok(b.profile.reduce((a, k) => a + k.msPerToken, 0) > 0);
  const products = b.profile.filter((k) => k.weightBytes !== null);
  assert.deepEqual(products.map((k) => k.kernel).sort(), ['attn_k', 'attn_norm', 'attn_output', 'attn_q', 'attn_v', 'ffn_down', 'ffn_gate', 'ffn_norm', 'ffn_up', 'output', 'output_norm']);
  assert.equal(products.reduce((a, k) => a + k.weightBytes, 0), b.decode.weightBytesPerToken);
  assert.ok(b.profile.find((k) => k.kernel === 'ffn_down').weightGBPerSecond > 0);
  assert.equal(r.noProfile.profile, null);
  // The benchmark emptied the KV cache: the chat prefills afresh and answers as before.
  assert.equal(r.cached, 0);
  assert.equal(r.reply, native.text);
});

test('worker mode: the same API through a Web Worker, the same greedy answer as the native CLI, logit_bias bans', async () => {
  const r = await session.inPage(async (mod, url, q, check) => {
    const engine = await mod.LlamaEngine.load(url, { cache: false, contextSize: 512 });
    const req = { messages: [{ role: 'user', content: q }], temperature: 0, max_tokens: 12 };
    const reply = await engine.chat.completions.create(req);
    const chunks = [];
    for await (const c of await engine.chat.completions.create({ ...req, stream: true })) chunks.push(c);
    const ids = await engine.tokenize('Hello');
    const text = await engine.detokenize(ids, { renderSpecial: true });
    const bans = await (0, eval)(check)(engine);
    await engine.unload();
    return {
      reply: reply.choices[0].message.content,
      streamed: chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''),
      ids,
      text,
      bans,
    };
  }, shardUrl, QUESTION, BAN_CHECK);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.reply, native.text);
  assert.equal(r.streamed, native.text);
  // SmolLM2 adds no BOS (tokenizer.ggml.add_bos_token is false).
  assert.deepEqual([r.ids.length, r.text], [1, 'Hello'], JSON.stringify(r));
  assertBans(r.bans);
});

test('cache: a cut connection resumes, the second load works offline, a corrupted entry is refetched', async () => {
  const names = (await fsp.readdir(session.dir)).sort();
  session.server.clearLog();
  session.server.setFaults({ cut: [{ path: `/shards/${names[1]}`, afterBytes: 10_000_000, times: 1 }] });
  // A short plain prompt keeps each of the three loads' checks to a few SwiftShader steps.
  const load = (url) => session.inPage(async (mod, u, prompt) => {
    const warnings = [];
    const engine = await mod.LlamaEngine.load(u, { worker: false, contextSize: 64, onWarning: (w) => warnings.push(w.code) });
    const ids = [];
    for await (const t of engine.generate(prompt, { temperature: 0, max_tokens: 3 })) ids.push(t.id);
    const cached = await mod.LlamaEngine.hasModelInCache(u);
    await engine.unload();
    return { ids, load: engine.info.load, warnings, cached };
  }, url, 'The capital of France is');
  const want = H.nativeGreedy({ prompt: 'The capital of France is', n: 3 }).tokens;
  const first = await load(shardUrl);
  assert.ok(!first.thrown, JSON.stringify(first.thrown));
  session.server.clearFaults();
  const resumed = session.server.log().filter((e) => e.path === `/shards/${names[1]}` && e.status === 206);
  assert.ok(resumed.length >= 1, `no Range resume in ${JSON.stringify(session.server.log().slice(-8))}`);
  assert.deepEqual(first.ids, want);
  assert.equal(first.cached, true);

  // Offline: the same origin with nothing listening.
  await session.server.close();
  try {
    const offline = await load(shardUrl);
    assert.ok(!offline.thrown, JSON.stringify(offline.thrown));
    assert.ok(offline.load.fromCacheBytes > 90e6, `only ${offline.load.fromCacheBytes} bytes from the cache`);
    assert.deepEqual(offline.ids, want);

    // Flip one byte of a cached chunk: it is detected, refetched, and the answer is unchanged.
    const flipped = await session.page.evaluate(async () => {
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('llama-webgpu-cache-v1');
      for await (const [, dir] of root.entries()) {
        if (dir.kind !== 'directory') continue;
        const fh = await dir.getFileHandle('c00000');
        const bytes = new Uint8Array(await (await fh.getFile()).arrayBuffer());
        bytes[123456] ^= 0xff;
        const w = await fh.createWritable();
        await w.write(bytes);
        await w.close();
        return true;
      }
      return false;
    });
    assert.ok(flipped);
  } finally {
    await session.restartServer();
  }
  const repaired = await load(shardUrl);
  assert.ok(!repaired.thrown, JSON.stringify(repaired.thrown));
  assert.ok(repaired.warnings.includes('CACHE_CORRUPT'), JSON.stringify(repaired.warnings));
  assert.deepEqual(repaired.ids, want);
});

test('wasm memory stays bounded while a 1.3 GB model streams into the GPU', async () => {
  const dir = await H.tmpDir('llama-webgpu-big-');
  try {
    execFileSync(CLI, ['synth', '-o', path.join(dir, 'big.gguf'), '--shape', '1b', '--type', 'q8_0'], { stdio: 'pipe' });
    const size = (await fsp.stat(path.join(dir, 'big.gguf'))).size;
    assert.ok(size >= 2 ** 30, `${size} bytes`);
    const big = await H.startTestServer({ mounts: { '/big/': dir } });
    try {
      // A page on the big server's origin, so fetches are same-origin.
      const p2 = await H.openPage(session.browser, big, { modules: [PKG], reuse: false });
      const r = await p2.evaluate(async () => {
        const mod = window.__mods['/www/package/src/index.js'];
        try {
          // Loading is what the bound is about; a 1B decode step on SwiftShader takes a minute.
          const engine = await mod.LlamaEngine.load('/big/big.gguf', { worker: false, cache: false, contextSize: 64 });
          const info = engine.info;
          const ids = await engine.tokenize('Hello world');
          await engine.unload();
          return { load: info.load, size: info.model.sizeBytes, ids };
        } catch (e) {
          return { thrown: { code: e.code, message: e.message } };
        }
      });
      await p2.close();
      assert.ok(!r.thrown, JSON.stringify(r.thrown));
      assert.equal(r.size, size);
      assert.deepEqual(r.ids, [128000, 9906, 1917], 'the real Llama 3 vocabulary tokenizes');
      const mib = r.load.wasmMemoryBytes / 2 ** 20;
      console.log(`1.3 GB model: load ${r.load.seconds.toFixed(1)} s (${(r.load.bytesPerSecond / 1e6).toFixed(0)} MB/s), peak wasm memory ${mib.toFixed(0)} MiB`);
      // 64 MiB plus the metadata (the Llama 3 vocabulary: about 8 MB as GGUF strings).
      assert.ok(mib <= 64 + 16, `wasm memory grew to ${mib.toFixed(0)} MiB`);
    } finally {
      await big.close();
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('abort mid-load rejects with ABORTED and frees the device; the next load works; cache helpers', async () => {
  const r = await session.inPage(async (mod, url) => {
    const ac = new AbortController();
    let code = null;
    const t0 = performance.now();
    let abortedAt = 0;
    try {
      await mod.LlamaEngine.load(url, {
        worker: false,
        cache: false,
        signal: ac.signal,
        onProgress: (p) => {
          if (!abortedAt && p.loadedBytes > 30e6) {
            abortedAt = performance.now();
            ac.abort();
          }
        },
      });
    } catch (e) {
      code = e.code;
    }
    const latency = performance.now() - (abortedAt || t0);
    const engine = await mod.LlamaEngine.load(url, { worker: false, cache: true, contextSize: 64 });
    const out = [];
    for await (const t of engine.generate('Hello', { temperature: 0, max_tokens: 1 })) out.push(t.id);
    await engine.unload();
    let unloaded = null;
    try {
      await engine.tokenize('x');
    } catch (e) {
      unloaded = e.code;
    }
    const before = await mod.LlamaEngine.hasModelInCache(url);
    await mod.LlamaEngine.deleteModelFromCache(url);
    const after = await mod.LlamaEngine.hasModelInCache(url);
    return { code, latency, out, unloaded, before, after, supported: await mod.LlamaEngine.isSupported() };
  }, shardUrl);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.code, 'ABORTED');
  assert.ok(r.latency < 2000, `abort took ${r.latency} ms`);
  assert.equal(r.out.length, 1);
  assert.equal(r.unloaded, 'NOT_LOADED');
  assert.deepEqual([r.before, r.after], [true, false], 'the cached load is in the cache until deleted');
  assert.equal(r.supported, true);
});

test('without WebGPU, load() fails with NO_WEBGPU and isSupported() is false', async () => {
  const p2 = await session.browser.context.newPage();
  await p2.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });
    Object.defineProperty(WorkerNavigator.prototype, 'gpu', { get: () => undefined });
  });
  await p2.goto(new URL('/tests/web/pages/index.html', session.server.url).href);
  const r = await p2.evaluate(async (pkg) => {
    const mod = await import(pkg);
    const supported = await mod.LlamaEngine.isSupported();
    const codes = [];
    for (const worker of [false, true]) {
      try {
        await mod.LlamaEngine.load('/models/SmolLM2-135M-Instruct.Q4_1.gguf', { worker, cache: false });
        codes.push('loaded');
      } catch (e) {
        codes.push(e.code + ': ' + e.message);
      }
    }
    return { supported, codes };
  }, PKG);
  await p2.close();
  assert.equal(r.supported, false);
  for (const c of r.codes) assert.match(c, /^NO_WEBGPU: .*WebGPU/);
});

test('concurrent requests run in order, never interleaved', async () => {
  const r = await session.inPage(async () => {
    const engine = window.__engine;
    const events = [];
    const run = async (label, prompt) => {
      for await (const c of await engine.completions.create({ prompt, temperature: 0, max_tokens: 3, stream: true })) {
        if (c.choices[0]?.text) events.push(label);
      }
      events.push(`${label}:end`);
    };
    await Promise.all([run('a', 'One, two,'), run('b', 'Red, green,')]);
    return events;
  });
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const firstB = r.indexOf('b');
  assert.ok(firstB > r.indexOf('a:end'), `interleaved: ${r}`);
});

test('a lost GPU device fails the request with DEVICE_LOST, and reload() recovers', async () => {
  const want = H.nativeGreedy({ prompt: 'The capital of France is', n: 3 }).tokens;
  const r = await session.inPage(async () => {
    const engine = window.__engine;
    engine._core._engine.destroyDeviceForTesting();
    let lost = null;
    try {
      await engine.completions.create({ prompt: 'Hello', max_tokens: 2 });
      lost = 'no error';
    } catch (e) {
      lost = `${e.code}: ${e.message}`;
    }
    await engine.reload();
    const ids = [];
    for await (const t of engine.generate('The capital of France is', { temperature: 0, max_tokens: 3 })) ids.push(t.id);
    return { lost, ids };
  });
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.match(r.lost, /^DEVICE_LOST: /);
  assert.deepEqual(r.ids, want);
});
