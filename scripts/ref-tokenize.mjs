#!/usr/bin/env node
// Reference tokenizations from llama.cpp, for tests/tokenizer.rs.
//
// Uses the llama.cpp build pinned in scripts/package.json (node-llama-cpp 3.21.1 with its prebuilt
// @node-llama-cpp/linux-x64 binaries; never builds or downloads anything). Run `scripts/setup` first, then:
//
//     node scripts/ref-tokenize.mjs
//
// It writes tests/fixtures/tokenize-llama3.json (the ggml-vocab-llama-bpe.gguf vocabulary) and
// tests/fixtures/tokenize-smollm2.json (SmolLM2-135M-Instruct.Q4_1.gguf) and tests/fixtures/tokenize-gemma3.json
// (gemma-3-270m-q4_k_m.gguf: a SentencePiece-style vocabulary with user-defined tokens) and
// tests/fixtures/tokenize-phi3.json (llama.cpp's ggml-vocab-phi-3.gguf, whose special tokens strip whitespace after them). For every test string it records
// the ids of llama.cpp's `common_tokenize(vocab, text, add_special=false, parse_special)` for parse_special
// false and true, and `llama_detokenize(ids, remove_special=false, unparse_special)` of the parse_special=true
// ids for unparse_special false and true. It also records the special ids llama.cpp settles on (BOS, EOS,
// EOT, the whole end-of-generation set, found by asking `llama_vocab_is_eog` about every id) and a few
// hand-picked id sequences with their detokenization. The output is deterministic (no timestamps).
// llama.cpp logs "missing tensor 'token_embd.weight'" once while node-llama-cpp inspects the vocab-only
// file; the vocabulary itself loads and tokenizes normally.

import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const models = path.join(root, ".cache", "models");
const fixtures = path.join(root, "tests", "fixtures");

const nlcDir = path.join(here, "node_modules", "node-llama-cpp");
const nlcVersion = JSON.parse(fs.readFileSync(path.join(nlcDir, "package.json"), "utf8")).version;
if (nlcVersion !== "3.21.1") {
    throw new Error(`expected the pinned node-llama-cpp 3.21.1, found ${nlcVersion}; run scripts/setup`);
}
const llamaCppRelease = JSON.parse(
    fs.readFileSync(path.join(nlcDir, "llama", "binariesGithubRelease.json"), "utf8"),
).release;
const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");

// ~40 strings: multilingual, whitespace, code, numbers, contractions, special-token text.
const STRINGS = [
    "Hello world",
    " Hello world",
    "Hello World!",
    "hello, world. How are you?",
    "",
    " ",
    "  ",
    "   leading and trailing spaces   ",
    "\t",
    "\ttab\tseparated\tvalues\t",
    "\n",
    "line one\n\n\nline four",
    "windows\r\nline endings\r\n",
    "a \n b  \n\n  c",
    "mixed \t \n whitespace\u3000ideographic\u00a0nbsp",
    "café naïve résumé Ångström façade",
    "Привет, мир! Как дела?",
    "你好，世界！今天天气很好。",
    "日本語のテキストとカタカナ、ひらがな",
    "한국어 문장입니다",
    "مرحبا بالعالم",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "Γειά σου Κόσμε",
    "emoji: 😀 👍🏽 🎉",
    "family 👨‍👩‍👧‍👦 and flag 🇺🇸 and 🏳️‍🌈",
    "🦙🦙🦙",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "function add(a, b) {\n  return a + b; // sum\n}\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
    "1234567 3.14159 1,000,000 12abc34",
    "2024-01-15 12:30:45 and 15/01/2024",
    "0 00 000 0000 00000",
    "I'm sure they'll come, DON'T worry, she's here and we've got it, you'd see",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE",
    "<|begin_of_text|>hi<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|> <|im_end|>x<|im_start|>",
    "text<|reserved_special_token_5|>more <|end_of_text|>",
    "<|eot_id|><|eot_id|> <|unknown_special|>",
    "!!!???... ,,, ;;; ::: ''' \"\"\" ``` ---",
    "https://example.com/path?query=1&b=2#frag",
    "user@example.com +1 (555) 123-4567",
    "x².y³ ½ ¼ Ⅻ ① ٣ ९",
    "\u200bzero\u200dwidth\ufeffjoiners",
];

