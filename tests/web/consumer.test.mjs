// The npm package as web developers get it: `npm pack` of www/package (the tarball users would
// install), then
//   - package hygiene: the tarball holds only what users need (every module the entry points load,
//     the wasm and its glue, the generated declarations and every file they refer to, README,
//     LICENSE, package.json: nothing else), `exports`/`main`/`types` point at shipped files,
//     `sideEffects` lists exactly the modules with import-time side effects, and the gzipped wasm and
//     the tarball stay within package.json's `sizeBudget`;
//   - tests/consumer/vite-app/ installed from that tarball (vite from the registry, cached in
//     .cache/consumer/vite-app/node_modules between runs) and built by `vite build` with no Vite
//     configuration: the default worker and the wasm are emitted, and in headless Chromium the built
//     app loads SmolLM2 from a local server and streams a chat answer (4 tokens);
//   - the same app under `vite` (dev server): the default worker and the wasm start there too;
//   - tests/consumer/plain/index.html, a plain page whose <script type="module"> imports the
//     package's ESM entry from the unpacked tarball: no bundler, same answer;
//   - in every browser run, no request goes to any host but 127.0.0.1 (all requests, the worker's
//     included, pass a route that blocks and records anything else);
//   - README.md's "Using the npm package in an app" shows exactly these files, and the budgets.
// TypeScript consumers are checked by types.test.mjs.
//
// Needs scripts/build-web (the wasm), the test model (scripts/setup), and the npm registry the
// first time (vite). Run: node --test tests/web/consumer.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import * as H from './harness.mjs';

const PKG_DIR = path.join(H.REPO_ROOT, 'www/package');
const CONSUMER = path.join(H.REPO_ROOT, 'tests/consumer');
// Work copies (git-ignored). The app's package.json names the tarball as
// file:../../../.cache/consumer/llama-webgpu.tgz, which means the same file from
// tests/consumer/vite-app/ and from its copy in .cache/consumer/vite-app/.
const WORK = path.join(H.REPO_ROOT, '.cache/consumer');
const TGZ = path.join(WORK, 'llama-webgpu.tgz');
const VITE_APP = path.join(WORK, 'vite-app');
const PLAIN = path.join(WORK, 'plain');
const MODEL_URL = `/models/${path.basename(H.DEFAULT_MODEL)}`;
const query = (model) => `?model=${encodeURIComponent(model)}&prompt=${encodeURIComponent('Say hi.')}&max_tokens=4`;
// SwiftShader, 2 cores: a load plus 4 tokens takes ~22 s idle, ~115 s at load average 11; bounded.
const RUN_TIMEOUT = 240_000;
const MiB = 1024 * 1024;
const README_SECTION = '## Using the npm package in an app';

const ts = createRequire(path.join(H.REPO_ROOT, 'scripts/node_modules/'))('typescript');

let pack; // npm pack's JSON for the tarball
let pkgJson; // the packed package.json
let browser;
let viteReady; // memoized install + build
const net = { requested: [], routed: [], foreign: [], responses: [] };

/** Runs a command; throws with its output when it fails. */
function run(cmd, args, cwd, { timeout = 300_000 } = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, npm_config_update_notifier: 'false' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${r.error ?? ''}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

async function listFiles(dir, base = dir) {
  const out = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p, base)));
    else out.push(path.relative(base, p).split(path.sep).join('/'));
  }
  return out.sort();
}

