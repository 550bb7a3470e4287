// Split shards from another writer, in the browser: the `gguf` package's GGUFWriter in split mode (gguf==0.19.0 in
// .cache/venv, the writer behind llama.cpp's `convert_hf_to_gguf.py --split-max-size`; scripts/gguf-py-split.py)
// re-writes SmolLM2 as shards by size, and by tensor count with a metadata-only first shard. The npm package loads
// each set from its shard URLs in headless Chromium and greedy-decodes what the native CLI decodes from the unsplit
// file on the same kernels (f32, subgroups of 4: H.nativeGreedy); the two sets give identical log-probabilities. Mixed-up sets of the
// same files are refused with typed codes. tests/foreign_shards.rs checks the same shards natively, bit for bit.
// Needs `scripts/build-web`, `cargo build --release` and scripts/setup's venv. Run: node --test tests/web/foreign-shards.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import fsp from 'node:fs/promises';
import * as H from './harness.mjs';

const PYTHON = path.join(H.REPO_ROOT, '.cache/venv/bin/python');
const PROMPT = 'The capital of France is';
const N = 3;

let session; // test server, browser and page with the package; the shards in session.dir, served at /foreign/
let sets; // {size, tensors}: each the GGUFWriter's manifest ({shards: [{path, size, tensors}], ...})
let native; // the native CLI's greedy tokens on the unsplit file

/** GGUFWriter's shards of SmolLM2 under session.dir/<name>/smol-0000k-of-0000N.gguf, with its manifest. */
async function ggufWrite(name, args) {
  const prefix = path.join(session.dir, name, 'smol');
  await fsp.mkdir(path.dirname(prefix));
  const out = execFileSync(PYTHON, [path.join(H.REPO_ROOT, 'scripts/gguf-py-split.py'), H.DEFAULT_MODEL, prefix, ...args], { encoding: 'utf8' });
  const manifest = JSON.parse(out.trim().split('\n').pop());
  manifest.urls = manifest.shards.map((s) => `/foreign/${name}/${path.basename(s.path)}`);
  return manifest;
}

before(async () => {
  session = await H.startEngineTest({ scratch: '/foreign/' });
  sets = {
    size: await ggufWrite('size', ['--split-max-size', '40000000']),
    tensors: await ggufWrite('tensors', ['--split-max-tensors', '100', '--small-first-shard']),
  };
  for (const [k, m] of Object.entries(sets)) assert.ok(m.shards.length >= 3, `${k}: ${m.shards.length} shards`);
  assert.equal(sets.tensors.shards[0].tensors.length, 0, 'the first shard holds only metadata');
  native = H.nativeGreedy({ prompt: PROMPT, n: N }).tokens;
});

after(() => session?.close());

/** Loads `source` in the page (no worker, no cache), decodes N greedy tokens with their top-5 log-probabilities. */
function loadAndDecode(source) {
  return session.inPage(async (mod, src, prompt, n) => {
    const engine = await mod.LlamaEngine.load(src, { worker: false, cache: false, contextSize: 64 });
    try {
      const ids = [];
      for await (const t of engine.generate(prompt, { temperature: 0, max_tokens: n })) ids.push(t.id);
      // The same prompt again: its tokens' log-probabilities, to compare the two shard sets exactly.
      const c = await engine.completions.create({ prompt, temperature: 0, max_tokens: n, logprobs: true, top_logprobs: 5 });
      return { ids, logprobs: c.choices[0].logprobs.content, source: engine.info.model.source, load: engine.info.load };
    } finally {
      await engine.unload();
    }
  }, source, PROMPT, N);
}

test("GGUFWriter's shards load from their URLs and decode as the native CLI does on the unsplit file", async () => {
  const t0 = Date.now();
  // By size: the first shard's URL stands for the set.
  const a = await loadAndDecode(sets.size.urls[0]);
  assert.ok(!a.thrown, JSON.stringify(a.thrown));
  assert.equal(a.source.length, sets.size.shards.length, 'every shard was found from the first URL');
  assert.deepEqual(a.ids, native, 'browser on GGUFWriter shards vs native CLI on the unsplit file');
  // By tensor count, metadata-only first shard: all URLs, in shuffled order.
  const urls = sets.tensors.urls;
  const b = await loadAndDecode([urls[2], urls[0], urls[3], urls[1], ...urls.slice(4)]);
  assert.ok(!b.thrown, JSON.stringify(b.thrown));
  assert.equal(b.source.length, urls.length);
  assert.deepEqual(b.ids, native);
  // Same kernels, same weights, different layouts: the same floats.
  assert.deepEqual(b.logprobs, a.logprobs);
  assert.equal(a.logprobs.length, N);
  console.log(`GGUFWriter shards: ${sets.size.shards.length} and ${urls.length} shards, tokens ${JSON.stringify(native)}; `
    + `loads ${a.load.seconds.toFixed(1)} s and ${b.load.seconds.toFixed(1)} s; ${((Date.now() - t0) / 1000).toFixed(0)} s in all`);
});

test('a mixed-up set of GGUFWriter shards is refused with a typed code', async () => {
  // Hard links to the same files under other names: shards 2 and 3 swapped, or shard 3 missing.
  const src = sets.tensors.shards.map((s) => s.path);
  const n = src.length;
  const name = (i) => `m-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.gguf`;
  const makeSet = async (dir, order) => {
    await fsp.mkdir(path.join(session.dir, dir));
    for (const [i, j] of order.entries()) if (j !== null) await fsp.link(src[j], path.join(session.dir, dir, name(i)));
    return `/foreign/${dir}/${name(0)}`;
  };
  const swapped = await makeSet('swapped', src.map((_, i) => (i === 1 ? 2 : i === 2 ? 1 : i)));
  const missing = await makeSet('missing', src.map((_, i) => (i === 2 ? null : i)));
  const codes = await session.inPage(async (mod, urls) => {
    const out = [];
    for (const u of urls) {
      try {
        const e = await mod.LlamaEngine.load(u, { worker: false, cache: false, contextSize: 64 });
        await e.unload();
        out.push('loaded');
      } catch (e) {
        out.push(`${e.code}: ${e.message}`);
      }
    }
    return out;
  }, [swapped, missing]);
  // Swapped: shard 2's header says split.no 2 (0-based) where 1 was due. Missing: its probe is a 404.
  assert.deepEqual(codes.map((c) => c.split(':')[0]), ['BAD_SPLIT', 'NETWORK_ERROR'], codes.join('\n'));
});
