#!/usr/bin/env node
// llama.cpp speed on one backend, measured the way `llama-webgpu bench` measures ours. Used by scripts/bench-compare.
//
//     node scripts/bench-llama-cpp.mjs --backend cpu|vulkan [-m MODEL.gguf] [--prompt-len 128] [-n 64]
//                                      [--reps 2] [--threads 2]
//
// Prints one JSON line: {"engine":"llama.cpp", "backend", "device", "prefill_tokens_per_s", "decode_tokens_per_s", ...}.
//
// Method (same as src/main.rs `bench`):
//   - the same fixed pseudo-random prompt of --prompt-len token ids: id_i = ((i * 2654435761 mod 2^32) >> 7) mod n_vocab;
//   - prefill = one batched evaluation of the whole prompt (batch size = prompt length) up to the first greedy token;
//   - decode = -n single-token steps, each evaluating the previous greedy token and sampling the next (top-1);
//     end-of-generation tokens do not stop it (yieldEogToken);
//   - a fresh context per repetition (context size prompt + n + 16, F16 KV cache, flash attention off);
//     the best prefill and the best decode over --reps repetitions are reported (the machine is noisy).
// Backends: "cpu" = ggml's CPU backend with --threads threads, no layers offloaded; "vulkan" = ggml's Vulkan backend
// with every layer (and the output layer) offloaded. On this machine the only Vulkan device is Mesa lavapipe
// (llvmpipe), which ggml-vulkan ignores unless GGML_VK_VISIBLE_DEVICES=0 is set; this script sets it when unset.
import {existsSync} from "node:fs";
import os from "node:os";
import path from "node:path";
import {NLC_VERSION, ROOT, cpuKernels, startLlama} from "./llama-cpp.mjs";

function usage(msg) {
    if (msg) console.error(`bench-llama-cpp: ${msg}`);
    console.error("usage: node scripts/bench-llama-cpp.mjs --backend cpu|vulkan [-m MODEL] [--prompt-len N] [-n N] [--reps N] [--threads N]");
    process.exit(2);
}

const opts = {
    backend: null,
    model: path.join(ROOT, ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    promptLen: 128,
    n: 64,
    reps: 2,
    threads: 2
};
{
    const argv = process.argv.slice(2);
    const int = (flag, v) => {
        if (v == null || !/^\d+$/.test(v)) usage(`${flag} needs a non-negative integer`);
        return Number(v);
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const v = argv[i + 1];
        switch (a) {
            case "--backend": opts.backend = v; i++; break;
            case "-m": case "--model": if (v == null) usage("-m needs a path"); opts.model = path.resolve(v); i++; break;
            case "--prompt-len": opts.promptLen = int(a, v); i++; break;
            case "-n": opts.n = int(a, v); i++; break;
            case "--reps": opts.reps = int(a, v); i++; break;
            case "--threads": opts.threads = int(a, v); i++; break;
            case "-h": case "--help": usage(); break;
            default: usage(`unknown argument ${a}`);
        }
    }
    if (opts.backend !== "cpu" && opts.backend !== "vulkan") usage("--backend must be cpu or vulkan");
    if (opts.promptLen < 1 || opts.n < 1 || opts.reps < 1 || opts.threads < 1) usage("--prompt-len, -n, --reps, --threads must be >= 1");
    if (!existsSync(opts.model)) usage(`model not found: ${opts.model}`);
}

if (opts.backend === "vulkan" && process.env.GGML_VK_VISIBLE_DEVICES == null) process.env.GGML_VK_VISIBLE_DEVICES = "0";

async function main() {
    const {llama, kernels} = await startLlama({gpu: opts.backend === "vulkan" ? "vulkan" : false});
    if (opts.backend === "vulkan" && llama.gpu !== "vulkan")
        throw new Error(`llama.cpp's Vulkan backend did not load (gpu=${llama.gpu}); is @node-llama-cpp/linux-x64-vulkan installed?`);
    const gpuNames = opts.backend === "vulkan" ? await llama.getGpuDeviceNames() : [];
    if (opts.backend === "vulkan" && gpuNames.length === 0)
        throw new Error("llama.cpp found no Vulkan device (GGML_VK_VISIBLE_DEVICES=0 is needed for lavapipe)");

    const t0Load = performance.now();
    const model = await llama.loadModel({modelPath: opts.model, gpuLayers: opts.backend === "vulkan" ? "max" : 0});
    const loadS = (performance.now() - t0Load) / 1000;
    const meta = model.fileInfo.metadata;
    const nVocab = Number(meta.llama?.vocab_size ?? meta.tokenizer?.ggml?.tokens?.length);
    if (!(nVocab > 0)) throw new Error("cannot determine the vocabulary size");
    const prompt = Array.from({length: opts.promptLen}, (_, i) => ((Math.imul(i, 2654435761) >>> 0) >>> 7) % nVocab);

    const cpuName = os.cpus()[0]?.model?.trim() ?? "?";
    const device = opts.backend === "vulkan"
        ? `${gpuNames.join(", ")} (ggml-vulkan, ${model.gpuLayers} layers offloaded)`
        : `${cpuName}, ${opts.threads} thread(s) (${cpuKernels(kernels)})`;

    const runs = [];
    for (let r = 0; r < opts.reps; r++) {
        const ctx = await model.createContext({
            contextSize: opts.promptLen + opts.n + 16,
            batchSize: opts.promptLen,
            sequences: 1,
            flashAttention: false,
            threads: {ideal: opts.threads, min: opts.threads}
        });
        const seq = ctx.getSequence();
        let got = 0, tFirst = 0;
        const t0 = performance.now();
        for await (const _tok of seq.evaluate(prompt, {temperature: 0, topK: 1, yieldEogToken: true})) {
            if (got === 0) tFirst = performance.now();
            if (got++ >= opts.n) break; // the prompt's token, then n single-token steps
        }
        const tEnd = performance.now();
        await ctx.dispose();
        if (got !== opts.n + 1) throw new Error(`generation stopped after ${got} tokens`);
        runs.push({
            prefill_tokens_per_s: opts.promptLen / ((tFirst - t0) / 1000),
            decode_tokens_per_s: opts.n / ((tEnd - tFirst) / 1000)
        });
    }
    const release = llama.llamaCppRelease;
    const out = {
        engine: "llama.cpp",
        llama_cpp_release: `node-llama-cpp ${NLC_VERSION} ${llama.buildType} binaries (release ${release?.release ?? "?"})`,
        backend: opts.backend,
        device,
        threads: opts.threads,
        gpu_layers: model.gpuLayers,
        model: path.relative(process.cwd(), opts.model) || opts.model,
        prompt_tokens: opts.promptLen,
        decode_tokens: opts.n,
        reps: opts.reps,
        load_s: loadS,
        prefill_tokens_per_s: Math.max(...runs.map((x) => x.prefill_tokens_per_s)),
        decode_tokens_per_s: Math.max(...runs.map((x) => x.decode_tokens_per_s)),
        runs,
        load_average: os.loadavg()
    };
    await model.dispose();
    await llama.dispose();
    console.log(JSON.stringify(out));
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