/** Whether a request URL stays on this machine: http(s)/ws(s) to 127.0.0.1, or data:/blob:. */
function isLocal(url) {
  const u = new URL(url);
  if (['data:', 'blob:', 'about:'].includes(u.protocol)) return true;
  return ['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol) && u.hostname === '127.0.0.1';
}

before(async () => {
  assert.ok(fs.existsSync(path.join(PKG_DIR, 'wasm/llama_webgpu_bg.wasm')), 'www/package/wasm is missing: run scripts/build-web');
  assert.ok(fs.existsSync(H.DEFAULT_MODEL), `${H.DEFAULT_MODEL} is missing: run scripts/setup`);
  await fsp.mkdir(WORK, { recursive: true });

  // The tarball, exactly as `npm publish` would upload it.
  const packDir = await fsp.mkdtemp(path.join(WORK, 'pack-'));
  try {
    [pack] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', packDir], PKG_DIR));
    await fsp.rename(path.join(packDir, pack.filename), TGZ);
  } finally {
    await fsp.rm(packDir, { recursive: true, force: true });
  }

  // Unpacked as `npm install` would, for the plain page: PLAIN/node_modules/llama-webgpu/.
  await fsp.rm(PLAIN, { recursive: true, force: true });
  await fsp.mkdir(path.join(PLAIN, 'node_modules'), { recursive: true });
  run('tar', ['-xzf', TGZ, '-C', path.join(PLAIN, 'node_modules')], WORK);
  await fsp.rename(path.join(PLAIN, 'node_modules/package'), path.join(PLAIN, 'node_modules/llama-webgpu'));
  await fsp.copyFile(path.join(CONSUMER, 'plain/index.html'), path.join(PLAIN, 'index.html'));
  pkgJson = JSON.parse(await fsp.readFile(path.join(PLAIN, 'node_modules/llama-webgpu/package.json'), 'utf8'));

  browser = await H.launchBrowser();
  const { context } = browser;
  // Every request of every page and worker passes here; anything not on 127.0.0.1 is recorded and blocked.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    net.routed.push(url);
    if (isLocal(url)) return route.continue();
    net.foreign.push(url);
    return route.abort('blockedbyclient');
  });
  context.on('request', (r) => {
    net.requested.push(r.url());
    if (!isLocal(r.url())) net.foreign.push(r.url());
  });
  context.on('response', (r) => net.responses.push({ url: r.url(), status: r.status() }));
});

after(async () => {
  await browser?.close();
});

/**
 * Opens `url` in a new page and waits for the app's #status to read `done` or `error ...`.
 * @returns {Promise<{status: string, answer: string, requested: string[], routed: string[],
 *   responses: {url: string, status: number}[], phases: string, pageErrors: string[], ms: number}>}
 */
async function runApp(url) {
  const mark = { requested: net.requested.length, routed: net.routed.length, responses: net.responses.length };
  const page = await browser.context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // When each phase of #status began (download, upload, compile, generating, done), for the log.
  await page.addInitScript(() => {
    window.__phases = [];
    new MutationObserver(() => {
      const word = document.querySelector('#status')?.textContent.split(' ')[0];
      if (word && word !== window.__phases.at(-1)?.[0]) window.__phases.push([word, Math.round(performance.now())]);
    }).observe(document, { subtree: true, childList: true, characterData: true });
  });
  const t0 = Date.now();
  try {
    await page.goto(url);
    await page.waitForFunction(
      () => {
        const s = document.querySelector('#status')?.textContent ?? '';
        return s === 'done' || s.startsWith('error');
      },
      null,
      { timeout: RUN_TIMEOUT, polling: 250 },
    );
    return {
      status: await page.textContent('#status'),
      answer: await page.textContent('#answer'),
      requested: net.requested.slice(mark.requested),
      routed: net.routed.slice(mark.routed),
      responses: net.responses.slice(mark.responses),
      phases: (await page.evaluate(() => window.__phases)).map(([w, ms]) => `${w}@${(ms / 1000).toFixed(1)}s`).join(' '),
      pageErrors,
      ms: Date.now() - t0,
    };
  } finally {
    await page.close();
  }
}

/** The checks every full run shares: an answer, nothing off 127.0.0.1, the worker's fetches seen. */
function assertAnswered(r, t) {
  t.diagnostic(`${r.ms} ms (${r.phases}), answer ${JSON.stringify(r.answer)}`);
  assert.equal(r.status, 'done', `the app failed: ${r.status}; page errors: ${r.pageErrors.join('; ')}`);
  assert.ok(r.answer.trim().length > 0, 'the streamed answer is empty');
  assert.deepEqual(r.pageErrors, []);
  assert.deepEqual(net.foreign, [], 'requests left 127.0.0.1');
  // The model and the wasm are fetched by the engine's worker: seeing them proves the route
  // (and so the host check) covers worker requests too.
  assert.ok(r.routed.some((u) => new URL(u).pathname === MODEL_URL), `the route never saw the model request: ${r.routed.join(' ')}`);
  assert.ok(r.routed.some((u) => new URL(u).pathname.endsWith('.wasm')), 'the route never saw the wasm request');
}

