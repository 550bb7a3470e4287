#!/usr/bin/env node
// Decode and prefill of the wasm engine on Dawn for Node (Chrome's WebGPU, f16 and subgroups of 8,
// on Mesa 25's lavapipe) against the native CLI, in one run, with the same workload: a fixed
// prompt in one batch, then single-token greedy steps (`engine.benchmark()` and `bench`).
//
//     node scripts/dawn-bench.mjs [-m MODEL.gguf] [--prompt-len 32] [-n 32] [--pairs 5] [--json]
//
// The rows run in turns, one of each per pair, so that the machine's load falls on all of them
// alike; each ratio is taken within a pair, and the medians are printed:
//   dawn          the npm package's engine (`worker: false`) on Dawn for Node, Mesa 25's lavapipe,
//                 with the harness pacing Dawn for Node's polls (tests/dawn/globals.mjs)
//   dawn-busy-poll the same engine with Dawn for Node's own busy polling, which takes a core
//   dawn-chained  the engine loaded with a GPU's step scheduling (`tuning: {chain: 'on'}`): each
//                 greedy step queued on the GPU before the last one's token is read back
//   native-mesa25 the native CLI on the same driver as Dawn (VK_DRIVER_FILES=.cache/mesa25/icd.json)
//   native        the native CLI on the system's lavapipe (Mesa 22.3), as tests/web/dawn.test.mjs runs it
// Both natives run with their defaults there (f16 and subgroups of 8, as Dawn). Lavapipe runs the
// kernels as CPU code on the machine's cores, so these say what the browser's path costs in
// instructions and dispatches against the native one, not what a GPU would do.
// Needs scripts/setup, `cargo build --release` and scripts/build-web. About 3 minutes.

import { polling } from '../tests/dawn/globals.mjs';
import fs from 'node:fs';
import path from 'node:path';
import * as H from '../tests/web/harness.mjs';

const argv = process.argv.slice(2);
const arg = (names, dflt) => {
  const i = argv.findIndex((a) => names.includes(a));
  if (i < 0) return dflt;
  if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
  return argv[i + 1];
};
const count = (names, dflt) => {
  const v = arg(names, String(dflt));
  if (!/^[1-9][0-9]*$/.test(v)) throw new Error(`${names[0]} needs a positive integer, not '${v}'`);
  return Number(v);
};
const model = path.resolve(arg(['-m', '--model'], H.DEFAULT_MODEL));
const P = count(['--prompt-len'], 32);
const D = count(['-n'], 32);
const pairs = count(['--pairs'], 5);
const json = argv.includes('--json');
if (!fs.existsSync(model)) throw new Error(`${model} is missing: run scripts/setup`);

const log = (m) => process.stderr.write(`[dawn-bench] ${m}\n`);
const { LlamaEngine } = await import('../www/package/src/index.js');
const wasmUrl = /** @type {any} */ (fs.readFileSync(path.join(H.REPO_ROOT, 'www/package/wasm/llama_webgpu_bg.wasm')));
const engine = await LlamaEngine.load(await fs.openAsBlob(model), { worker: false, cache: false, wasmUrl, contextSize: P + D + 8 });
const chained = await LlamaEngine.load(await fs.openAsBlob(model), { worker: false, cache: false, wasmUrl, contextSize: P + D + 8, tuning: { chain: 'on' } });
const f = engine.info.features;
log(`Dawn: ${engine.info.adapter?.description ?? 'adapter'}; f16 ${f.shaderF16}, subgroups ${f.subgroups} (${f.subgroupMinSize}-${f.subgroupMaxSize})`);

