#!/usr/bin/env node
// Reference outputs from llama.cpp (CPU, via node-llama-cpp 3.21.1) for the CPU reference forward pass.
//
// For SmolLM2-135M-Instruct Q4_1 and four prompts, this writes tests/fixtures/smollm2-greedy.json with:
//   - the exact prompt token ids llama.cpp uses (no BOS: the GGUF says tokenizer.ggml.add_bos_token = false, and
//     node-llama-cpp's model.tokenize() never adds one; the script asserts both),
//   - 64 greedily generated tokens (decoded one token at a time after a batched prefill),
//   - teacher-forced, in one batch on a fresh context, the top 5 [token id, natural-log probability] of the
//     next-token distribution at every position from the last prompt token to the second-to-last token
//     (entry k of "positions" sits at sequence position len(prompt_tokens)-1+k and predicts token k of
//     "continuation").
// The probabilities are the full softmax of the raw logits over the whole vocabulary (no temperature, top-k, top-p or
// min-p): with temperature 0 node-llama-cpp's sampler chain is just llama.cpp's greedy sampler, which only selects and
// leaves the logits alone. The script checks that every distribution covers the whole vocabulary, sums to 1, and equals
// the one from an explicit temperature 1 / top-k off / top-p 1 / min-p 0 chain.
//
// It also prints llama.cpp CPU prefill and decode speed (not stored in the fixture).
//
// Run from anywhere: node scripts/ref-generate.mjs   (needs scripts/node_modules: run scripts/setup first)
import {createHash} from "node:crypto";
import {createReadStream} from "node:fs";
import {mkdir, writeFile} from "node:fs/promises";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf";
const MODEL_PATH = path.join(ROOT, ".cache/models", MODEL_FILE);
const MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const OUT_PATH = path.join(ROOT, "tests/fixtures/smollm2-greedy.json");
const N_GEN = 64;
const TOP_N = 5;
const THREADS = 2; // pinned; ggml's CPU results do not depend on it, but keep runs comparable
const CONTEXT = {contextSize: 512, batchSize: 512, sequences: 1, flashAttention: false, threads: {ideal: THREADS, min: THREADS}};

const CASES = [
    {
        name: "chat-rainbow",
        prompt: "<|im_start|>user\nExplain how a rainbow forms, step by step.<|im_end|>\n<|im_start|>assistant\n",
        special: true // parse <|im_start|>/<|im_end|> as special tokens
    },
    {
        name: "story-village",
        prompt: "Once upon a time, in a small village at the edge of a great forest, there lived",
        special: false
    },
    {
        name: "code-fibonacci",
        prompt: "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
        special: false
    },
    {
        name: "list-planets",
        prompt: "The planets of the solar system, in order from the Sun, are:\n1.",
        special: false
    }
];

const round6 = (x) => {
    const r = Math.round(x * 1e6) / 1e6;
    return Object.is(r, -0) ? 0 : r;
};

async function sha256File(file) {
    const h = createHash("sha256");
    for await (const chunk of createReadStream(file)) h.update(chunk);
    return h.digest("hex");
}

async function freshSequence(model) {
    const ctx = await model.createContext(CONTEXT);
    return {ctx, seq: ctx.getSequence()};
}

// Greedy generation; returns the tokens and timings (first token = prefill + one sampling step).
async function greedy(model, promptTokens) {
    const {ctx, seq} = await freshSequence(model);
    const out = [];
    const t0 = performance.now();
    let tFirst = 0;
    for await (const tok of seq.evaluate(promptTokens, {temperature: 0, topK: 1})) {
        if (out.length === 0) tFirst = performance.now();
        out.push(tok);
        if (out.length >= N_GEN) break;
    }
    const tEnd = performance.now();
    await ctx.dispose();
    return {tokens: out, prefillMs: tFirst - t0, decodeMs: tEnd - tFirst};
}

// Teacher-forced next-token distributions for positions [from, tokens.length - 2], one batch, fresh context.
async function teacherForced(model, tokens, from, sampleOptions) {
    const {ctx, seq} = await freshSequence(model);
    const input = tokens.map((t, i) => (i >= from && i < tokens.length - 1)
        ? [t, {generateNext: {token: true, probabilities: true, ...(sampleOptions ? {options: sampleOptions} : {})}}]
        : t);
    const res = await seq.controlledEvaluate(input);
    await ctx.dispose();
    const out = [];
    for (let i = from; i < tokens.length - 1; i++) {
        const next = res[i]?.next;
        if (next?.probabilities == null) throw new Error(`no probabilities at position ${i}`);
        out.push({token: next.token, probs: next.probabilities});
    }
    return out;
}

function topOf(probs, n) {
    const top = [];
    for (const [id, p] of probs) { // Map sorted by probability, high to low
        top.push([id, p]);
        if (top.length >= n) break;
    }
    return top;
}

