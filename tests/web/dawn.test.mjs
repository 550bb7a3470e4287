// The npm package's engine on Chrome's WebGPU with the features real GPUs have: Dawn for Node on
// Mesa 25's lavapipe (tests/dawn/globals.mjs), with shader-f16, subgroups of 8, timestamp-query
// and dot4I8Packed, in this Node process (`worker: false`), through wgpu's WebGPU backend as in
// a page. Headless Chromium has only SwiftShader (no shader-f16), so this is where the f16
// paths of the whole model run as Chrome compiles them. Greedy chat equals the native CLI's on
// the same features: f16 with subgroups, f16 without, and the packed-integer products; so do the
// other families' blocks (tiny synthetic Qwen2, Qwen3, Gemma 3, Phi-3, and the real Gemma 3 270M). The
// decode speed of the two, measured in the same run by the same workload (`engine.benchmark()`
// and the CLI's `bench`, on the system's lavapipe and on Dawn's own), is printed: a figure, not
// a pass/fail. Dawn for Node's waits are paced by the harness (tests/dawn/globals.mjs: its own
// busy polling would take a core from lavapipe), and the test checks that they were.
// Needs scripts/setup (Mesa 25, npm webgpu), `cargo build --release` and scripts/build-web.
// Run: node --test tests/web/dawn.test.mjs

import { polling } from '../dawn/globals.mjs';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as H from './harness.mjs';

const { LlamaEngine } = await import('../../www/package/src/index.js');
const WASM = fs.readFileSync(path.join(H.REPO_ROOT, 'www/package/wasm/llama_webgpu_bg.wasm'));
const QUESTION = 'What is the capital of France?';
const N = 24;
// Native lavapipe (Mesa 22.3, the system's) runs the same kernels; subgroups of 8 on both.
const native = (/** @type {string[]} */ args) => H.nativeJson(args);

const engines = [];
after(async () => {
  for (const e of engines) await e.unload();
});

/** SmolLM2 on Dawn with `options`, as a page would load it from a File. */
async function load(options = {}) {
  const blob = await fs.openAsBlob(H.DEFAULT_MODEL);
  const engine = await LlamaEngine.load(blob, { worker: false, cache: false, wasmUrl: /** @type {any} */ (WASM), contextSize: 512, ...options });
  engines.push(engine);
  return engine;
}

/** The engine's greedy chat answer to QUESTION, and the native CLI's with `flags`. */
async function answers(engine, flags) {
  const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: QUESTION }], temperature: 0, max_tokens: N });
  const n = native(['generate', '-m', H.DEFAULT_MODEL, '-p', QUESTION, '--chat', '-n', String(N), '--temp', '0', '--json', ...flags]);
  return { page: r.choices[0].message.content, native: n.text, tokens: r.usage.completion_tokens, nativeTokens: n.tokens.length };
}

test('on Dawn the engine runs f16 with subgroups of 8, and its greedy chat equals the native CLI on the same features', async () => {
  const engine = await load();
  const f = engine.info.features;
  assert.deepEqual([f.shaderF16, f.subgroups, f.subgroupMinSize, f.subgroupMaxSize, f.timestampQuery, f.intDotAvailable, f.intDot],
    [true, true, 8, 8, true, true, false], JSON.stringify(f));
  const a = await answers(engine, []);
  assert.ok(a.page.length > 0);
  assert.equal(a.page, a.native);
  assert.equal(a.tokens, a.nativeTokens);
});