const bench = ['bench', '-m', model, '--prompt-len', String(P), '-n', String(D), '--json'];
const mesa25 = { VK_DRIVER_FILES: path.join(H.REPO_ROOT, '.cache/mesa25/icd.json') };
const rows = {
  dawn: async (e = engine) => {
    const b = await e.benchmark({ promptTokens: P, decodeTokens: D });
    return { decode: b.decode.tokensPerSecond, prefill: b.prefill.tokensPerSecond, dispatches: b.decode.dispatchesPerToken };
  },
  'dawn-busy-poll': async () => {
    polling.busy = true;
    try {
      return await rows.dawn();
    } finally {
      polling.busy = false;
    }
  },
  'dawn-chained': async () => rows.dawn(chained),
  'native-mesa25': async () => {
    const j = H.nativeJson(bench, mesa25);
    return { decode: j.decode_tokens_per_s, prefill: j.prefill_tokens_per_s, dispatches: j.decode_dispatches_per_token };
  },
  native: async () => {
    const j = H.nativeJson(bench);
    return { decode: j.decode_tokens_per_s, prefill: j.prefill_tokens_per_s, dispatches: j.decode_dispatches_per_token };
  },
};

// One warm-up of each (pipeline compilation, the driver's shader cache), not counted.
for (const run of Object.values(rows)) await run();
const results = Object.fromEntries(Object.keys(rows).map((k) => [k, []]));
for (let i = 0; i < pairs; i++) {
  for (const [name, run] of Object.entries(rows)) results[name].push(await run());
  log(`pair ${i + 1}/${pairs}: ` + Object.entries(results).map(([k, r]) => `${k} ${r[i].decode.toFixed(2)}`).join(', ') + ' decode tok/s');
}
await engine.unload();
await chained.unload();

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ratios = (what, against, row = 'dawn') => results[row].map((r, i) => r[what] / results[against][i][what]);
const summary = {
  model: path.basename(model),
  prompt_len: P,
  decode_steps: D,
  pairs,
  rows: Object.fromEntries(Object.entries(results).map(([k, r]) => [k, {
    decode_tokens_per_s_median: median(r.map((x) => x.decode)),
    prefill_tokens_per_s_median: median(r.map((x) => x.prefill)),
    dispatches_per_token: r[0].dispatches,
  }])),
  dawn_over_native_mesa25: { decode: ratios('decode', 'native-mesa25'), prefill: ratios('prefill', 'native-mesa25') },
  dawn_over_native: { decode: ratios('decode', 'native'), prefill: ratios('prefill', 'native') },
  dawn_chained_over_native_mesa25: { decode: ratios('decode', 'native-mesa25', 'dawn-chained'), prefill: ratios('prefill', 'native-mesa25', 'dawn-chained') },
  dawn_busy_poll_over_native_mesa25: { decode: ratios('decode', 'native-mesa25', 'dawn-busy-poll'), prefill: ratios('prefill', 'native-mesa25', 'dawn-busy-poll') },
};
if (json) {
  console.log(JSON.stringify(summary));
} else {
  const fmt = (xs) => `${median(xs).toFixed(2)}x (pairs: ${xs.map((x) => x.toFixed(2)).join(', ')})`;
  console.log(`${summary.model}, ${P}-token prompt, ${D} decode steps, ${pairs} pairs, medians:`);
  console.log('| row | decode tok/s | prefill tok/s | dispatches per token |');
  console.log('|---|---:|---:|---:|');
  for (const [k, r] of Object.entries(summary.rows))
    console.log(`| ${k} | ${r.decode_tokens_per_s_median.toFixed(2)} | ${r.prefill_tokens_per_s_median.toFixed(1)} | ${r.dispatches_per_token} |`);
  console.log(`Dawn / native on Mesa 25: decode ${fmt(summary.dawn_over_native_mesa25.decode)}, prefill ${fmt(summary.dawn_over_native_mesa25.prefill)}`);
  console.log(`Dawn / native on Mesa 22.3: decode ${fmt(summary.dawn_over_native.decode)}, prefill ${fmt(summary.dawn_over_native.prefill)}`);
  console.log(`Dawn with chained steps / native on Mesa 25: decode ${fmt(summary.dawn_chained_over_native_mesa25.decode)}`);
  console.log(`Dawn with its busy polling / native on Mesa 25: decode ${fmt(summary.dawn_busy_poll_over_native_mesa25.decode)}, prefill ${fmt(summary.dawn_busy_poll_over_native_mesa25.prefill)}`);
}
