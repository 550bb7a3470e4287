// Type-checks the npm package's TypeScript declarations the way an app would consume them. The
// declarations are generated from the package's JSDoc (`tsc -p www/package`, run by
// scripts/build-web into www/package/types/): the first tests check that tsc finds no error in
// the JS and that types/ is what the current source generates. Then tests/web/types/ is copied
// into a temporary project whose node_modules/llama-webgpu links to www/package, so the import
// goes through package.json's "types" conditions. ok.ts (every public API in use) must pass under
// "bundler" and under "nodenext" with extra strictness flags; misuse.ts must fail with exactly the
// errors it marks. Needs TypeScript in scripts/node_modules (scripts/setup) and the wasm glue
// (scripts/build-web). Run: node --test tests/web/types.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TSC = path.join(REPO_ROOT, 'scripts/node_modules/typescript/bin/tsc');
const SRC = path.join(REPO_ROOT, 'tests/web/types');
const PKG = path.join(REPO_ROOT, 'www/package');
const TYPES = path.join(PKG, 'types');

let dir;
let generated; // tsc -p www/package into a temporary folder: {status, out}

before(async () => {
  assert.ok(fs.existsSync(TSC), `${TSC} is missing: run scripts/setup (TypeScript is a dev tool in scripts/package.json)`);
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'llama-webgpu-types-'));
  for (const f of await fsp.readdir(SRC)) await fsp.copyFile(path.join(SRC, f), path.join(dir, f));
  // ESM, as a modern app is; NodeNext needs it to treat ok.ts as an ES module.
  await fsp.writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  await fsp.mkdir(path.join(dir, 'node_modules'));
  await fsp.symlink(PKG, path.join(dir, 'node_modules/llama-webgpu'), 'dir');
  const r = spawnSync(process.execPath, [TSC, '-p', PKG, '--outDir', path.join(dir, 'generated'), '--pretty', 'false'], { encoding: 'utf8' });
  generated = { status: r.status, out: `${r.stdout}${r.stderr}` };
});

after(async () => {
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

/** Runs tsc on a project file of the temp dir: {status, errors: [{file, line, code, message}], out}. */
function tsc(project) {
  const r = spawnSync(process.execPath, [TSC, '--noEmit', '--strict', '--pretty', 'false', '-p', path.join(dir, project)], {
    cwd: dir,
    encoding: 'utf8',
  });
  const out = `${r.stdout}${r.stderr}`;
  const errors = [];
  for (const m of out.matchAll(/^(.+?)\((\d+),\d+\): error (TS\d+): (.*)$/gm)) {
    errors.push({ file: path.basename(m[1]), line: Number(m[2]), code: m[3], message: m[4] });
  }
  return { status: r.status, errors, out };
}

/** Every file under `root`, as relative paths → contents. */
async function readTree(root) {
  const out = {};
  for (const e of await fsp.readdir(root, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath ?? e.path, e.name);
    out[path.relative(root, p)] = await fsp.readFile(p, 'utf8');
  }
  return out;
}

test('tsc finds no error in the package JS, and every module is checked', async () => {
  const src = path.join(PKG, 'src');
  for (const f of (await fsp.readdir(src)).filter((f) => f.endsWith('.js'))) {
    const text = await fsp.readFile(path.join(src, f), 'utf8');
    assert.ok(text.startsWith('// @ts-check\n'), `src/${f} must start with // @ts-check (tsconfig.json checks no JS file without it)`);
  }
  assert.equal(generated.status, 0, `tsc -p www/package:\n${generated.out}`);
  assert.ok(fs.existsSync(path.join(dir, 'generated/src/index.d.ts')));
});

test('www/package/types is what the current source generates (scripts/build-web regenerates it)', async () => {
  assert.ok(fs.existsSync(TYPES), 'www/package/types is missing: run scripts/build-web');
  const fresh = await readTree(path.join(dir, 'generated'));
  const built = await readTree(TYPES);
  assert.deepEqual(Object.keys(built).sort(), Object.keys(fresh).sort(), 'stale or missing declaration files: run scripts/build-web');
  for (const [f, text] of Object.entries(fresh)) {
    assert.equal(built[f], text, `types/${f} is stale: run scripts/build-web`);
  }
});

test('the package.json "types" wiring points at the declarations', async () => {
  const pkg = JSON.parse(await fsp.readFile(path.join(PKG, 'package.json'), 'utf8'));
  assert.equal(pkg.types, './types/src/index.d.ts');
  const dot = pkg.exports['.'];
  assert.equal(Object.keys(dot)[0], 'types', 'the "types" condition must come first in exports["."]');
  assert.equal(dot.types, './types/src/index.d.ts');
  assert.ok(fs.existsSync(path.join(PKG, 'types/src/index.d.ts')));
});

test('the declarations name every ErrorCode in errors.js', async () => {
  const js = await fsp.readFile(path.join(PKG, 'src/errors.js'), 'utf8');
  const dts = await fsp.readFile(path.join(TYPES, 'src/errors.d.ts'), 'utf8');
  const codes = (src, re) => [...src.matchAll(re)].map((m) => m[1]).sort();
  const jsCodes = codes(js.slice(js.indexOf('ErrorCode = Object.freeze')), /^\s+([A-Z_]+): '\1',$/gm);
  // tsc writes the literal types with double quotes.
  const dtsCodes = codes(dts.slice(dts.indexOf('const ErrorCode')), /^\s+([A-Z_]+): (['"])\1\2;$/gm);
  assert.ok(jsCodes.length >= 20, `parsed ${jsCodes.length} codes from errors.js`);
  assert.deepEqual(dtsCodes, jsCodes);
});

test('ok.ts, using the whole public API, type-checks (moduleResolution bundler)', () => {
  const r = tsc('tsconfig.json');
  assert.equal(r.status, 0, r.out);
  assert.deepEqual(r.errors, []);
});

test('ok.ts type-checks under NodeNext with exactOptionalPropertyTypes and noUncheckedIndexedAccess', () => {
  const r = tsc('tsconfig.nodenext.json');
  assert.equal(r.status, 0, r.out);
  assert.deepEqual(r.errors, []);
});

test('misuse.ts fails with exactly the errors it marks', async () => {
  const src = await fsp.readFile(path.join(dir, 'misuse.ts'), 'utf8');
  const expected = [];
  src.split('\n').forEach((line, i) => {
    const m = /\/\/ ERROR (TS\d+)\s*$/.exec(line);
    if (m) expected.push(`misuse.ts:${i + 1} ${m[1]}`);
  });
  assert.ok(expected.length >= 15, `only ${expected.length} marked misuses`);
  const r = tsc('tsconfig.misuse.json');
  assert.notEqual(r.status, 0, 'misuse.ts type-checked: the declarations are too loose');
  const got = r.errors.map((e) => `${e.file}:${e.line} ${e.code}`);
  assert.deepEqual(got, expected, r.out);
  assert.equal(r.errors.length, expected.length);
});
