// Running out of GPU memory and out of context in the browser (headless Chromium, WebGPU on
// SwiftShader, whose maxBufferSize and maxStorageBufferBindingSize are 1 GiB and which refuses a
// 1 GiB allocation with VK_ERROR_OUT_OF_DEVICE_MEMORY):
// - a synthetic tiny model at a context whose KV cache layers are 1 GiB each: the device refuses
//   the first one, the load rejects with OUT_OF_MEMORY, the figures in the message and in
//   `details`, in the page and through the worker; then the same model loads at a small context
//   and generates;
// - at a context whose layers are over the limit: OUT_OF_MEMORY naming the largest that fits;
// - both refusals come from the memory plan at the first header: the server stalls every
//   download after the header, and the loads still reject (instead of waiting for the weights);
// - without contextSize, the context is the largest the device's limits allow (at most 4096),
//   and `info.model.memory` gives the plan;
// - SmolLM2 with a small contextSize: chat and text completions, streamed or not, that reach the
//   end of the context finish with 'length' and prompt + completion = contextSize, and the next
//   requests reuse the KV cache correctly.
// Needs `scripts/build-web` and `cargo build --release` first. Run: node --test tests/web/limits.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import * as H from './harness.mjs';

const GiB = 2 ** 30;

let session; // the test server, browser and page with the package (H.startEngineTest)

before(async () => {
  session = await H.startEngineTest({ scratch: '/limits/' });
  execFileSync(H.CLI, ['synth', '-o', path.join(session.dir, 'tiny.gguf'), '--shape', 'tiny', '--type', 'q4_0', '--context', String(2 ** 22)], { stdio: 'pipe' });
});

after(() => session?.close());

// Past the header (~8 MiB of Llama 3 vocabulary), before most of the ~44 MiB of weights.
const STALL = { stall: [{ path: '/limits/tiny.gguf', afterBytes: 16 << 20, times: -1 }] };

test('the device refusing a KV cache buffer: OUT_OF_MEMORY at the first header with the figures, then a small context loads', async () => {
  session.server.setFaults(STALL);
  const r = await session.inPage(async (mod) => {
    const out = {};
    for (const worker of [false, true]) {
      try {
        await mod.LlamaEngine.load('/limits/tiny.gguf', { worker, cache: false, contextSize: 2 ** 21 });
        out[worker] = 'loaded';
      } catch (e) {
        out[worker] = { code: e.code, message: e.message, details: e.details, isLlamaError: e instanceof mod.LlamaError };
      }
    }
    await fetch('/__faults/clear', { method: 'POST' });
    const engine = await mod.LlamaEngine.load('/limits/tiny.gguf', { worker: false, cache: false, contextSize: 64 });
    const ids = [];
    for await (const t of engine.generate('Hello world', { temperature: 0, max_tokens: 2 })) ids.push(t.id);
    const limits = engine.info.limits;
    await engine.unload();
    return { out, ids, limits };
  });
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  console.log(r.out.false.message);
  assert.equal(r.limits.maxStorageBufferBindingSize, GiB, 'SwiftShader: 1 GiB, so a KV layer of 1 GiB is within the limits');
  for (const e of [r.out.false, r.out.true]) {
    assert.equal(e.code, 'OUT_OF_MEMORY', JSON.stringify(e));
    assert.ok(e.isLlamaError);
    const d = e.details;
    assert.equal(d.overLimit, null);
    assert.match(d.deviceMessage, /OUT_OF_DEVICE_MEMORY|memory/i);
    assert.equal(d.what, "buffer 'k cache 0'");
    assert.equal(d.requestBytes, GiB, 'tiny: 2 KV heads of 64 in f32 × 2^21 positions');
    assert.equal(d.kvCacheBytes, 4 * GiB);
    assert.equal(d.contextSize, 2 ** 21);
    assert.equal(d.maxContextSize, 2 ** 21);
    assert.equal(d.neededBytes, d.weightsBytes + d.kvCacheBytes + d.activationsBytes);
    assert.ok(d.weightsBytes > 40e6 && d.weightsBytes < 60e6, `${d.weightsBytes}`);
    // The weights' buffers (all but the norm vectors, made as their bytes arrive) came first.
    assert.ok(d.allocatedBytes > d.weightsBytes - 2 ** 20 && d.allocatedBytes < d.neededBytes, JSON.stringify(d));
    assert.equal(d.maxBufferSize, GiB);
    for (const part of ['the device refused', '4.0', 'GiB', 'had been allocated before the device refused', 'maxBufferSize 1.00 GiB', 'smaller contextSize']) {
      assert.ok(e.message.includes(part), `'${part}' missing from: ${e.message}`);
    }
  }
  assert.equal(r.ids.length, 2);
});

