// Does llama.cpp read the shards we write? Loads each (whole file, first shard of the same model split) pair with
// the pinned node-llama-cpp on its CPU backend (one thread, so the arithmetic is the same for both loads) and compares
// the teacher-forced next-token distributions over the whole vocabulary at every position of one token sequence.
// The same llama.cpp on the same weights gives the same floats, so "identical" means bit-identical.
//
//   node scripts/llama-cpp-split-check.mjs [--text TEXT] [--must-fail FIRST_SHARD]... WHOLE FIRST_SHARD [WHOLE FIRST_SHARD]...
//
// Prints one JSON line: for each pair, how many shards llama.cpp says it loaded (its "additional N GGUFs" log line),
// the positions and vocabulary compared, whether every probability and greedy token is identical and the largest
// difference; for each --must-fail shard set (a shard missing, shards swapped), the error llama.cpp refused it with.
// tests/foreign_shards.rs runs it on what `llama-webgpu split` and `synth --split-max-size` write.
import {llamaCppRelease, teacherForced} from "./llama-cpp.mjs";

const args = process.argv.slice(2);
let text = "The quick brown fox jumps over the lazy dog. Once upon a time, in a small village by the sea,";
const mustFail = [];
const files = [];
for (let i = 0; i < args.length; i++) {
    if (args[i] === "--text") text = args[++i];
    else if (args[i] === "--must-fail") mustFail.push(args[++i]);
    else files.push(args[i]);
}
if (files.length === 0 || files.length % 2 !== 0) {
    console.error("usage: llama-cpp-split-check.mjs [--text T] [--must-fail SHARD]... WHOLE FIRST_SHARD [WHOLE FIRST_SHARD]...");
    process.exit(2);
}

const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");
const log = [];
const llama = await getLlama({
    gpu: false,
    build: "never",
    logLevel: LlamaLogLevel.debug,
    logger: (level, message) => log.push(message),
});

/** Loads `modelPath`; returns the model and what llama.cpp logged about its split files. */
async function load(modelPath) {
    const from = log.length;
    const model = await llama.loadModel({modelPath, gpuLayers: 0});
    const lines = log.slice(from);
    const m = lines.map((l) => /additional (\d+) GGUFs metadata loaded/.exec(l)).find(Boolean);
    return {model, files: 1 + (m ? Number(m[1]) : 0)};
}

const pairs = [];
for (let i = 0; i < files.length; i += 2) {
    const [wholePath, splitPath] = [files[i], files[i + 1]];
    const whole = await load(wholePath);
    const bos = whole.model.tokens.bos;
    const tokens = [...(bos == null ? [] : [bos]), ...whole.model.tokenize(text, false)];
    const a = await teacherForced(whole.model, tokens, 0);
    await whole.model.dispose();
    const split = await load(splitPath);
    const b = await teacherForced(split.model, tokens, 0);
    await split.model.dispose();

    let maxAbsDiff = 0, identical = true, sameTokens = true, vocabSize = 0;
    for (let k = 0; k < a.length; k++) {
        const pa = a[k].probs, pb = b[k].probs;
        vocabSize = Math.max(vocabSize, pa.size);
        if (pa.size !== pb.size) identical = false;
        for (const [id, p] of pa) {
            const q = pb.get(id);
            if (q === undefined) { identical = false; continue; }
            if (q !== p) identical = false;
            maxAbsDiff = Math.max(maxAbsDiff, Math.abs(p - q));
        }
        if (a[k].token !== b[k].token) sameTokens = false;
    }
    pairs.push({
        whole: wholePath,
        split: splitPath,
        filesLoaded: {whole: whole.files, split: split.files},
        positions: a.length,
        vocab: vocabSize,
        identical,
        sameTokens,
        maxAbsDiff,
        tokens: a.map((p) => p.token),
    });
}

const failures = [];
for (const p of mustFail) {
    const from = log.length;
    try {
        const {model} = await load(p);
        await model.dispose();
        failures.push({path: p, loaded: true});
    } catch (e) {
        // node-llama-cpp's own message, and what llama.cpp logged about the split while refusing it.
        const llamaCppLog = log.slice(from).filter((l) => /split|GGUF|error|fail/i.test(l)).map((l) => l.trim());
        failures.push({path: p, loaded: false, error: String(e?.message ?? e), llamaCppLog});
    }
}

console.log(JSON.stringify({llamaCpp: llamaCppRelease(), text, pairs, failures}));
await llama.dispose();