// ---------------------------------------------------------------------------------------------
// Package hygiene

test('npm pack ships only what users need', () => {
  const files = pack.files.map((f) => f.path).sort();
  const allowed = [
    /^(package\.json|README\.md|LICENSE)$/,
    /^src\/[\w-]+\.js$/, // the ESM entry and its modules (which ones: the next test)
    /^types\/src\/[\w-]+\.d\.ts$/, // generated from the JSDoc by `npm pack` (prepack); which ones: below
    /^wasm\/llama_webgpu(\.js|_bg\.wasm)$/, // wasm-bindgen's glue and the module
    /^wasm\/snippets\/[\w-]+\/inline\d+\.js$/, // the glue's inline JS (src/gpu/web_subgroups.rs)
  ];
  const extra = files.filter((f) => !allowed.some((re) => re.test(f)));
  assert.deepEqual(extra, [], 'unexpected files in the tarball (tests, maps, build leftovers?)');
  for (const f of ['package.json', 'README.md', 'LICENSE', 'src/index.js', 'src/worker.js', 'types/src/index.d.ts',
    'wasm/llama_webgpu.js', 'wasm/llama_webgpu_bg.wasm']) {
    assert.ok(files.includes(f), `${f} is not in the tarball`);
  }
  assert.ok(!files.some((f) => /\.map$|(^|\/)tests?\/|\.test\.|\.spec\./.test(f)));
  // The tarball itself holds the same list (npm prefixes every entry with package/).
  const entries = run('tar', ['-tzf', TGZ], WORK).trim().split('\n').filter((e) => !e.endsWith('/'))
    .map((e) => e.replace(/^package\//, '')).sort();
  assert.deepEqual(entries, files);
  assert.equal(pack.bundled.length, 0);
  assert.deepEqual(pkgJson.dependencies ?? {}, {}, 'the package has no runtime dependencies (the plain page has no import map)');
});

/**
 * Relative module references of a JS file: imports, re-exports, import(), new URL(lit, import.meta.url);
 * of a declaration file: imports, re-exports and `import("...")` types.
 */
function moduleRefs(file, src) {
  const sf = ts.createSourceFile(file, src, ts.ScriptTarget.Latest, true, file.endsWith('.d.ts') ? ts.ScriptKind.TS : ts.ScriptKind.JS);
  const refs = [];
  const visit = (n) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) refs.push(n.moduleSpecifier.text);
    if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) refs.push(n.argument.literal.text);
    if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && ts.isStringLiteralLike(n.arguments[0])) refs.push(n.arguments[0].text);
    if (ts.isNewExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === 'URL' && n.arguments?.length === 2
      && ts.isStringLiteralLike(n.arguments[0]) && n.arguments[1].getText() === 'import.meta.url') {
      const u = n.arguments[0].text; // a URL: relative unless it has a scheme
      refs.push(/^[a-z][\w+.-]*:|^\//i.test(u) || u.startsWith('.') ? u : `./${u}`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return refs;
}

test('every file the entry points load is shipped, and every shipped module is loaded', async () => {
  const root = path.join(PLAIN, 'node_modules/llama-webgpu');
  const shipped = new Set(pack.files.map((f) => f.path));
  const exportTargets = [];
  const walkExports = (v) => {
    if (typeof v === 'string') exportTargets.push(v);
    else if (v && typeof v === 'object') Object.values(v).forEach(walkExports);
  };
  walkExports(pkgJson.exports);
  const entries = [pkgJson.main, pkgJson.module, ...exportTargets]
    .filter((t) => t && !t.includes('*') && t.endsWith('.js'))
    .map((t) => path.posix.normalize(t));
  assert.ok(entries.includes('src/index.js') && entries.includes('src/worker.js'), `entries: ${entries}`);
  const reached = new Set();
  const queue = [...entries];
  while (queue.length) {
    const f = queue.shift();
    if (reached.has(f)) continue;
    assert.ok(shipped.has(f), `${f} is loaded but not in the tarball`);
    reached.add(f);
    if (!f.endsWith('.js')) continue;
    for (const ref of moduleRefs(f, await fsp.readFile(path.join(root, f), 'utf8'))) {
      assert.ok(ref.startsWith('./') || ref.startsWith('../'), `${f} imports the bare specifier '${ref}': it would need an import map or a bundler`);
      queue.push(path.posix.normalize(path.posix.join(path.posix.dirname(f), ref)));
    }
  }
  assert.ok(reached.has('wasm/llama_webgpu_bg.wasm') && reached.has('wasm/llama_webgpu.js'));
  const unused = [...shipped].filter((f) => /\.(m?js|wasm)$/.test(f) && !reached.has(f));
  assert.deepEqual(unused, [], 'shipped code that nothing loads');
});

test('every declaration file the types entry refers to is shipped, and no other', async () => {
  const root = path.join(PLAIN, 'node_modules/llama-webgpu');
  const shipped = new Set(pack.files.map((f) => f.path));
  const reached = new Set();
  const queue = [path.posix.normalize(pkgJson.types)];
  while (queue.length) {
    const f = queue.shift();
    if (reached.has(f)) continue;
    assert.ok(shipped.has(f), `${f} is referred to by the declarations but not in the tarball`);
    reached.add(f);
    const text = await fsp.readFile(path.join(root, f), 'utf8');
    // tsc copies a typedef's JSDoc into the doc of the exported declaration after it.
    assert.doesNotMatch(text, /@typedef/, `${f} carries a copied @typedef comment: in its JS, no exported declaration may follow a typedef`);
    for (const ref of moduleRefs(f, text)) {
      assert.ok(ref.startsWith('./') || ref.startsWith('../'), `${f} refers to the bare specifier '${ref}': users would need it installed`);
      queue.push(path.posix.normalize(path.posix.join(path.posix.dirname(f), ref.replace(/\.js$/, '.d.ts'))));
    }
  }
  assert.ok(reached.has('types/src/errors.d.ts'), [...reached].join(' '));
  const unused = [...shipped].filter((f) => f.endsWith('.d.ts') && !reached.has(f));
  assert.deepEqual(unused, [], 'shipped declarations that the types entry does not refer to');
});

test('exports, main, module and types point at shipped files; exports has a types condition', () => {
  const shipped = new Set(pack.files.map((f) => f.path));
  const dot = pkgJson.exports?.['.'];
  assert.ok(dot && typeof dot === 'object', 'exports["."] must be a conditions object');
  assert.equal(Object.keys(dot)[0], 'types', 'the types condition must come first');
  assert.equal(pkgJson.type, 'module');
  for (const [what, target] of [['main', pkgJson.main], ['module', pkgJson.module], ['types', pkgJson.types],
    ...Object.entries(dot).map(([c, t]) => [`exports["."].${c}`, t])]) {
    assert.ok(shipped.has(path.posix.normalize(target)), `${what} → ${target} is not in the tarball`);
  }
  for (const [sub, target] of Object.entries(pkgJson.exports)) {
    if (typeof target !== 'string') continue;
    const t = path.posix.normalize(target);
    if (t.endsWith('*')) assert.ok([...shipped].some((f) => f.startsWith(t.slice(0, -1))), `exports["${sub}"] matches nothing`);
    else assert.ok(shipped.has(t), `exports["${sub}"] → ${target} is not in the tarball`);
  }
});

/**
 * What a module does when it is imported, beyond defining its own bindings: assignments to
 * anything but its own top-level bindings, calls other than methods of its own objects and a
 * few pure built-ins, `new` of anything but built-in containers, top-level await, bare imports.
 * Function and method bodies are not run at import time and are skipped.
 */
function importTimeEffects(file, src) {
  const sf = ts.createSourceFile(file, src, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const own = new Set();
  const names = (b) => (ts.isIdentifier(b) ? [b.text] : b.elements?.flatMap((e) => (e.name ? names(e.name) : [])) ?? []);
  for (const s of sf.statements) {
    if ((ts.isFunctionDeclaration(s) || ts.isClassDeclaration(s)) && s.name) own.add(s.name.text);
    if (ts.isVariableStatement(s)) for (const d of s.declarationList.declarations) names(d.name).forEach((n) => own.add(n));
  }
  const PURE_CALLS = new Set(['Object.freeze', 'Symbol', 'Symbol.for', 'String', 'Number', 'Boolean', 'Array.from', 'Object.keys', 'Object.entries']);
  const PURE_NEW = new Set(['Map', 'Set', 'WeakMap', 'WeakSet', 'TextDecoder', 'TextEncoder', 'FinalizationRegistry', 'Error',
    'RegExp', 'Int8Array', 'Uint8Array', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array']);
  const rootName = (e) => {
    while (ts.isPropertyAccessExpression(e) || ts.isElementAccessExpression(e) || ts.isParenthesizedExpression(e) || ts.isNonNullExpression?.(e)) e = e.expression;
    return ts.isIdentifier(e) ? e.text : e.kind === ts.SyntaxKind.ThisKeyword ? 'this' : null;
  };
  const ASSIGN = new Set([ts.SyntaxKind.EqualsToken, ts.SyntaxKind.PlusEqualsToken, ts.SyntaxKind.MinusEqualsToken,
    ts.SyntaxKind.AsteriskEqualsToken, ts.SyntaxKind.SlashEqualsToken, ts.SyntaxKind.BarEqualsToken, ts.SyntaxKind.AmpersandEqualsToken,
    ts.SyntaxKind.QuestionQuestionEqualsToken, ts.SyntaxKind.BarBarEqualsToken, ts.SyntaxKind.AmpersandAmpersandEqualsToken]);
  const effects = [];
  const flag = (n, why) => effects.push(`${file}:${sf.getLineAndCharacterOfPosition(n.getStart()).line + 1} ${why}: ${n.getText().split('\n')[0].slice(0, 70)}`);
  const visit = (n) => {
    if (ts.isFunctionLike(n)) return; // bodies run later (class static blocks are not function-like: visited)
    if (ts.isPropertyDeclaration(n) && !n.modifiers?.some((m) => m.kind === ts.SyntaxKind.StaticKeyword)) return;
    if (ts.isImportDeclaration(n) && !n.importClause) flag(n, 'import for effect');
    if (ts.isAwaitExpression(n)) flag(n, 'top-level await');
    if (ts.isBinaryExpression(n) && ASSIGN.has(n.operatorToken.kind) && !own.has(rootName(n.left))) flag(n, 'assigns outside the module');
    if ((ts.isPrefixUnaryExpression(n) || ts.isPostfixUnaryExpression(n))
      && [ts.SyntaxKind.PlusPlusToken, ts.SyntaxKind.MinusMinusToken].includes(n.operator) && !own.has(rootName(n.operand))) flag(n, 'assigns outside the module');
    if (ts.isDeleteExpression(n) && !own.has(rootName(n.expression))) flag(n, 'deletes outside the module');
    if (ts.isCallExpression(n)) {
      const callee = n.expression;
      const text = callee.getText();
      const ownMethod = ts.isPropertyAccessExpression(callee) && own.has(rootName(callee));
      if (!ownMethod && !PURE_CALLS.has(text)) flag(n, 'calls');
    }
    if (ts.isTaggedTemplateExpression(n)) flag(n, 'calls');
    if (ts.isNewExpression(n) && !(ts.isIdentifier(n.expression) && (PURE_NEW.has(n.expression.text) || own.has(n.expression.text)))) flag(n, 'constructs');
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return effects;
}

test('sideEffects names exactly the modules with import-time side effects', async () => {
  const root = path.join(PLAIN, 'node_modules/llama-webgpu');
  const modules = pack.files.map((f) => f.path).filter((f) => f.endsWith('.js'));
  const effects = {};
  for (const f of modules) {
    const e = importTimeEffects(f, await fsp.readFile(path.join(root, f), 'utf8'));
    if (e.length) effects[f] = e;
  }
  // worker.js installs self.onmessage: it must stay listed, or a bundler may drop it as unused.
  assert.ok(effects['src/worker.js']?.some((e) => e.includes('self.onmessage')), JSON.stringify(effects));
  const declared = pkgJson.sideEffects;
  assert.ok(declared === false || Array.isArray(declared), 'sideEffects should be false or a list, so bundlers can tree-shake the rest');
  const globToRe = (g) => new RegExp(`^${path.posix.normalize(g).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*\/?/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\u0000/g, '.*')}$`);
  const patterns = (declared || []).map(globToRe);
  const listed = modules.filter((f) => patterns.some((re) => re.test(f)));
  assert.deepEqual(listed.sort(), Object.keys(effects).sort(),
    `modules listed in sideEffects vs. modules with import-time effects:\n${Object.values(effects).flat().join('\n')}`);
});

test('size budget: gzipped wasm and tarball within package.json "sizeBudget"', async (t) => {
  const budget = pkgJson.sizeBudget;
  assert.ok(budget?.wasmGzipMiB > 0 && budget?.tarballMiB > 0, 'package.json needs sizeBudget: {wasmGzipMiB, tarballMiB}');
  const wasm = await fsp.readFile(path.join(PKG_DIR, 'wasm/llama_webgpu_bg.wasm'));
  const gz = zlib.gzipSync(wasm).length; // gzip's default level, as `gzip -c`
  const tarball = (await fsp.stat(TGZ)).size;
  const mib = (n) => `${(n / MiB).toFixed(3)} MiB (${n} B)`;
  t.diagnostic(`wasm ${mib(wasm.length)}, gzipped ${mib(gz)} (budget ${budget.wasmGzipMiB} MiB); tarball ${mib(tarball)} (budget ${budget.tarballMiB} MiB), ${pack.entryCount} files, unpacked ${mib(pack.unpackedSize)}`);
  assert.ok(gz <= budget.wasmGzipMiB * MiB, `the gzipped wasm is ${mib(gz)}, over the ${budget.wasmGzipMiB} MiB budget: shrink it, or raise sizeBudget.wasmGzipMiB in www/package/package.json (and README.md) on purpose`);
  assert.ok(tarball <= budget.tarballMiB * MiB, `the tarball is ${mib(tarball)}, over the ${budget.tarballMiB} MiB budget: shrink it, or raise sizeBudget.tarballMiB in www/package/package.json (and README.md) on purpose`);
});

test('README.md shows the tested apps and the size budgets', async () => {
  const readme = await fsp.readFile(path.join(H.REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${README_SECTION}\n`);
  assert.ok(start >= 0, `README.md has no "${README_SECTION}" section`);
  const rest = readme.slice(start + README_SECTION.length + 2);
  const section = rest.slice(0, rest.search(/^## /m) >>> 0);
  const blocks = [...section.matchAll(/^```\w*\n([\s\S]*?)^```$/gm)].map((m) => m[1].trim());
  for (const f of ['vite-app/index.html', 'vite-app/main.js', 'plain/index.html']) {
    const src = (await fsp.readFile(path.join(CONSUMER, f), 'utf8')).trim();
    assert.ok(blocks.includes(src), `README.md's "${README_SECTION}" should show tests/consumer/${f} verbatim`);
  }
  for (const n of [pkgJson.sizeBudget.wasmGzipMiB, pkgJson.sizeBudget.tarballMiB]) {
    assert.ok(section.includes(`${n} MiB`), `the section should state the ${n} MiB budget`);
  }
});

// ---------------------------------------------------------------------------------------------
// The apps in headless Chromium

/** Installs the tarball and vite into the work copy of the Vite app and builds it (once per run). */
function installViteApp() {
  viteReady ??= (async () => {
    const t0 = Date.now();
    await fsp.mkdir(VITE_APP, { recursive: true });
    for (const f of await fsp.readdir(path.join(CONSUMER, 'vite-app'))) {
      if (f === 'node_modules' || f === 'dist') continue;
      await fsp.copyFile(path.join(CONSUMER, 'vite-app', f), path.join(VITE_APP, f));
    }
    // A locked tarball entry carries no integrity (the tarball changes with every build); and npm
    // may keep an installed file: dependency whose tarball changed, so always reinstall it.
    const lockFile = path.join(VITE_APP, 'package-lock.json');
    const lock = JSON.parse(await fsp.readFile(lockFile, 'utf8'));
    delete lock.packages?.['node_modules/llama-webgpu']?.integrity;
    await fsp.writeFile(lockFile, JSON.stringify(lock, null, 2));
    await fsp.rm(path.join(VITE_APP, 'node_modules/llama-webgpu'), { recursive: true, force: true });
    await fsp.rm(path.join(VITE_APP, 'node_modules/.vite'), { recursive: true, force: true }); // dev pre-bundles
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], VITE_APP);
    // The installed package is the tarball's content, byte for byte.
    const installed = path.join(VITE_APP, 'node_modules/llama-webgpu');
    const unpacked = path.join(PLAIN, 'node_modules/llama-webgpu');
    const files = await listFiles(installed);
    assert.deepEqual(files, await listFiles(unpacked));
    for (const f of files) {
      assert.equal(sha256(await fsp.readFile(path.join(installed, f))), sha256(await fsp.readFile(path.join(unpacked, f))), `${f} differs from the tarball`);
    }
    const installMs = Date.now() - t0;
    const t1 = Date.now();
    // `vite build`, as `npm run build` runs it: no config file, no options.
    run(path.join(VITE_APP, 'node_modules/.bin/vite'), ['build', '--logLevel', 'warn'], VITE_APP);
    return { installMs, buildMs: Date.now() - t1 };
  })();
  return viteReady;
}

test('Vite app built with no configuration streams a chat answer, all requests on 127.0.0.1', async (t) => {
  const { installMs, buildMs } = await installViteApp();
  t.diagnostic(`npm install ${installMs} ms, vite build ${buildMs} ms`);
  const dist = path.join(VITE_APP, 'dist');
  const assets = await listFiles(dist);
  const pkgWasm = sha256(await fsp.readFile(path.join(PKG_DIR, 'wasm/llama_webgpu_bg.wasm')));
  const wasmAssets = assets.filter((f) => f.endsWith('.wasm'));
  assert.ok(wasmAssets.length >= 1, `vite build emitted no wasm: ${assets}`);
  for (const w of wasmAssets) assert.equal(sha256(await fsp.readFile(path.join(dist, w))), pkgWasm, `${w} is not the package's wasm`);
  const workerChunk = assets.find((f) => /^assets\/worker-[\w-]+\.js$/.test(f));
  assert.ok(workerChunk, `vite build emitted no worker chunk: ${assets}`);
  // The worker is bundled (a self-contained script), not worker.js copied with its imports.
  const workerJs = await fsp.readFile(path.join(dist, workerChunk), 'utf8');
  assert.doesNotMatch(workerJs, /\bfrom\s*["']\.{1,2}\//, 'the worker chunk still imports package-relative modules');
  const sizes = await Promise.all(assets.map(async (f) => `${f} ${(await fsp.stat(path.join(dist, f))).size} B`));
  t.diagnostic(`dist: ${sizes.join(', ')}`);

  const server = await H.startServer({ root: dist, mounts: { '/models/': H.MODELS_DIR } });
  try {
    const r = await runApp(new URL(`/${query(MODEL_URL)}`, server.url).href);
    assertAnswered(r, t);
    const log = server.log();
    const served = (p) => log.some((e) => e.path === p && e.status >= 200 && e.status < 300);
    assert.ok(served(`/${workerChunk}`), 'the worker chunk was not loaded');
    for (const w of wasmAssets.filter((w) => served(`/${w}`))) t.diagnostic(`wasm served from /${w}`);
    assert.ok(wasmAssets.some((w) => served(`/${w}`)), 'no emitted wasm was loaded');
    assert.ok(log.some((e) => e.path === MODEL_URL && e.method === 'GET' && e.status >= 200 && e.status < 300));
  } finally {
    await server.close();
  }
});

test('Vite dev server, no configuration: the default worker and the wasm start', async (t) => {
  await installViteApp();
  const vite = await import(pathToFileURL(createRequire(path.join(VITE_APP, 'package.json')).resolve('vite')).href);
  const server = await vite.createServer({
    root: VITE_APP,
    logLevel: 'warn',
    clearScreen: false,
    server: { host: '127.0.0.1', port: 0, strictPort: true },
  });
  await server.listen();
  try {
    const base = server.resolvedUrls.local[0];
    // No model is served here (a model in public/ would be copied into dist/): the load gets as
    // far as the download, which fails inside the worker after the wasm and WebGPU started.
    const r = await runApp(new URL(`/${query('/models/absent.gguf')}`, base).href);
    t.diagnostic(`${r.ms} ms: ${r.status}`);
    assert.match(r.status, /^error (BAD_GGUF|NETWORK_ERROR):/, `the worker did not get to the download: ${r.status}`);
    const ok = (re) => r.responses.some((x) => re.test(new URL(x.url).pathname) && x.status === 200);
    assert.ok(ok(/\/llama-webgpu\/src\/worker\.js$/), `worker.js was not served: ${r.requested.join(' ')}`);
    assert.ok(ok(/\.wasm$/), 'the wasm was not served');
    assert.deepEqual(net.foreign, [], 'requests left 127.0.0.1');
  } finally {
    await server.close();
  }
});

test('sideEffects lets Vite drop the engine from an app that imports only ErrorCode', async (t) => {
  await installViteApp();
  // A second entry inside the app folder, so 'llama-webgpu' resolves to the installed tarball.
  const dir = path.join(VITE_APP, 'treeshake');
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir);
  await fsp.writeFile(path.join(dir, 'index.html'), '<!doctype html>\n<script type="module" src="./m.js"></script>\n');
  await fsp.writeFile(path.join(dir, 'm.js'), "import { ErrorCode } from 'llama-webgpu';\ndocument.body.textContent = ErrorCode.NO_WEBGPU;\n");
  const vite = await import(pathToFileURL(createRequire(path.join(VITE_APP, 'package.json')).resolve('vite')).href);
  try {
    const out = await vite.build({ root: dir, logLevel: 'silent', build: { write: false } });
    const js = (Array.isArray(out) ? out : [out]).flatMap((o) => o.output).filter((c) => c.type === 'chunk');
    const bytes = js.reduce((n, c) => n + Buffer.byteLength(c.code), 0);
    t.diagnostic(`${js.length} chunk(s), ${bytes} B of JS`);
    assert.ok(bytes < 4096, `${bytes} B of JS for ErrorCode alone: something in the package is kept for its side effects`);
    assert.ok(!js.some((c) => /new Worker|__wbg_|WebAssembly/.test(c.code)), 'the engine, worker or wasm glue was bundled');
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('plain <script type="module"> page importing the unpacked tarball streams a chat answer', async (t) => {
  const server = await H.startServer({ root: PLAIN, mounts: { '/models/': H.MODELS_DIR } });
  try {
    const r = await runApp(new URL(`/${query(MODEL_URL)}`, server.url).href);
    assertAnswered(r, t);
    const log = server.log();
    const served = (p) => log.some((e) => e.path === p && e.status >= 200 && e.status < 300);
    for (const f of ['src/index.js', 'src/worker.js', 'wasm/llama_webgpu.js', 'wasm/llama_webgpu_bg.wasm']) {
      assert.ok(served(`/node_modules/llama-webgpu/${f}`), `${f} was not loaded from the installed package`);
    }
  } finally {
    await server.close();
  }
});
