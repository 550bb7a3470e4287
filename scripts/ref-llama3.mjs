#!/usr/bin/env node
// Reference log-probabilities from llama.cpp (CPU, via the pinned node-llama-cpp 3.21.1) for synthetic Llama-3-shaped
// models, which have what SmolLM2 lacks: rope_freqs frequency factors (RoPE scaling 8 as in Llama 3.1, 32 as in 3.2),
// head size 128, 4:1 and 3:1 grouped-query attention, an untied output matrix, the 128,256-token output layer; and the
// tiny shape in the other families' blocks (Qwen2, Qwen3, Gemma 3), which no registry has small real weights of but
// Gemma 3 270M.
// Writes tests/fixtures/llama3-synth.json; tests/llama3_reference.rs reads it, so it does not need llama.cpp.
//
//     node scripts/ref-llama3.mjs          (run scripts/setup first; scripts/make-fixtures runs this)
//
// For each case of CASES:
//   1. `llama-webgpu synth` (our release binary, built by cargo if needed) writes the model in the case's mix (Q4_K_M,
//      or IQ2_M: lattice types llama.cpp makes only with an importance matrix), random but valid weights from a fixed
//      seed; --layers keeps the first N blocks of the 1B / 3B shapes (same per-layer shapes, vocabulary,
//      output and RoPE scaling). The file's sha256 is recorded: the test writes it again and checks the sum.
//   2. llama.cpp dequantizes it to F32 (llama_model_quantize, ftype ALL_F32, allow_requantize, through
//      scripts/requant.py's ctypes binding). That file's sha256 is recorded too: the test writes its own F32 file and
//      must get exactly these bytes, so both engines run the same weights.
//   3. llama.cpp scores TOKENS teacher-forced in one batch on a fresh context (flash attention off) and keeps, at each
//      of the last N_SCORED positions, the TOP_N most likely next tokens as [id, natural-log probability] (full
//      softmax over the whole vocabulary, renormalized in double precision, 6 decimals). Three runs:
//        f32        the F32 file, F32 KV cache: no rounding anywhere but f32's. Two correct f32 implementations agree
//                   here to ~1e-5 nats.
//        f32_kv16   the F32 file, F16 KV cache (llama.cpp's default). On the CPU llama.cpp then also rounds Q and the
//                   softmax weights to f16 for the K·Q and V·softmax products.
//        quantized  the synthetic quantized file itself, F16 KV cache: llama.cpp quantizes activations to 8 bits (Q8_K)
//                   before every quantized matmul, which moves log-probabilities by hundredths of a nat.
// The distance between the f32 and quantized runs is llama.cpp's own activation-quantization noise on these weights;
// the test bounds its quantized comparison by it.
//
// TOKENS is llama.cpp's tokenization of TEXT (with BOS), cut to N_TOKENS. Positions are scored late in the sequence
// (N_TOKENS - N_SCORED .. N_TOKENS - 1), where the RoPE angles of the scaled (low-frequency) pairs are large enough
// that a model without the frequency factors scores differently.
//
// Everything runs on 1 thread (thread count does not change the results). A rerun gives the same JSON.
import {spawnSync} from "node:child_process";
import {existsSync, rmSync} from "node:fs";
import {mkdir, readFile} from "node:fs/promises";
import path from "node:path";
import {
    CONTEXT, NLC_VERSION, ROOT, THREADS, TOP_N, checkFullSoftmax, cpuKernels, dequantizeToF32, llamaCppRelease, positionsJson,
    sha256File, startLlama, teacherForced, writeFixture
} from "./llama-cpp.mjs";

const OUT_PATH = path.join(ROOT, "tests/fixtures/llama3-synth.json");
const WORK = path.join(ROOT, ".cache/llama3-ref");
const VOCAB = path.join(ROOT, ".cache/models/ggml-vocab-llama-bpe.gguf");
const TEMPLATE = path.join(ROOT, ".cache/models/meta-llama-Llama-3.1-8B-Instruct.jinja");
const BIN = path.join(ROOT, "target/release/llama-webgpu");