test('a KV cache layer over the binding limit: OUT_OF_MEMORY at the first header naming the limit and the largest context', async () => {
  session.server.setFaults(STALL);
  const r = await session.inPage(async (mod) => {
    await mod.LlamaEngine.load('/limits/tiny.gguf', { worker: false, cache: false, contextSize: 2 ** 22 });
    return 'loaded';
  });
  session.server.clearFaults();
  assert.equal(r.thrown?.code, 'OUT_OF_MEMORY', JSON.stringify(r));
  const d = r.thrown.details;
  assert.equal(d.overLimit, 'maxStorageBufferBindingSize');
  assert.equal(d.requestBytes, 2 * GiB);
  assert.equal(d.maxContextSize, 2 ** 21);
  assert.match(r.thrown.message, /more than this device's maxStorageBufferBindingSize of 1\.00 GiB.*at most 2097152/);
});

test('the default context is the largest the limits allow (at most 4096); info.model.memory has the plan', async () => {
  const r = await session.inPage(async (mod) => {
    const out = {};
    // A 256 KiB binding limit holds 512 positions of a tiny KV layer in f32 (2 heads of 64).
    for (const [name, maxStorageBinding] of [['small', 256 << 10], ['large', undefined]]) {
      const e = await mod.LlamaEngine.load('/limits/tiny.gguf', { worker: false, cache: false, maxStorageBinding });
      out[name] = { model: e.info.model, f16: e.info.features.shaderF16 };
      const ids = [];
      for await (const t of e.generate('Hi', { temperature: 0, max_tokens: 1 })) ids.push(t.id);
      out[name].ids = ids;
      await e.unload();
    }
    return out;
  });
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  for (const [name, ctx] of [['small', (256 << 10) / (2 * 64 * (r.small.f16 ? 2 : 4))], ['large', 4096]]) {
    const m = r[name].model;
    assert.equal(m.contextSize, ctx, name);
    assert.equal(m.memory.contextSize, ctx, name);
    assert.equal(m.memory.kvCacheBytes, 2 * 2 * 2 * 64 * (r[name].f16 ? 2 : 4) * ctx, `${name}: 2 layers of K and V`);
    assert.equal(m.memory.totalBytes, m.memory.weightsBytes + m.memory.kvCacheBytes + m.memory.activationsBytes);
    assert.ok(m.memory.weightsBytes > 40e6 && m.memory.weightsBytes < 60e6, JSON.stringify(m.memory));
    assert.equal(r[name].ids.length, 1);
  }
  assert.equal(r.small.model.memory.maxContextSize, r.small.model.contextSize);
});

test('generation that reaches the end of the context finishes with length; the next requests work', async () => {
  // 40 positions: the prompts take 34 and 36, so every request decodes a few tokens (SwiftShader
  // decodes about 1.5 tokens/s) before the context ends.
  const CTX = 40;
  const r = await session.inPage(async (mod, CTX) => {
    const engine = await mod.LlamaEngine.load('/models/SmolLM2-135M-Instruct.Q4_1.gguf', { worker: false, cache: false, contextSize: CTX });
    const out = { ctx: engine.info.model.contextSize };
    const prompt = 'One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen, fourteen, fifteen, sixteen, seventeen,';
    const base = { temperature: 0, max_tokens: 100, ignore_eos: true };
    const text = await engine.completions.create({ ...base, prompt });
    out.text = { usage: text.usage, finish: text.choices[0].finish_reason, text: text.choices[0].text };
    let streamed = '';
    let finish = null;
    let usage = null;
    for await (const c of await engine.completions.create({ ...base, prompt, stream: true, stream_options: { include_usage: true } })) {
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      streamed += c.choices[0]?.text ?? '';
      if (c.usage) usage = c.usage;
    }
    out.textStream = { usage, finish, text: streamed };
    const messages = [{ role: 'user', content: 'Count from one to twenty.' }];
    const chat = await engine.chat.completions.create({ ...base, messages });
    out.chat = { usage: chat.usage, finish: chat.choices[0].finish_reason, text: chat.choices[0].message.content };
    streamed = '';
    finish = null;
    usage = null;
    for await (const c of await engine.chat.completions.create({ ...base, messages, stream: true, stream_options: { include_usage: true } })) {
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      streamed += c.choices[0]?.delta?.content ?? '';
      if (c.usage) usage = c.usage;
    }
    out.chatStream = { usage, finish, text: streamed };
    // The wasm engine itself, with max_tokens past the context (the JS API caps max_tokens at
    // the room left): the context end stops it.
    const core = engine._core._engine;
    const ids = engine._core.tokenize(prompt);
    core.begin(Uint32Array.from(ids), JSON.stringify({ max_tokens: 1000, temperature: 0, ignore_eos: true }));
    let n = 0;
    let f = null;
    while (!f) {
      const s = await core.step();
      if (s.token !== null) n++;
      f = s.finish;
    }
    out.raw = { n, finish: f, prompt: ids.length };
    // Next requests: a repeat that reuses the cached prompt, and another prompt.
    const again = await engine.completions.create({ ...base, prompt });
    const next = await engine.completions.create({ prompt: 'The capital of France is', temperature: 0, max_tokens: 3 });
    await engine.resetChat();
    const fresh = await engine.completions.create({ prompt: 'The capital of France is', temperature: 0, max_tokens: 3 });
    out.next = { text: next.choices[0].text, finish: next.choices[0].finish_reason, fresh: fresh.choices[0].text };
    out.again = { usage: again.usage, text: again.choices[0].text };
    await engine.unload();
    return out;
  }, CTX);
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  console.log(JSON.stringify(r));
  assert.equal(r.ctx, CTX);
  for (const k of ['text', 'textStream', 'chat', 'chatStream']) {
    const x = r[k];
    assert.equal(x.finish, 'length', `${k}: ${JSON.stringify(x)}`);
    assert.ok(x.usage.prompt_tokens < CTX && x.usage.prompt_tokens >= 20, `${k}: ${JSON.stringify(x.usage)}`);
    assert.equal(x.usage.prompt_tokens + x.usage.completion_tokens, CTX, `${k}: ${JSON.stringify(x.usage)}`);
  }
  assert.equal(r.textStream.text, r.text.text);
  assert.equal(r.chatStream.text, r.chat.text);
  assert.deepEqual(r.raw, { n: CTX - r.raw.prompt, finish: 'length', prompt: r.raw.prompt });
  assert.equal(r.next.finish, 'length');
  assert.equal(r.next.text, r.next.fresh, 'the request after a full context answers as on a fresh cache');
  assert.ok(r.again.usage.prompt_tokens_details.cached_tokens > 0);
  assert.equal(r.again.text, r.text.text, 'reusing the cached prefix gives the same completion');
});
