#!/usr/bin/env node
// Loads a synthetic Llama GGUF (default: Llama-3.1-8B-shaped Q4_K_M in 2 GB gguf-split shards,
// made by `llama-webgpu synth`) in headless Chromium through the npm package, from a local
// server: first download (into the OPFS cache), then again from the cache with the server
// stopped, and decodes one token. Prints load throughput, peak wasm memory and timings as JSON.
// Not part of scripts/test (it writes ~10 GB and takes minutes on SwiftShader).
//
//   node scripts/browser-bench.mjs [--shape 8b|3b|1b] [--type q4_k_m|q4_0|q8_0] [--no-decode]
// Needs scripts/setup, `cargo build --release` and scripts/build-web.

import { execFileSync } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import * as H from '../tests/web/harness.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const shape = arg('shape', '8b');
const type = arg('type', 'q4_k_m');
const decode = !process.argv.includes('--no-decode');
const dir = path.join(H.REPO_ROOT, '.cache/synth', `${shape}-${type}`);

await fsp.mkdir(dir, { recursive: true });
let files = (await fsp.readdir(dir)).filter((f) => f.endsWith('.gguf')).sort();
if (!files.length) {
  execFileSync(H.CLI, ['synth', '-o', path.join(dir, 'model.gguf'), '--shape', shape, '--type', type, '--split-max-size', '2G'], { stdio: 'inherit' });
  files = (await fsp.readdir(dir)).filter((f) => f.endsWith('.gguf')).sort();
}
let bytes = 0;
for (const f of files) bytes += (await fsp.stat(path.join(dir, f))).size;

const session = await H.startEngineTest({ mounts: { '/synth/': dir } });
const load = (url, doDecode) => session.inPage(async (mod, u, d) => {
  try {
    const t0 = performance.now();
    const engine = await mod.LlamaEngine.load(u, { worker: false, contextSize: 64 });
    const loadS = (performance.now() - t0) / 1000;
    let decodeS = null;
    let token = null;
    if (d) {
      const t1 = performance.now();
      for await (const t of engine.generate('Hello', { temperature: 0, max_tokens: 1 })) token = t.id;
      decodeS = (performance.now() - t1) / 1000;
    }
    const info = engine.info;
    await engine.unload();
    return { loadS, decodeS, token, load: info.load, adapter: info.adapter, limits: info.limits };
  } catch (e) {
    return { error: `${e.code}: ${e.message}` };
  }
}, url, doDecode);

const url = `/synth/${files[0]}`;
const out = { shape, type, shards: files.length, bytes };
out.network = await load(url, decode);
await session.server.close();
out.cache = await load(url, false);
await session.restartServer();
await session.inPage((mod, u) => mod.LlamaEngine.deleteModelFromCache(u), url);
await session.close();
for (const k of ['network', 'cache']) {
  const r = out[k];
  if (r.load) r.mbPerS = bytes / r.loadS / 1e6;
}
console.log(JSON.stringify(out, null, 1));