// What each case has that the others do not is in `covers`. tests/llama3_reference.rs writes the same files from
// these settings (synth with the vocabulary and chat template scripts/setup puts in .cache/models).
const CASES = [
    {name: "tiny", shape: "tiny", layers: null, seed: 31, type: "q4_k_m",
        covers: "2 full layers; untied output (as Llama 3.1 8B); RoPE scaling 8 (Llama 3.1); head size 64; 2:1 GQA"},
    {name: "1b-1layer", shape: "1b", layers: 1, seed: 32, type: "q4_k_m",
        covers: "Llama 3.2 1B's layer and output shapes, 1 of 16 layers; tied output; RoPE scaling 32; head size 64; 4:1 GQA (32 query heads, 8 KV heads)"},
    {name: "3b-1layer", shape: "3b", layers: 1, seed: 33, type: "q4_k_m",
        covers: "Llama 3.2 3B's layer and output shapes, 1 of 28 layers; tied output; RoPE scaling 32; head size 128; 3:1 GQA (24 query heads, 8 KV heads)"},
    {name: "tiny-iq2_m", shape: "tiny", layers: null, seed: 34, type: "iq2_m",
        covers: "llama.cpp's IQ2_M mix on random but valid blocks: IQ2_S, IQ3_S (attn_v, attn_output, token_embd), Q5_K (output); lattice types llama.cpp makes only with an importance matrix"},
    {name: "tiny-iq3_xxs", shape: "tiny", layers: null, seed: 35, type: "iq3_xxs",
        covers: "llama.cpp's IQ3_XXS mix: IQ3_XXS, IQ2_S (attn_q, attn_k), IQ3_S (attn_output, token_embd), Q5_K"},
    {name: "tiny-iq2_xxs", shape: "tiny", layers: null, seed: 36, type: "iq2_xxs",
        covers: "llama.cpp's IQ2_XXS mix: IQ2_XXS, Q2_K (attn_v, token_embd), Q5_K"},
    {name: "tiny-iq2_xs", shape: "tiny", layers: null, seed: 37, type: "iq2_xs",
        covers: "llama.cpp's IQ2_XS mix: IQ2_XS, Q2_K (attn_v, token_embd), Q5_K"},
    {name: "tiny-iq1_s", shape: "tiny", layers: null, seed: 38, type: "iq1_s",
        covers: "llama.cpp's IQ1_S mix: IQ1_S, IQ2_XXS (attn_output), Q2_K (attn_v, token_embd), Q5_K"},
    {name: "tiny-iq1_m", shape: "tiny", layers: null, seed: 39, type: "iq1_m",
        covers: "llama.cpp's IQ1_M mix: IQ1_M, IQ2_XXS (attn_output), Q2_K (attn_v, token_embd), Q5_K"},
    {name: "tiny-qwen2", shape: "tiny", layers: null, seed: 40, type: "q4_k_m", arch: "qwen2",
        covers: "the tiny shape as Qwen2/Qwen2.5: Q, K and V biases; RoPE on halves (NEOX); no frequency factors"},
    {name: "tiny-qwen3", shape: "tiny", layers: null, seed: 41, type: "q4_k_m", arch: "qwen3",
        covers: "the tiny shape as Qwen3: per-head RMSNorm of Q and K before RoPE; RoPE on halves"},
    {name: "tiny-gemma3", shape: "tiny", layers: null, seed: 42, type: "q4_k_m", arch: "gemma3",
        covers: "the tiny shape as Gemma 3: embeddings scaled by sqrt(n_embd), per-head Q/K norms, post-attention and post-FFN norms, GELU (tanh) gate, a local layer (32-position sliding window, RoPE base 10000) then a global one, tied output"},
    {name: "tiny-phi3", shape: "tiny", layers: null, seed: 43, type: "q4_k_m", arch: "phi3",
        covers: "the tiny shape as Phi-3/Phi-3.5: fused QKV and gate/up matrices, RoPE on halves with long-context factors (rope_factors_long, past an original context of 64) and their cos/sin scale (rope.scaling.attn_factor 1.19)"}
];
// REF_CASES=a,b regenerates only those cases, keeping the fixture's others as they are.
const ONLY = process.env.REF_CASES ? process.env.REF_CASES.split(",") : null;
const N_TOKENS = 128;
const N_SCORED = 32;
const F32_KV = {experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"};
const RUNS = [
    {name: "f32", file: "f32", extra: F32_KV, kvCache: "f32"},
    {name: "f32_kv16", file: "f32", extra: undefined, kvCache: "f16"},
    {name: "quantized", file: "quantized", extra: undefined, kvCache: "f16"}
];
const TEXT = "The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a small tin of oil and " +
    "a cloth for the great lens. From the gallery at the top he could see the harbour, the fishing boats returning " +
    "with their nets, and beyond them the long grey line of the open sea. In winter the storms came from the north, " +
    "and the waves broke white against the rocks below the tower; in summer the water was calm and green, and " +
    "children swam from the jetty until their mothers called them home. He kept a logbook in which he wrote the " +
    "weather, the ships that passed, and the hours the lamp had burned. Over forty years the entries changed very " +
    "little, yet he never found the work dull: every night the light had to be lit, and every night some sailor he " +
    "would never meet steered by it safely past the reef. When the keeper finally retired, the lamp was replaced " +
    "by an automatic beacon, and the logbooks were given to the town museum.";

function run(cmd, args) {
    const r = spawnSync(cmd, args, {cwd: ROOT, stdio: ["ignore", "inherit", "inherit"]});
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status}`);
}

async function makeFiles(c) {
    const q = path.join(WORK, `${c.name}.${c.type.toUpperCase()}.gguf`);
    const f32 = path.join(WORK, `${c.name}.F32.gguf`);
    const args = ["synth", "-o", q, "--shape", c.shape, "--type", c.type, "--seed", String(c.seed),
        "--arch", c.arch ?? "llama", "--vocab", VOCAB, "--chat-template", TEMPLATE];
    if (c.layers != null) args.push("--layers", String(c.layers));
    run(BIN, args);
    await dequantizeToF32(q, f32);
    return {q: {path: q, sha256: await sha256File(q)}, f32: {path: f32, sha256: await sha256File(f32)}};
}

// The natural-log probabilities, in run position `b`, of the tokens listed in `top`, rounded as positionsJson rounds.
function sameTokens(top, b) {
    const lsb = Math.log(b.sum);
    return top.map(([id]) => {
        const r = Math.round((Math.log(b.probs.get(id)) - lsb) * 1e6) / 1e6;
        return Object.is(r, -0) ? 0 : r;
    });
}

// Largest |a - b| over a's top entries, the token looked up in b's full distribution.
function maxDiff(a, b) {
    let m = 0;
    for (let k = 0; k < a.length; k++) {
        const lsb = Math.log(b[k].sum);
        for (const [id, lp] of a[k].top) m = Math.max(m, Math.abs(lp - (Math.log(b[k].probs.get(id)) - lsb)));
    }
    return m;
}

async function main() {
    for (const f of [VOCAB, TEMPLATE]) if (!existsSync(f)) throw new Error(`${f} is missing; run scripts/setup`);
    run("cargo", ["build", "--release", "--locked", "--quiet", "--bin", "llama-webgpu"]);
    await mkdir(WORK, {recursive: true});

    const {llama, kernels} = await startLlama();
    console.log(`llama.cpp ${llamaCppRelease()}, CPU backend, ${THREADS} thread(s)`);
    const old = ONLY ? JSON.parse(await readFile(OUT_PATH, "utf8")) : null;
    let tokens = old ? old.tokens : null;
    const cases = [];
    for (const c of CASES) {
        if (ONLY && !ONLY.includes(c.name)) {
            const kept = old.cases.find((k) => k.name === c.name);
            if (!kept) throw new Error(`${c.name} is not in the fixture yet: include it in REF_CASES`);
            cases.push(kept);
            continue;
        }
        const files = await makeFiles(c);
        kernels.amx = false; // set again by loadModel if ggml repacks this model's weights for AMX
        const models = {
            quantized: await llama.loadModel({modelPath: files.q.path, gpuLayers: 0}),
            f32: await llama.loadModel({modelPath: files.f32.path, gpuLayers: 0})
        };
        const arch = c.arch ?? "llama";
        const meta = models.f32.fileInfo.metadata;
        const hm = meta[arch];
        const vocabSize = Number(hm.vocab_size);
        if (tokens === null) {
            if (!models.f32.tokens.shouldPrependBosToken) throw new Error("expected BOS for the Llama 3 vocabulary");
            tokens = [models.f32.tokens.bos, ...models.f32.tokenize(TEXT, false)];
            if (tokens.length < N_TOKENS + 1) throw new Error(`TEXT gives only ${tokens.length} tokens`);
            tokens = tokens.slice(0, N_TOKENS + 1);
        }
        // teacherForced scores positions [from, tokens.length - 2]: pass one more token than the scored range needs.
        const from = N_TOKENS - N_SCORED;
        const runs = {};
        for (const r of RUNS) {
            const tf = await teacherForced(models[r.file], tokens, from, {extra: r.extra});
            checkFullSoftmax(`${c.name} ${r.name}`, tf, null, vocabSize);
            if (tf.length !== N_SCORED) throw new Error("position count");
            runs[r.name] = tf;
        }
        const kernelsRan = cpuKernels(kernels);
        const hp = {
            n_layer: Number(hm.block_count), n_embd: Number(hm.embedding_length),
            n_ff: Number(hm.feed_forward_length), n_head: Number(hm.attention.head_count),
            n_head_kv: Number(hm.attention.head_count_kv), n_vocab: vocabSize,
            head_dim: Number(hm.rope.dimension_count),
            output: models.f32.fileInfo.tensorInfo.some((t) => t.name === "output.weight") ? "untied" : "tied",
            rope_freqs: models.f32.fileInfo.tensorInfo.some((t) => t.name === "rope_freqs.weight")
        };
        console.log(`${c.name}: ${JSON.stringify(hp)}; CPU kernels ${kernelsRan}`);
        console.log(`  max |d ln p| over llama.cpp's top-${TOP_N}: f32 vs f32_kv16 ${maxDiff(runs.f32, runs.f32_kv16).toExponential(2)}, ` +
            `f32 vs ${c.type} ${maxDiff(runs.f32, runs.quantized).toExponential(2)}`);
        cases.push({
            name: c.name,
            synth: {shape: c.shape, layers: c.layers, type: c.type, seed: c.seed, arch},
            covers: c.covers,
            hparams: hp,
            model_sha256: files.q.sha256,
            f32_sha256: files.f32.sha256,
            cpu_kernels: kernelsRan,
            ...Object.fromEntries(RUNS.map((r) => [r.name, positionsJson(runs[r.name])])),
            quantized: positionsJson(runs.quantized).map((p, k) => ({...p, f32_kv16: sameTokens(p.top, runs.f32_kv16[k])}))
        });
        for (const m of Object.values(models)) await m.dispose();
        // Up to 2.4 GB per case, and the test writes its own: keep nothing.
        rmSync(files.q.path);
        rmSync(files.f32.path);
    }
    await llama.dispose();

    const fixture = {
        generator: `node-llama-cpp ${NLC_VERSION} (llama.cpp ${llamaCppRelease()}, CPU)`,
        notes: [
            "Regenerate with scripts/make-fixtures (node scripts/ref-llama3.mjs); see the header of scripts/ref-llama3.mjs.",
            "Each case is a synthetic Llama-3-shaped model: `llama-webgpu synth --shape S [--layers N] --type TYPE --seed SEED --arch ARCH` (synth.type: q4_k_m, or an i-quant mix; synth.arch: llama, or the family whose block the shape is written in) with the vocabulary and chat template scripts/setup puts in .cache/models; model_sha256 is that file's sha256.",
            "f32_sha256: the sha256 of llama.cpp's F32 dequantization of that file (llama_model_quantize, ftype ALL_F32, allow_requantize).",
            "tokens: llama.cpp's tokenization of a fixed English text with BOS; the model runs tokens[0..n_tokens] teacher-forced in one batch on a fresh context (flash attention off). Scored positions are scored_from..n_tokens-1; entry k of each run is position scored_from+k.",
            "Each scored position holds the 5 most likely next tokens as [token id, natural-log probability]; probability = full softmax of the raw logits over the whole vocabulary, renormalized in double precision, rounded to 6 decimals.",
            "Runs: f32 = the F32 file with an F32 KV cache; f32_kv16 = the F32 file with llama.cpp's default F16 KV cache (K, V, and on the CPU also Q and the softmax weights, rounded to f16 in attention); quantized = the synthetic quantized file with an F16 KV cache, where llama.cpp quantizes activations to 8 bits before every quantized matmul; its f32_kv16 lists the f32_kv16 run's log-probabilities of the same 5 tokens (llama.cpp's own distance between quantized and unquantized activations).",
            "cpu_kernels: the ggml CPU kernels that ran; only the quantized run depends on them (quantized activations, AMX repacking), not the F32 runs.",
            "hparams: the model as llama.cpp reads it; head_dim is llama.rope.dimension_count; output is untied when the file has output.weight; rope_freqs says the file has the Llama 3 frequency factors tensor."
        ],
        settings: {backend: "cpu", gpuLayers: 0, contextSize: CONTEXT.contextSize, batchSize: CONTEXT.batchSize,
            flashAttention: CONTEXT.flashAttention, threads: THREADS},
        text: TEXT,
        n_tokens: N_TOKENS,
        scored_from: N_TOKENS - N_SCORED,
        tokens,
        cases
    };
    const text = await writeFixture(OUT_PATH, fixture, RUNS.map((r) => r.name));
    console.log(`wrote ${path.relative(ROOT, OUT_PATH)} (${text.length} bytes)`);
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