test('with chained steps (a GPU\'s default) each greedy or sampled step is queued on the GPU before the last token is read: a generation ended by the end-of-turn token, a stop string or an abort gives the queued step back, and the next turn reuses the cache and answers as a fresh run', async () => {
  // lavapipe is a CPU adapter, where steps run one at a time unless forced.
  assert.equal(engines[0].info.kernels.chain, 'off');
  const engine = await load({ tuning: { chain: 'on' } });
  assert.equal(engine.info.kernels.chain, 'on');
  const opts = { temperature: 0, max_tokens: 48 };
  const turn1 = [{ role: 'user', content: QUESTION }];
  // Ended by the end-of-turn token, with the next step already queued on it.
  const a = await engine.chat.completions.create({ ...opts, messages: turn1 });
  assert.equal(a.choices[0].finish_reason, 'stop');
  assert.ok(a.usage.completion_tokens < 48);
  const turn2 = [...turn1, a.choices[0].message, { role: 'user', content: 'And of Italy?' }];
  const b = await engine.chat.completions.create({ ...opts, messages: turn2 });
  assert.ok(b.usage.prompt_tokens_details.cached_tokens >= a.usage.prompt_tokens, JSON.stringify(b.usage));
  await engine.resetChat();
  const fresh = await engine.chat.completions.create({ ...opts, messages: turn2 });
  assert.equal(fresh.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(b.choices[0].message.content, fresh.choices[0].message.content);
  // Ended by a stop string inside the answer, then the same turn 2 on the cache it left.
  const word = fresh.choices[0].message.content.split(' ')[2];
  const cut = await engine.chat.completions.create({ ...opts, messages: turn2, stop: [word] });
  assert.equal(cut.choices[0].finish_reason, 'stop');
  assert.equal(cut.choices[0].message.content, fresh.choices[0].message.content.slice(0, fresh.choices[0].message.content.indexOf(word)));
  const again = await engine.chat.completions.create({ ...opts, messages: turn2 });
  assert.ok(again.usage.prompt_tokens_details.cached_tokens > 0);
  assert.equal(again.choices[0].message.content, fresh.choices[0].message.content);
  // Aborted mid-stream: the next request on the same prompt answers as the fresh run.
  const ac = new AbortController();
  let n = 0;
  await assert.rejects(async () => {
    for await (const _ of await engine.chat.completions.create({ ...opts, messages: turn2, stream: true, signal: ac.signal })) {
      if (++n === 3) ac.abort();
    }
  }, (e) => e.code === 'ABORTED');
  const after = await engine.chat.completions.create({ ...opts, messages: turn2 });
  assert.equal(after.choices[0].message.content, fresh.choices[0].message.content);
  // The same answers as steps one at a time.
  const stepwise = await engines[0].chat.completions.create({ ...opts, messages: turn2 });
  assert.equal(stepwise.choices[0].message.content, fresh.choices[0].message.content);
  // Seeded sampling: each token drawn on the GPU (Tint's build of the draw kernel) and the next
  // step queued with the next random number, as the native CLI draws with the same seed, and as
  // steps one at a time do.
  const sampled = { messages: turn1, temperature: 1.2, top_k: 40, top_p: 0.95, min_p: 0.05, seed: 5, max_tokens: N };
  const drawn = (await engine.chat.completions.create(sampled)).choices[0].message.content;
  const drawnStepwise = (await engines[0].chat.completions.create(sampled)).choices[0].message.content;
  const cli = native(['generate', '-m', H.DEFAULT_MODEL, '-p', QUESTION, '--chat', '-n', String(N), '--temp', '1.2', '--top-k', '40',
    '--top-p', '0.95', '--min-p', '0.05', '--seed', '5', '--chain', 'on', '--json']);
  assert.equal(drawn, cli.text);
  assert.equal(drawnStepwise, cli.text);
  const greedy = (await engine.chat.completions.create({ ...opts, messages: turn1, max_tokens: N })).choices[0].message.content;
  assert.notEqual(drawn, greedy, 'the draws left the argmax');
  await engine.unload();
  engines.splice(engines.indexOf(engine), 1);
});

test('f16 without subgroups (the workgroup-memory fallbacks) and the packed-integer products answer as the native CLI does', async () => {
  const fallback = await load({ subgroups: false });
  assert.deepEqual([fallback.info.features.shaderF16, fallback.info.features.subgroups], [true, false]);
  const a = await answers(fallback, ['--no-subgroups']);
  assert.equal(a.page, a.native);
  await fallback.unload();
  engines.splice(engines.indexOf(fallback), 1);
  const int = await load({ intDot: true });
  assert.equal(int.info.features.intDot, true);
  const b = await answers(int, ['--int-dot', 'on']);
  assert.equal(b.page, b.native);
});

test("a GPU's kernel choices (norms folded, joint Q/K/V and gate/up, rows shared by 8), on f32 and on packed-integer products, answer as the native CLI does with the same flags", async () => {
  // lavapipe is a CPU adapter, so the engine would not choose them here: the tuning option
  // forces them, as `--norm fused --swiglu fused --matvec-threads 8 --matvec-rows 2` does natively.
  const tuning = { norm: 'fused', swiglu: 'fused', chain: 'on', matvecThreads: 8, matvecRows: 2 };
  const gpu = await load({ tuning });
  assert.deepEqual(gpu.info.kernels, { norm: 'fused', swiglu: 'fused', join: 'fused', chain: 'on' });
  const a = await answers(gpu, ['--norm', 'fused', '--swiglu', 'fused', '--chain', 'on', '--matvec-threads', '8', '--matvec-rows', '2']);
  assert.ok(a.page.length > 0);
  assert.equal(a.page, a.native);
  const b = await gpu.benchmark({ promptTokens: 8, decodeTokens: 2, profileSteps: 1 });
  // Per layer: Q/K/V, RoPE, attention, O, gate/up, down; the embedding, the output, two argmax passes.
  assert.equal(b.decode.dispatchesPerToken, 1 + 30 * 6 + 3);
  const kernels = b.profile.map((k) => k.kernel);
  for (const k of ['attn_qkv', 'ffn_gate_up']) assert.ok(kernels.includes(k), `${k} in ${kernels}`);
  for (const k of ['attn_q', 'attn_norm', 'ffn_up']) assert.ok(!kernels.includes(k), `${k} in ${kernels}`);
  await gpu.unload();
  engines.splice(engines.indexOf(gpu), 1);
  // The packed-integer products with the same choices: the norms done by the quantizes of the
  // blocks' inputs, the residual adds by O and down, 10 dispatches per layer.
  const int = await load({ intDot: true, tuning: { norm: 'fused', swiglu: 'fused', matvecThreads: 8, matvecRows: 2 } });
  const c = await answers(int, ['--int-dot', 'on', '--norm', 'fused', '--swiglu', 'fused', '--matvec-threads', '8', '--matvec-rows', '2']);
  assert.equal(c.page, c.native);
  assert.equal((await int.benchmark({ promptTokens: 4, decodeTokens: 2 })).decode.dispatchesPerToken, 1 + 30 * 10 + 3);
  await int.unload();
  engines.splice(engines.indexOf(int), 1);
  await assert.rejects(load({ tuning: { join: 'yes' } }), (e) => e.code === 'INVALID_ARGUMENT' && /join must be 'fused' or 'separate'/.test(e.message));
  await assert.rejects(load({ tuning: { chain: true } }), (e) => e.code === 'INVALID_ARGUMENT' && /chain must be 'on' or 'off'/.test(e.message));
  await assert.rejects(load({ tuning: { matvecRows: 3 } }), (e) => e.code === 'INVALID_ARGUMENT' && /power of two/.test(e.message));
  await assert.rejects(load({ tuning: { fuse: true } }), (e) => e.code === 'INVALID_ARGUMENT' && /unknown key 'fuse'/.test(e.message));
});

test('decode on Dawn against the native CLI, in the same run and with the same workload (printed)', async () => {
  const engine = engines[0];
  const [P, D] = [32, 32];
  // Best of two: lavapipe shares the 2 cores with everything else on the machine.
  const runs = [];
  const paced = polling.paced;
  for (let i = 0; i < 2; i++) {
    runs.push({
      dawn: await engine.benchmark({ promptTokens: P, decodeTokens: D, profileSteps: i ? 2 : 0 }),
      native: native(['bench', '-m', H.DEFAULT_MODEL, '--prompt-len', String(P), '-n', String(D), '--json']),
      // The same driver as Dawn's (Mesa 25's lavapipe), so that the ratio compares compilers
      // and runtimes, not Mesa releases.
      sameDriver: H.nativeJson(['bench', '-m', H.DEFAULT_MODEL, '--prompt-len', String(P), '-n', String(D), '--json'], { VK_DRIVER_FILES: /** @type {string} */ (process.env.VK_DRIVER_FILES) }),
    });
  }
  const best = (f) => Math.max(...runs.map(f));
  const dawn = best((r) => r.dawn.decode.tokensPerSecond);
  const nat = best((r) => r.native.decode_tokens_per_s);
  const prefill = best((r) => r.dawn.prefill.tokensPerSecond);
  const natPrefill = best((r) => r.native.prefill_tokens_per_s);
  const same = best((r) => r.sameDriver.decode_tokens_per_s);
  const samePrefill = best((r) => r.sameDriver.prefill_tokens_per_s);
  assert.match(runs[0].sameDriver.gpu.driver, /Mesa 25/, 'the same-driver run is on Dawn\'s lavapipe');
  const last = runs[1].dawn;
  assert.ok(dawn > 0 && nat > 0);
  assert.equal(last.decode.dispatchesPerToken > 0, true);
  // Dawn's waits went through the harness's pacing (tests/dawn/globals.mjs), not its busy
  // polling, which would take a core from lavapipe: one poll per millisecond at most.
  assert.ok(polling.busy || polling.paced > paced, 'Dawn for Node waited without the pacing: has its polling changed?');
  assert.ok(last.profile.length >= 15, 'timestamp-query times every kernel');
  const top = [...last.profile].sort((x, y) => y.msPerToken - x.msPerToken).slice(0, 5)
    .map((k) => `${k.kernel} ${k.percent.toFixed(0)}%`).join(', ');
  console.log(`Dawn for Node (f16, subgroups 8) vs native CLI on the tests' lavapipe (Mesa 22.3), SmolLM2 Q4_1, ${P}-token prompt, ${D} decode steps, best of 2:`
    + ` decode ${dawn.toFixed(2)} vs ${nat.toFixed(2)} tok/s (${(dawn / nat).toFixed(2)}x),`
    + ` prefill ${prefill.toFixed(1)} vs ${natPrefill.toFixed(1)} tok/s (${(prefill / natPrefill).toFixed(2)}x);`
    + ` against the native CLI on Dawn's own driver (Mesa 25): decode ${same.toFixed(2)} tok/s (${(dawn / same).toFixed(2)}x), prefill ${samePrefill.toFixed(1)} (${(prefill / samePrefill).toFixed(2)}x);`
    + ` dispatches per token ${last.decode.dispatchesPerToken} vs ${runs[1].native.decode_dispatches_per_token}; Dawn's slowest kernels: ${top}`);
});

test('the other families on Dawn (f16, subgroups of 8): tiny Qwen2, Qwen3, Gemma 3 and Phi-3 files and the real Gemma 3 270M continue a prompt as the native CLI does, with the CPU device\'s kernels and a GPU\'s', async () => {
  const dir = fs.mkdtempSync(path.join(H.REPO_ROOT, '.cache', 'dawn-families-'));
  try {
    const files = ['qwen2', 'qwen3', 'gemma3', 'phi3'].map((arch) => {
      const file = path.join(dir, `tiny-${arch}.gguf`);
      execFileSync(H.CLI, ['synth', '-o', file, '--shape', 'tiny', '--arch', arch, '--type', 'q4_0', '--seed', '7', '--context', '256'], { stdio: 'pipe' });
      return file;
    });
    files.push(path.join(H.MODELS_DIR, 'gemma-3-270m-q4_k_m.gguf'));
    // A GPU's choices fold each family's norms into the products (Gemma 3's post-norms too).
    const gpu = { tuning: { norm: 'fused', swiglu: 'fused', matvecThreads: 8, matvecRows: 2 }, flags: ['--norm', 'fused', '--swiglu', 'fused', '--matvec-threads', '8', '--matvec-rows', '2'] };
    for (const file of files) {
      for (const { tuning, flags } of [{ tuning: undefined, flags: [] }, gpu]) {
        const engine = await LlamaEngine.load(await fs.openAsBlob(file), { worker: false, cache: false, wasmUrl: /** @type {any} */ (WASM), contextSize: 64, tuning });
        try {
          assert.equal(engine.info.features.shaderF16, true);
          const ids = [];
          for await (const tok of engine.generate('The capital of France is', { temperature: 0, max_tokens: 4 })) ids.push(tok.id);
          const want = native(['generate', '-m', file, '-p', 'The capital of France is', '-n', '4', '--temp', '0', '--json', ...flags]).tokens;
          assert.deepEqual(ids, want, `${path.basename(file)} ${flags.join(' ')}`);
        } finally {
          await engine.unload();
        }
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
