// Checks the wasm32 build of the library: runs wasm-bindgen on it and exercises the bindings
// in Node against the same llama.cpp fixtures as the native tests, so the wasm tokenizer
// (fancy-regex, no threads) is proven identical. Prints "N passed, M failed".
import { execFileSync } from 'node:child_process';
import { readFileSync, openSync, readSync, closeSync, statSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const wasm = join(root, 'target/wasm32-unknown-unknown/release/llama_webgpu.wasm');
const out = join(root, '.cache/wasm-check');
mkdirSync(out, { recursive: true });
execFileSync('wasm-bindgen', ['--target', 'nodejs', '--out-dir', out, wasm], { stdio: 'inherit' });
const require = createRequire(import.meta.url);
const lib = require(join(out, 'llama_webgpu.js'));

let passed = 0, failed = 0;
function check(name, fn) {
  try { fn(); passed++; console.log(`ok   ${name}`); }
  catch (e) { failed++; console.log(`FAIL ${name}: ${e.stack || e}`); }
}
function eq(a, b, what) {
  const [x, y] = [JSON.stringify(a), JSON.stringify(b)];
  if (x !== y) throw new Error(`${what}: got ${x.slice(0, 200)}, want ${y.slice(0, 200)}`);
}

// Stream SmolLM2 through the incremental parser in odd-sized chunks, as fetch() would.
const model = join(root, '.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf');
const size = statSync(model).size;
const fd = openSync(model, 'r');
const stream = new lib.GgufStream(size);
let at = 0, done = false;
const buf = Buffer.alloc(50_001);
while (!done) {
  const n = readSync(fd, buf, 0, buf.length, at);
  if (n === 0) { stream.finish(); break; }
  at += n;
  done = stream.feed(buf.subarray(0, n));
}
const header = stream.header();
check('streamed GGUF header', () => {
  eq(header.architecture, 'llama', 'architecture');
  eq(header.tensors.length, 272, 'tensor count');
  const rem = stream.takeRemainder();
  eq(rem.offset + rem.bytes.length, at, 'remainder ends where feeding stopped');
});
check('routing data bytes to tensors', () => {
  const t = header.tensors.find((t) => t.name === 'output_norm.weight');
  const piece = Buffer.alloc(t.size + 64);
  readSync(fd, piece, 0, piece.length, t.offset - 32);
  const parts = stream.route(t.offset - 32, piece);
  const mine = parts.filter((p) => header.tensors[p.tensor].name === t.name);
  eq(mine.length, 1, 'one piece'); eq(mine[0].last, true, 'complete'); eq(mine[0].bytes.length, t.size, 'size');
});
closeSync(fd);

const tok = stream.tokenizer();
for (const [name, file] of [['smollm2', 'tokenize-smollm2.json']]) {
  const fx = JSON.parse(readFileSync(join(root, 'tests/fixtures', file), 'utf8'));
  check(`${name}: ${fx.cases.length} llama.cpp tokenizations, both special modes`, () => {
    for (const c of fx.cases) {
      eq(Array.from(tok.encode(c.text, false)), c.ids, JSON.stringify(c.text));
      eq(Array.from(tok.encode(c.text, true)), c.ids_special, JSON.stringify(c.text) + ' (special)');
    }
  });
  check(`${name}: stop ids`, () => eq(Array.from(tok.stopIds).sort((a, b) => a - b), fx.eog, 'eog'));
}
check('chat template matches llama.cpp', () => {
  const fx = JSON.parse(readFileSync(join(root, 'tests/fixtures/chat-smollm2.json'), 'utf8'));
  for (const c of fx.cases) eq(tok.applyChatTemplate(fx.messages, c.add_generation_prompt), c.prompt, 'prompt');
});
check('Llama 3 tokenizer.json in wasm', () => {
  const t3 = lib.Tokenizer.fromJson(readFileSync(join(root, '.cache/models/llama3.1-tokenizer.json')));
  const fx = JSON.parse(readFileSync(join(root, 'tests/fixtures/tokenize-llama3.json'), 'utf8'));
  for (const c of fx.cases) eq(Array.from(t3.encode(c.text, true)), c.ids_special, JSON.stringify(c.text));
});
check('errors carry a code', () => {
  const s = new lib.GgufStream(16);
  try { s.feed(new TextEncoder().encode('not a gguf file!')); throw new Error('no error'); }
  catch (e) { eq(e.code, 'BAD_GGUF', 'code'); if (!/not a GGUF file/.test(e.message)) throw e; }
  const t = new lib.GgufStream(undefined);
  t.feed(new Uint8Array([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0]));
  try { t.finish(); throw new Error('no error'); } catch (e) { eq(e.code, 'BAD_GGUF', 'truncated code'); }
});
console.log(`wasm: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
