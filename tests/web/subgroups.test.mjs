// The default browser path uses the adapter's subgroups (SwiftShader's are 4 wide; wgpu cannot
// ask for them, src/gpu/web_subgroups.rs does), and `subgroups: false` forces the fallback. The
// npm package's engine answers a chat question greedily on both paths, in the same page: the
// answers agree (same tokens, log-probabilities within rounding) and the decode and prefill
// speeds of the two are printed side by side. The packed-integer products (`intDot: true`; off by
// default) answer as the native CLI does with `--int-dot on`.
// Needs `scripts/build-web` and `cargo build --release`. Run: node --test tests/web/subgroups.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './harness.mjs';

const QUESTION = 'Name three famous Italian cities.';
const N = 16;
// As in quant-types.test.mjs: the two f32 paths add in another order, nothing more.
const CLOSE = 2e-3;

let session;

before(async () => {
  session = await H.startEngineTest();
});

after(() => session?.close());

/** Loads SmolLM2 with `options` and answers QUESTION greedily with top-5 log-probabilities. */
async function answer(options) {
  const loaded = await session.load('__engine', '/models/SmolLM2-135M-Instruct.Q4_1.gguf', { contextSize: 128, ...options });
  assert.ok(!loaded.thrown, JSON.stringify(loaded.thrown));
  return session.inPage(async (mod, question, n) => {
    const engine = window.__engine;
    try {
      const c = await engine.chat.completions.create({
        messages: [{ role: 'user', content: question }],
        temperature: 0,
        max_tokens: n,
        logprobs: true,
        top_logprobs: 5,
      });
      return { steps: c.choices[0].logprobs.content, text: c.choices[0].message.content, features: engine.info.features, timings: c.usage.extra };
    } finally {
      await engine.unload();
    }
  }, QUESTION, N);
}

/** The default path's answer (subgroups, f32 products), shared by the tests below. */
let defaultAnswer;

test('the chat answer on the subgroup path agrees with the fallback path', async () => {
  const sg = await answer({});
  defaultAnswer = sg;
  assert.equal(sg.features.subgroups, true, 'the default path uses the adapter\'s subgroups');
  assert.equal(sg.features.subgroupMinSize, 4);
  assert.equal(sg.features.subgroupMaxSize, 4);
  const plain = await answer({ subgroups: false });
  assert.equal(plain.features.subgroups, false);
  assert.equal(plain.features.subgroupMinSize, 0);
  assert.ok(sg.steps.length >= 5, `${sg.steps.length} tokens`);
  const diff = H.logprobDifference(sg.steps, plain.steps);
  console.log(`subgroups vs fallback: ${JSON.stringify(sg.text)}; largest top-5 log-probability difference ${diff.toExponential(2)} nats`);
  // Figures only (SwiftShader runs the kernels on the CPU); scripts/browser-bench.mjs measures properly.
  const f = (t) => `prefill ${t.prefill_tokens_per_s.toFixed(1)} tok/s, decode ${t.decode_tokens_per_s.toFixed(2)} tok/s`;
  console.log(`SwiftShader, same page: subgroups ${f(sg.timings)}; fallback ${f(plain.timings)}`);
  assert.equal(sg.text, plain.text);
  assert.ok(diff <= CLOSE, `${diff} nats apart`);
});

test('the packed-integer path (intDot: true) answers as the native CLI does with --int-dot on', async () => {
  const int = await answer({ intDot: true });
  assert.equal(int.features.intDot, true);
  assert.equal(int.features.intDotAvailable, true, "Chrome's WGSL has dot4I8Packed");
  assert.equal(int.features.subgroups, true);
  // Lavapipe's subgroups narrowed to 4 and the same flag: the same kernel variants, quantizing and
  // adding in the same order.
  const native = H.nativeGreedy({ prompt: QUESTION, n: N, chat: true, extra: ['--int-dot', 'on'] });
  assert.equal(int.text, native.text, 'browser and native int-dot answers differ');
  const f32 = defaultAnswer ?? await answer({});
  assert.equal(f32.features.intDot, false, 'the f32 products by default');
  assert.equal(f32.features.intDotAvailable, true);
  // 8-bit activations move log-probabilities by about 1% of a nat; printed, not bounded: the
  // agreement with llama.cpp (tests/gpu_agreement.rs) is the bar for this path.
  const shift = int.steps.reduce((m, s, i) => Math.max(m, Math.abs(s.logprob - (f32.steps[i]?.logprob ?? s.logprob))), 0);
  const f = (t) => `prefill ${t.prefill_tokens_per_s.toFixed(1)} tok/s, decode ${t.decode_tokens_per_s.toFixed(2)} tok/s`;
  console.log(`int-dot: ${JSON.stringify(int.text)} (f32: ${JSON.stringify(f32.text)}); chosen tokens' log-probabilities moved by up to ${shift.toFixed(3)} nats`);
  console.log(`SwiftShader, same page: int-dot ${f(int.timings)}; f32 ${f(f32.timings)}`);
});

test('an intDot option that is not a boolean is INVALID_ARGUMENT', async () => {
  const r = await session.load('__bad', '/models/SmolLM2-135M-Instruct.Q4_1.gguf', { intDot: 'yes' });
  assert.equal(r.thrown?.code, 'INVALID_ARGUMENT', JSON.stringify(r));
  assert.match(r.thrown.message, /intDot/);
});

test('a subgroups option that is not a boolean is INVALID_ARGUMENT', async () => {
  const r = await session.load('__bad', '/models/SmolLM2-135M-Instruct.Q4_1.gguf', { subgroups: 'yes' });
  assert.equal(r.thrown?.code, 'INVALID_ARGUMENT', JSON.stringify(r));
  assert.match(r.thrown.message, /subgroups/);
});