// Id sequences whose detokenization is recorded verbatim, per vocab (chosen after inspecting the ids above:
// byte tokens of split multi-byte characters, control tokens, text that llama.cpp's space clean-up touches).
const EXTRA_IDS = {
    llama3: [
        [128000, 9906, 128009],
        [128006, 882, 128007, 271, 9906, 128009],
        [9906, 662, 1917, 949, 1174, 1268, 364, 256, 364, 82, 1268, 364, 76, 1268, 364, 265],
        [9468, 99, 247],
        [9468, 99],
        [248],
        [128255, 128002],
    ],
    smollm2: [
        [1, 9690, 198, 19556, 2],
        [0, 2, 4, 16],
        [28120, 1335, 30, 2313, 30, 216, 30],
        [10813, 116, 243],
        [10813, 116],
        [243, 10813, 116, 243],
        [216, 30, 216, 28, 637, 93, 216, 637, 84],
    ],
    // Gemma 3: BOS, a chat turn's markers, the HTML-tag and newline-run tokens, byte tokens.
    gemma3: [
        [2, 105, 2364, 107, 9259, 106, 107],
        [212],
        [203, 9259, 212],
        [107, 108, 109],
        [138, 140, 9259],
        [238, 239, 240],
    ],
    // Phi-3: its chat markers, EOS/end-of-text, byte tokens.
    phi3: [
        [1, 32010, 15043, 32007, 32001],
        [32006, 887, 32007, 32000],
        [2, 29871, 13, 13],
        [259, 1678, 32007],
    ],
};

// Strings only some vocabularies get, beside STRINGS: what Gemma's SentencePiece vocabulary holds as
// user-defined tokens (newline runs, HTML tags, runs of spaces), which llama.cpp splits out before merging.
const MORE_STRINGS = {
    // Phi-3's chat prompts: llama.cpp drops the whitespace after its special tokens (RSTRIP, set by general.name).
    phi3: [
        "<|system|>\nYou are terse.<|end|>\n<|user|>\nHello there<|end|>\n<|assistant|>\n",
        "<|user|>  \n\t spaced<|end|>   trailing",
        "</s> after eos <s> after bos <|endoftext|> after end",
        "<|assistant|>",
    ],
    gemma3: [
        "\n\n\nThree newlines, then\n\ntwo.",
        "a <s>b</s> <i>c</i>",
        "four    spaces and  two",
        "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "<table><tr><td>cell</td></tr></table>",
        "\tTabbed\tline\r\n",
    ],
};

// Pretty-printed at the top level, one case per line, so fixture diffs stay readable.
function compactJson(obj) {
    const lines = Object.entries(obj).map(([k, v]) => {
        if (Array.isArray(v) && v.length > 0 && typeof v[0] === "object") {
            const items = v.map((x) => "    " + JSON.stringify(x)).join(",\n");
            return `  ${JSON.stringify(k)}: [\n${items}\n  ]`;
        }
        return `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`;
    });
    return "{\n" + lines.join(",\n") + "\n}\n";
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });

async function reference(name, file) {
    const modelPath = path.join(models, file);
    if (!fs.existsSync(modelPath)) {
        throw new Error(`${modelPath} is missing; run scripts/setup`);
    }
    const model = await llama.loadModel({ modelPath, gpuLayers: 0, vocabOnly: true });
    const nVocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    const eog = [];
    for (let id = 0; id < nVocab; id++) {
        if (model.isEogToken(id)) eog.push(id);
    }
    const cases = STRINGS.concat(MORE_STRINGS[name] ?? []).map((text) => {
        const plain = Array.from(model.tokenize(text, false));
        const special = Array.from(model.tokenize(text, true));
        return {
            text,
            ids: plain,
            ids_special: special,
            detok: model.detokenize(special, false),
            detok_special: model.detokenize(special, true),
        };
    });
    const extra = EXTRA_IDS[name].map((ids) => ({
        ids,
        detok: model.detokenize(ids, false),
        detok_special: model.detokenize(ids, true),
    }));
    const out = {
        generator: "scripts/ref-tokenize.mjs",
        reference: `llama.cpp ${llamaCppRelease} via node-llama-cpp ${nlcVersion} (common_tokenize add_special=false; llama_detokenize remove_special=false)`,
        model: file,
        n_vocab: nVocab,
        bos: model.tokens.bos,
        eos: model.tokens.eos,
        eot: model.tokens.eot,
        add_bos: model.tokens.shouldPrependBosToken,
        add_eos: model.tokens.shouldAppendEosToken,
        eog,
        cases,
        extra,
    };
    await model.dispose();
    const dest = path.join(fixtures, `tokenize-${name}.json`);
    fs.writeFileSync(dest, compactJson(out));
    console.log(`wrote ${path.relative(root, dest)}: ${cases.length} strings, eog ${JSON.stringify(eog)}`);
}

await reference("llama3", "ggml-vocab-llama-bpe.gguf");
await reference("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf");
await reference("gemma3", "gemma-3-270m-q4_k_m.gguf");
await reference("phi3", "ggml-vocab-phi-3.gguf");
await llama.dispose();
