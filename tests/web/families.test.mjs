// The model families beside Llama (Qwen2, Qwen3, Gemma 3, Phi-3: model::arch) in the page, on
// SwiftShader: the tiny shape written in each family's block by `synth --arch` (Q/K/V biases,
// per-head Q/K norms, post-norms, GELU, a sliding-window layer, RoPE on halves, fused matrices cut
// apart as they stream in, long-context RoPE factors), and the real Gemma 3 270M from PyPI,
// greedily continue a prompt exactly as the native CLI does on the same kernels (lavapipe's
// subgroups narrowed to SwiftShader's 4, f32). A family's file split into shards by the CLI loads
// and continues the same way. Released Qwen3 and Gemma 3 shapes cut to one block, with their own
// vocabularies and chat templates (`synth --shape … --layers 1`), chat through the JS API as the
// CLI's `generate --chat` does.
// Needs `scripts/build-web` and `cargo build --release`. Run: node --test tests/web/families.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as H from './harness.mjs';

const PROMPT = 'The capital of France is';
const N = 4;
const GEMMA = 'gemma-3-270m-q4_k_m.gguf';

let session; // the test server, browser and page with the package (H.startEngineTest)

before(async () => {
  session = await H.startEngineTest({ scratch: '/scratch/' });
});

after(() => session?.close());

/** The model's greedy tokens for PROMPT in the page and the engine's info, or `{thrown}`. */
const browserTokens = (url, options = {}) => session.greedy(url, PROMPT, N, { contextSize: 64, ...options });

/**
 * Loads `url` with `options`, answers 'Hello' through `chat.completions` (greedy, 3 tokens) and
 * unloads: `has` (info.model.hasChatTemplate), the answer and its token counts, or `{thrown}`
 * (from the load, or from the chat with `has` beside it).
 */
async function chatHello(url, options = {}) {
  const loaded = await session.load('__chat', url, { contextSize: 64, ...options });
  if (loaded.thrown) return loaded;
  const got = await session.inPage(async () => {
    const engine = window.__chat;
    try {
      const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hello' }], temperature: 0, max_tokens: 3 });
      return { text: r.choices[0].message.content, prompt: r.usage.prompt_tokens, completion: r.usage.completion_tokens };
    } finally {
      await engine.unload();
    }
  });
  return { has: loaded.info.model.hasChatTemplate, ...got };
}

for (const arch of ['qwen2', 'qwen3', 'gemma3', 'phi3']) {
  test(`tiny ${arch} (synth --arch): greedy tokens in the browser equal the native CLI's, from one file and from shards`, async () => {
    const file = path.join(session.dir, `tiny-${arch}.gguf`);
    execFileSync(H.CLI, ['synth', '-o', file, '--shape', 'tiny', '--arch', arch, '--type', 'q4_0', '--seed', '7', '--context', '256'], { stdio: 'pipe' });
    const want = H.nativeGreedy({ model: file, prompt: PROMPT, n: N }).tokens;
    const got = await browserTokens(`/scratch/tiny-${arch}.gguf`);
    assert.ok(!got.thrown, JSON.stringify(got.thrown));
    assert.equal(got.info.model.architecture, arch);
    assert.deepEqual(got.ids, want);
    // The same file as gguf-split shards, loaded from its first.
    const prefix = path.join(session.dir, `split-${arch}`);
    execFileSync(H.CLI, ['split', file, prefix, '--split-max-size', '20M'], { stdio: 'pipe' });
    const shards = fs.readdirSync(session.dir).filter((f) => f.startsWith(`split-${arch}-`)).sort();
    assert.ok(shards.length > 1, `${shards}`);
    const split = await browserTokens(`/scratch/${shards[0]}`);
    assert.ok(!split.thrown, JSON.stringify(split.thrown));
    assert.deepEqual(split.ids, want);
  });
}

test('Gemma 3 270M (real weights): greedy tokens in the browser equal the native CLI\'s', async () => {
  const want = H.nativeGreedy({ model: path.join(H.MODELS_DIR, GEMMA), prompt: PROMPT, n: N }).tokens;
  const got = await browserTokens(`/models/${GEMMA}`);
  assert.ok(!got.thrown, JSON.stringify(got.thrown));
  assert.equal(got.info.model.architecture, 'gemma3');
  assert.deepEqual(got.ids, want);
});

for (const shape of ['qwen3-0.6b', 'gemma3-1b']) {
  test(`${shape} cut to one block chats through the JS API with its own template as the native CLI does`, async () => {
    const file = path.join(session.dir, `${shape}.gguf`);
    execFileSync(H.CLI, ['synth', '-o', file, '--shape', shape, '--layers', '1', '--type', 'q8_0', '--seed', '3'], { stdio: 'pipe' });
    const want = H.nativeGreedy({ model: file, prompt: 'Hello', n: 3, chat: true });
    const got = await chatHello(`/scratch/${shape}.gguf`);
    assert.ok(!got.thrown, JSON.stringify(got.thrown));
    assert.equal(got.prompt, want.prompt_tokens.length);
    assert.equal(got.completion, want.tokens.length);
    assert.equal(got.text, want.text);
    fs.rmSync(file);
  });
}

test('Gemma 3 270M (a base model, no template in the file) chats with a template given at load, as the CLI does with --chat-template', async () => {
  const model = path.join(H.MODELS_DIR, GEMMA);
  const templateFile = path.join(H.MODELS_DIR, 'google-gemma-3-it.jinja');
  const want = H.nativeGreedy({ model, prompt: 'Hello', n: 3, chat: true, extra: ['--chat-template', templateFile] });
  const chat = (options) => chatHello(`/models/${GEMMA}`, options);
  // In a worker, as apps load by default: the option crosses to it with the others.
  const got = await chat({ chatTemplate: fs.readFileSync(templateFile, 'utf8'), worker: true });
  assert.ok(!got.thrown, JSON.stringify(got.thrown));
  assert.equal(got.has, true);
  assert.deepEqual([got.prompt, got.completion, got.text], [want.prompt_tokens.length, want.tokens.length, want.text]);
  // Without one, chat fails with a typed error that names the option.
  const none = await chat({});
  assert.equal(none.has, false);
  assert.equal(none.thrown?.code, 'INVALID_ARGUMENT', JSON.stringify(none));
  assert.match(none.thrown.message, /no chat template.*chatTemplate load option/);
  // One that does not compile is refused at load (it is compiled before any shard is opened).
  const bad = await chat({ chatTemplate: '{% if %}' });
  assert.equal(bad.thrown?.code, 'INVALID_ARGUMENT', JSON.stringify(bad));
  assert.match(bad.thrown.message, /chatTemplate: chat template syntax error/);
  const notString = await chat({ chatTemplate: 42 });
  assert.equal(notString.thrown?.code, 'INVALID_ARGUMENT', JSON.stringify(notString));
});
