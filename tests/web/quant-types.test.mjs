// Every weight type the GPU kernels support, compiled by Chrome's WGSL compiler (Tint, stricter
// than naga in places) and run on SwiftShader, on both kernel paths: SmolLM2 requantized by
// llama.cpp to each type loads in the page and greedily continues a prompt exactly as the native
// CLI does on the same kernels — the default path with SwiftShader's subgroups of 4 against
// lavapipe's narrowed to 4, and `subgroups: false` against `--no-subgroups` (on the types of
// FALLBACK_TYPES: tests/browser.rs checks every type's fallback kernels against the CPU in
// Chromium, and each load here costs ~10 s of SwiftShader). An unsupported type (TQ2_0, in a file
// gguf-py writes) fails at the header, before the weights download.
// Needs `scripts/build-web` and `cargo build --release`. Run: node --test tests/web/quant-types.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as H from './harness.mjs';

const PROMPT = 'The capital of France is';
const N = 3;
// Q4_K_M also holds Q6_K (output, half of attn_v/ffn_down); Q5_K_M holds Q5_K and Q6_K; F16 and
// BF16 the float paths; llama.cpp's Q2_K mix gives SmolLM2's ffn_down Q3_K, the pure Q2_K file Q2_K;
// IQ4_XS holds IQ4_XS (ffn_down) and IQ4_NL (the rest); IQ3_S's ffn_down is IQ3_S, a lattice type.
// Together with the default Q4_1 these are every type the kernels decode but the lattice types
// llama.cpp makes only with an importance matrix, which tests/browser.rs checks in Chromium.
const TYPES = ['Q4_0', 'Q5_0', 'Q5_1', 'Q8_0', 'Q4_K_M', 'Q5_K_M', 'Q6_K', 'F16', 'BF16', 'Q2_K', 'Q2_K_pure', 'IQ4_XS', 'IQ3_S'];
// The whole model on the fallback path: the K-quant superblocks (Q4_K, Q5_K, Q6_K), a legacy block
// type and the float path; the default Q4_1 runs it in demo.test.mjs.
const FALLBACK_TYPES = new Set(['Q8_0', 'Q4_K_M', 'Q5_K_M', 'F16']);

let session; // the test server, browser and page with the package (H.startEngineTest)

before(async () => {
  session = await H.startEngineTest({ scratch: '/scratch/' });
});

after(() => session?.close());

/** The model's greedy tokens for PROMPT in the page and the engine's info, or `{thrown}`. */
const browserTokens = (url, options = {}) => session.greedy(url, PROMPT, N, { contextSize: 32, ...options });

for (const ty of TYPES) {
  for (const subgroups of FALLBACK_TYPES.has(ty) ? [true, false] : [true]) {
    test(`${ty}, ${subgroups ? 'subgroups' : 'no subgroups'}: greedy tokens in the browser equal the native CLI's`, async () => {
      const name = `SmolLM2-135M-Instruct.${ty}.gguf`;
      const want = H.nativeGreedy({ model: path.join(H.MODELS_DIR, name), prompt: PROMPT, n: N, subgroups }).tokens;
      const got = await browserTokens(`/models/${name}`, subgroups ? {} : { subgroups: false });
      assert.ok(!got.thrown, JSON.stringify(got.thrown));
      assert.equal(got.info.features.subgroups, subgroups);
      assert.deepEqual(got.ids, want);
    });
  }
}

test('a type the GPU kernels do not run (TQ2_0, in a file gguf-py writes) fails with UNSUPPORTED_TENSOR_TYPE before the weights download', async () => {
  const dir = path.join(session.dir, 'tq2');
  fs.mkdirSync(dir, { recursive: true });
  const out = execFileSync(path.join(H.REPO_ROOT, '.cache/venv/bin/python'), [
    path.join(H.REPO_ROOT, 'scripts/gguf-py-split.py'), H.DEFAULT_MODEL, path.join(dir, 'smol'),
    '--split-max-tensors', '100000', '--retype', 'blk.3.ffn_down.weight=TQ2_0',
  ], { encoding: 'utf8' });
  const [shard] = JSON.parse(out.trim().split('\n').pop()).shards;
  session.server.clearLog();
  const r = await browserTokens(`/scratch/tq2/${path.basename(shard.path)}`);
  assert.equal(r.thrown?.code, 'UNSUPPORTED_TENSOR_TYPE', JSON.stringify(r));
  assert.match(r.thrown.message, /blk\.3\.ffn_down\.weight.*TQ2_0.*supported: .*IQ1_M/);
  const sent = session.server.log().filter((e) => e.path.endsWith('.gguf')).reduce((a, e) => a + (e.bytes ?? e.bytesSent ?? 0), 0);
  assert.ok(sent < 0.5 * shard.size, `${sent} of ${shard.size} bytes were sent before the error`);
});