async function main() {
    const sha = await sha256File(MODEL_PATH);
    if (sha !== MODEL_SHA256) throw new Error(`${MODEL_PATH}: sha256 ${sha}, expected ${MODEL_SHA256}`);

    const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath: MODEL_PATH, gpuLayers: 0});
    const vocabSize = Number(model.fileInfo.metadata.llama?.vocab_size ?? model.fileInfo.metadata.tokenizer.ggml.tokens.length);
    const addBosMeta = model.fileInfo.metadata.tokenizer?.ggml?.add_bos_token;
    const eog = new Set([model.tokens.eos, model.tokens.eot].filter((t) => t != null));
    console.log(`model: ${MODEL_FILE}, vocab ${vocabSize}, bos=${model.tokens.bos} eos=${model.tokens.eos} eot=${model.tokens.eot}`);
    console.log(`tokenizer.ggml.add_bos_token=${addBosMeta}, node-llama-cpp shouldPrependBosToken=${model.tokens.shouldPrependBosToken}`);
    if (addBosMeta !== false || model.tokens.shouldPrependBosToken !== false)
        throw new Error("expected no BOS for SmolLM2; revisit the BOS handling");

    const cases = [];
    const timings = [];
    let disagreements = 0, total = 0;
    for (const c of CASES) {
        // model.tokenize() calls common_tokenize(vocab, text, add_special=false, parse_special); with add_bos_token=false,
        // llama.cpp's own add_special=true would not add a BOS either, so these are exactly the ids llama.cpp uses.
        const promptTokens = Array.from(model.tokenize(c.prompt, c.special));
        if (c.special) {
            const imStart = Array.from(model.tokenize("<|im_start|>", true));
            if (imStart.length !== 1 || !promptTokens.includes(imStart[0])) throw new Error(`${c.name}: special tokens not parsed`);
        }

        const g = await greedy(model, promptTokens);
        const cont = g.tokens;
        if (cont.length !== N_GEN) throw new Error(`${c.name}: only ${cont.length} tokens generated`);
        const eogAt = cont.findIndex((t) => eog.has(t));
        if (eogAt >= 0) throw new Error(`${c.name}: end-of-generation token ${cont[eogAt]} at ${eogAt}; pick another prompt`);
        timings.push({name: c.name, nPrompt: promptTokens.length, ...g});

        const all = [...promptTokens, ...cont];
        const from = promptTokens.length - 1;
        const tf = await teacherForced(model, all, from);
        if (tf.length !== N_GEN) throw new Error("position count");

        // Full softmax over the whole vocabulary, and identical to an explicit no-truncation temperature 1 chain.
        const tfRaw = await teacherForced(model, all, from, {temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1});
        let maxDiff = 0, maxNormErr = 0;
        for (let k = 0; k < tf.length; k++) {
            const {probs} = tf[k];
            if (probs.size !== vocabSize) throw new Error(`${c.name}@${k}: ${probs.size} probabilities, vocab ${vocabSize}`);
            // node-llama-cpp normalizes by a float32 running sum (off by ~1e-4 over 49152 terms); every probability shares
            // that divisor, so renormalizing with a double sum recovers the exact softmax to float32 precision.
            let sum = 0;
            for (const p of probs.values()) sum += p;
            if (Math.abs(sum - 1) > 2e-3) throw new Error(`${c.name}@${k}: probabilities sum to ${sum}`);
            tf[k].logNorm = Math.log(sum);
            maxNormErr = Math.max(maxNormErr, Math.abs(sum - 1));
            if (tfRaw[k].probs.size !== vocabSize) throw new Error(`${c.name}@${k}: explicit chain truncated`);
            for (const [id, p] of probs) maxDiff = Math.max(maxDiff, Math.abs(p - tfRaw[k].probs.get(id)));
        }
        if (maxDiff > 1e-7) throw new Error(`${c.name}: temperature-0 and explicit raw probabilities differ by ${maxDiff}`);

        const positions = [];
        const exceptions = [];
        for (let k = 0; k < tf.length; k++) {
            const top = topOf(tf[k].probs, TOP_N);
            const top1 = top[0][0];
            total++;
            if (top1 !== cont[k] || tf[k].token !== cont[k]) {
                disagreements++;
                exceptions.push({k, greedy: cont[k], tfToken: tf[k].token, top: top.map(([id, p]) => [id, +p.toPrecision(6)])});
            }
            positions.push({top: top.map(([id, p]) => [id, round6(Math.log(p) - tf[k].logNorm)])});
        }
        console.log(`${c.name}: ${promptTokens.length} prompt tokens, ${cont.length} generated; ` +
            `teacher-forced top-1 != greedy at ${exceptions.length}/${tf.length}; raw-vs-explicit max |dp| ${maxDiff.toExponential(2)}; max |sum-1| ${maxNormErr.toExponential(2)}`);
        for (const e of exceptions) console.log(`  exception at continuation index ${e.k}: ${JSON.stringify(e)}`);
        console.log(`  continuation: ${JSON.stringify(model.detokenize(cont, true))}`);

        cases.push({
            name: c.name,
            prompt: c.prompt,
            prompt_tokens: promptTokens,
            continuation: cont,
            continuation_text: model.detokenize(cont, true),
            teacher_forced_greedy_mismatches: exceptions.map((e) => e.k),
            positions
        });
    }

    const fixture = {
        generator: "node-llama-cpp 3.21.1 (llama.cpp CPU)",
        model: MODEL_FILE,
        model_sha256: MODEL_SHA256,
        notes: [
            "Regenerate with scripts/make-fixtures (node scripts/ref-generate.mjs).",
            "prompt_tokens: model.tokenize(prompt, parseSpecial) as llama.cpp does it; no BOS (tokenizer.ggml.add_bos_token = false). Chat prompts parse special tokens.",
            "continuation: 64 greedy tokens (batched prefill, then one token per decode), no end-of-generation token among them.",
            "positions[k] is sequence position len(prompt_tokens)-1+k and predicts continuation[k]; computed teacher-forced over prompt+continuation in one batch on a fresh context.",
            "top: the 5 most likely next tokens as [token id, natural-log probability], probability = full softmax of the raw logits over the whole vocabulary (no temperature/top-k/top-p/min-p), renormalized in double precision, rounded to 6 decimals.",
            "teacher_forced_greedy_mismatches: continuation indices where the teacher-forced top-1 differs from the greedy token (batched vs single-token evaluation noise)."
        ],
        settings: {backend: "cpu", gpuLayers: 0, contextSize: CONTEXT.contextSize, batchSize: CONTEXT.batchSize, flashAttention: CONTEXT.flashAttention, threads: THREADS},
        cases
    };

    // Compact but diffable: one line per position.
    const lines = [];
    lines.push("{");
    for (const key of ["generator", "model", "model_sha256", "notes", "settings"])
        lines.push(`  ${JSON.stringify(key)}: ${JSON.stringify(fixture[key])},`);
    lines.push(`  "cases": [`);
    cases.forEach((cs, ci) => {
        lines.push("    {");
        for (const key of ["name", "prompt", "prompt_tokens", "continuation", "continuation_text", "teacher_forced_greedy_mismatches"])
            lines.push(`      ${JSON.stringify(key)}: ${JSON.stringify(cs[key])},`);
        lines.push(`      "positions": [`);
        cs.positions.forEach((p, pi) => lines.push(`        ${JSON.stringify(p)}${pi + 1 < cs.positions.length ? "," : ""}`));
        lines.push("      ]");
        lines.push(`    }${ci + 1 < cases.length ? "," : ""}`);
    });
    lines.push("  ]");
    lines.push("}");
    const text = lines.join("\n") + "\n";
    JSON.parse(text); // sanity
    await mkdir(path.dirname(OUT_PATH), {recursive: true});
    await writeFile(OUT_PATH, text);
    console.log(`wrote ${path.relative(ROOT, OUT_PATH)} (${text.length} bytes); teacher-forced/greedy disagreements: ${disagreements}/${total}`);

    // ---- speed (printed only) ----
    // Prefill: one batch of every case's prompt+continuation tokens concatenated (fits the 512-token context), timed
    // without sampling; repeated, best of 3. Decode: greedy tokens 2..64 of each case above.
    const longTokens = cases.flatMap((cs) => [...cs.prompt_tokens, ...cs.continuation]).slice(0, CONTEXT.contextSize - 8);
    let bestPrefill = Infinity;
    for (let r = 0; r < 3; r++) {
        const {ctx, seq} = await freshSequence(model);
        const t0 = performance.now();
        await seq.evaluateWithoutGeneratingNewTokens(longTokens);
        bestPrefill = Math.min(bestPrefill, performance.now() - t0);
        await ctx.dispose();
    }
    const decMs = timings.reduce((s, t) => s + t.decodeMs, 0);
    const decTok = timings.reduce((s, t) => s + (N_GEN - 1), 0);
    console.log(`llama.cpp CPU (${THREADS} threads) speed on SmolLM2-135M Q4_1:`);
    console.log(`  prefill: ${longTokens.length} tokens in ${bestPrefill.toFixed(1)} ms = ${(longTokens.length / bestPrefill * 1000).toFixed(1)} tok/s (best of 3, one batch)`);
    for (const t of timings)
        console.log(`  ${t.name}: prefill ${t.nPrompt} tok + first token ${t.prefillMs.toFixed(1)} ms; decode ${N_GEN - 1} tok ${(((N_GEN - 1) / t.decodeMs) * 1000).toFixed(1)} tok/s`);
    console.log(`  decode: ${decTok} tokens in ${decMs.toFixed(1)} ms = ${(decTok / decMs * 1000).toFixed(1)} tok/s (greedy, one token per step)`);

    await model.dispose();
    await llama.dispose();
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
