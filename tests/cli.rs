//! The CLI's scripted interface: output formats and errors, on the real SmolLM2 model.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::gguf::{split_into_shards, GgufFile, GgufWriter};
use serde_json::Value;
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
        .args(args)
        .output()
        .expect("run llama-webgpu")
}

fn ok_stdout(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON")
}

/// Two `score --top 1 --json` runs on the same tokens, where only the summation order differs:
/// the same tokens, and every top-1 log-probability within 1e-4 (`what` names the pair).
fn assert_scores_close(what: &str, base: &Value, other: &Value) {
    assert_eq!(base["tokens"], other["tokens"], "{what}");
    let lp = |j: &Value| -> Vec<f64> { j["positions"].as_array().unwrap().iter().map(|p| p["top"][0][1].as_f64().unwrap()).collect() };
    let (a, b) = (lp(base), lp(other));
    assert!(!a.is_empty() && a.len() == b.len(), "{what}: {} and {} positions", a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() < 1e-4, "{what}: top-1 log-probability {a} vs {b}");
    }
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("llama-webgpu-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn tokenize_prints_llama_cpp_ids() {
    let m = common::smollm2();
    let m = m.to_str().unwrap();
    let fx = common::fixture("smollm2-greedy.json");
    // The story prompt has no special tokens, so plain tokenization reproduces llama.cpp's ids.
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "story-village")
        .unwrap();
    let ids: Value = serde_json::from_str(
        ok_stdout(&["tokenize", "-m", m, case["prompt"].as_str().unwrap()]).trim(),
    )
    .unwrap();
    assert_eq!(ids, case["prompt_tokens"]);
    let plain: Vec<u32> =
        serde_json::from_str(ok_stdout(&["tokenize", "-m", m, "<|im_start|>"]).trim()).unwrap();
    let special: Vec<u32> =
        serde_json::from_str(ok_stdout(&["tokenize", "-m", m, "--special", "<|im_start|>"]).trim())
            .unwrap();
    assert_eq!(special, vec![1]);
    assert!(plain.len() > 1, "{plain:?}");
}

#[test]
fn greedy_generate_reproduces_llama_cpp_continuation_prefix() {
    let m = common::smollm2();
    let fx = common::fixture("smollm2-greedy.json");
    let case = &fx["cases"][0];
    let prompt: Vec<String> = case["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    for backend in ["cpu", "gpu"] {
        let out = ok_stdout(&[
            "generate",
            "-m",
            m.to_str().unwrap(),
            "--tokens",
            &prompt.join(","),
            "-n",
            "16",
            "--temp",
            "0",
            "--json",
            "--backend",
            backend,
        ]);
        let j = last_json(&out);
        assert_eq!(j["backend"], backend);
        assert_eq!(j["prompt_tokens"], case["prompt_tokens"]);
        let want: Vec<&Value> = case["continuation"]
            .as_array()
            .unwrap()
            .iter()
            .take(16)
            .collect();
        let got: Vec<&Value> = j["tokens"].as_array().unwrap().iter().collect();
        // Teacher-forced agreement is tested elsewhere; free-running, the first tokens must match.
        assert_eq!(&got[..8], &want[..8], "greedy continuation diverges early");
        assert!(j["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(j["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
        // The streamed text precedes the JSON line and equals its "text".
        let streamed = out
            .rsplit_once('\n')
            .unwrap()
            .0
            .rsplit_once('\n')
            .map_or("", |x| x.0);
        assert_eq!(streamed, j["text"].as_str().unwrap());
    }
}

#[test]
fn chat_generate_stops_at_end_of_turn_and_seed_reproduces() {
    let m = common::smollm2();
    let m = m.to_str().unwrap();
    let run = |seed: &str| {
        last_json(&ok_stdout(&[
            "generate",
            "-m",
            m,
            "--chat",
            "-p",
            "Name a color.",
            "-n",
            "24",
            "--temp",
            "0.9",
            "--seed",
            seed,
            "--json",
        ]))
    };
    let a = run("42");
    let b = run("42");
    assert_eq!(a["tokens"], b["tokens"], "same seed, same tokens");
    assert!(!a["text"].as_str().unwrap().contains("<|im_end|>"));
    let g = last_json(&ok_stdout(&[
        "generate",
        "-m",
        m,
        "--chat",
        "--system",
        "Answer with one word.",
        "-p",
        "What is the capital of France?",
        "-n",
        "32",
        "--temp",
        "0",
        "--json",
    ]));
    assert_eq!(g["finish_reason"], "stop");
    assert!(g["text"].as_str().unwrap().contains("Paris"), "{g}");
    // The chat template put im_start (id 1) at the start and ends with the assistant header.
    assert_eq!(g["prompt_tokens"][0], 1);
}

#[test]
fn score_reports_top_tokens_for_every_position() {
    let m = common::smollm2();
    let j = last_json(&ok_stdout(&[
        "score",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "The capital of France is Paris",
        "--top",
        "3",
        "--json",
    ]));
    let n_tokens = j["tokens"].as_array().unwrap().len();
    let positions = j["positions"].as_array().unwrap();
    assert_eq!(positions.len(), n_tokens);
    for p in positions {
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let lps: Vec<f64> = top.iter().map(|e| e[1].as_f64().unwrap()).collect();
        assert!(lps.windows(2).all(|w| w[0] >= w[1]) && lps[0] <= 0.0);
        assert_eq!(p["non_finite"], 0, "every logit of the vocabulary is finite");
    }
    // After "The capital of France is", " Paris" is the top prediction.
    let paris = j["tokens"][n_tokens - 1].clone();
    assert_eq!(positions[n_tokens - 2]["top"][0][0], paris);
}

/// `--tokens-file`: many sequences with one model load, each as if scored alone; bad lines are
/// typed errors naming the line.
#[test]
fn score_tokens_file_scores_each_sequence_as_alone() {
    let m = common::smollm2();
    let m = m.to_str().unwrap();
    let dir = tmpdir("tokens-file");
    // The longer sequence first: the cache is sized for it, and the shorter one after it must
    // not see its positions.
    let seqs = ["1,504,3458,282,4649,314,7042,30", "1,2683,5596", "1,504,3458,282"];
    let file = dir.join("seqs.txt");
    std::fs::write(&file, format!("{}\n\n{}\n{}\n", seqs[0], seqs[1], seqs[2])).unwrap();
    for backend in ["gpu", "cpu"] {
        let out = ok_stdout(&["score", "-m", m, "--backend", backend, "--tokens-file", file.to_str().unwrap(), "--top", "3", "--json"]);
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "{backend}: one line per sequence, the empty line skipped");
        for (seq, got) in seqs.iter().zip(&lines) {
            let alone = last_json(&ok_stdout(&["score", "-m", m, "--backend", backend, "--tokens", seq, "--top", "3", "--json"]));
            assert_eq!(got["tokens"], alone["tokens"], "{backend}: tokens echoed in order");
            let (a, b) = (got["positions"].as_array().unwrap(), alone["positions"].as_array().unwrap());
            assert_eq!(a.len(), b.len());
            for (pa, pb) in a.iter().zip(b) {
                for (ea, eb) in pa["top"].as_array().unwrap().iter().zip(pb["top"].as_array().unwrap()) {
                    assert_eq!(ea[0], eb[0], "{backend} {seq}: the same top tokens");
                    let d = (ea[1].as_f64().unwrap() - eb[1].as_f64().unwrap()).abs();
                    assert!(d < 1e-4, "{backend} {seq}: log-probabilities differ by {d}");
                }
            }
        }
    }
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "1,2,3\n4,x,6\n").unwrap();
    let out = cli(&["score", "-m", m, "--tokens-file", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("INVALID_ARGUMENT") && err.contains("line 2"), "{err}");
    std::fs::write(&bad, "\n\n").unwrap();
    let out = cli(&["score", "-m", m, "--tokens-file", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("has no sequence"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn info_describes_the_model() {
    let m = common::smollm2();
    let j = last_json(&ok_stdout(&["info", "-m", m.to_str().unwrap(), "--json"]));
    assert_eq!(j["architecture"], "llama");
    assert_eq!(j["n_params"], 134515008u64);
    assert_eq!(j["file_size"], 98362432u64);
    assert_eq!(j["hparams"]["n_layer"], 30);
    assert_eq!(j["tensor_types"]["Q4_1"]["tensors"], 210);
    assert!(
        j["gpu"]["adapter"].as_str().is_some_and(|a| !a.is_empty()),
        "{}",
        j["gpu"]
    );
    assert!(
        j["gpu"]["max_storage_buffer_binding_size"]
            .as_u64()
            .unwrap()
            >= 128 << 20
    );
    let text = ok_stdout(&["info", "-m", m.to_str().unwrap()]);
    assert!(text.contains("parameters:") && text.contains("Q4_1") && text.contains("gpu:"));
}

#[test]
fn bench_prints_speeds_and_bandwidth() {
    let m = common::smollm2();
    for extra in [&[][..], &["--no-f16", "--no-subgroups"][..]] {
        let mut args = vec![
            "bench",
            "-m",
            m.to_str().unwrap(),
            "--prompt-len",
            "16",
            "-n",
            "4",
            "--json",
        ];
        args.extend_from_slice(extra);
        let j = last_json(&ok_stdout(&args));
        assert_eq!(j["backend"], "gpu");
        for k in [
            "prefill_tokens_per_s",
            "decode_tokens_per_s",
            "decode_weight_gb_per_s",
        ] {
            assert!(j[k].as_f64().unwrap() > 0.0, "{k}: {j}");
        }
        assert_eq!(j["gpu"]["f16"], extra.is_empty());
    }
}

/// The kernel-tuning flags reach the GPU context (bench reports them), reject what the kernels
/// cannot take, and change only the summation order: `score` with them agrees with the default
/// kernels compiled under naga's loop bounding.
/// `--chain on` (a GPU's default) queues each greedy or sampled step before the last token is
/// read back; the generation is the same as one step at a time whether it ends at the
/// end-of-turn token, at a stop string or at the length limit (each leaves a queued step to
/// give back), and `bench` reports the choice.
#[test]
fn chained_steps_generate_what_one_at_a_time_does() {
    let m = common::smollm2();
    let m = m.to_str().unwrap();
    let gen = |chain: &str, extra: &[&str]| {
        let mut a = vec!["generate", "-m", m, "--chat", "-p", "Say hello.", "--json", "--chain", chain];
        a.extend_from_slice(extra);
        if !a.contains(&"--temp") {
            a.extend(["--temp", "0"]);
        }
        last_json(&ok_stdout(&a))
    };
    // The sampled case draws each token on the GPU with the sampler's next random number.
    let sampled = ["-n", "40", "--temp", "1.2", "--top-k", "40", "--seed", "5"];
    for extra in [&["-n", "64"][..], &["-n", "64", "--stop", "help"], &["-n", "5"], &sampled] {
        let (on, off) = (gen("on", extra), gen("off", extra));
        assert_eq!(on["tokens"], off["tokens"], "{extra:?}");
        assert_eq!(on["text"], off["text"], "{extra:?}");
        assert_eq!(on["finish_reason"], off["finish_reason"], "{extra:?}");
    }
    assert_eq!(gen("on", &["-n", "64"])["finish_reason"], "stop");
    assert_eq!(gen("on", &["-n", "64", "--stop", "help"])["finish_reason"], "stop");
    assert_eq!(gen("on", &["-n", "5"])["finish_reason"], "length");
    let bench = |extra: &[&str]| {
        let mut a = vec!["bench", "-m", m, "--prompt-len", "4", "-n", "3", "--json"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))
    };
    // lavapipe is a CPU device: one step at a time unless forced.
    assert_eq!(bench(&[])["gpu"]["chain_steps"], false);
    let on = bench(&["--chain", "on"]);
    assert_eq!(on["gpu"]["chain_steps"], true, "{on}");
    assert_eq!(on["gpu"]["tuning"]["chain"], "on");
    assert!(on["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn tuning_flags_change_kernels_not_results() {
    let m = common::smollm2();
    let m = m.to_str().unwrap();
    let tuned = ["--matvec-threads", "4", "--matvec-rows", "4"];
    let mut args = vec!["bench", "-m", m, "--prompt-len", "4", "-n", "2", "--json"];
    args.extend_from_slice(&tuned);
    let j = last_json(&ok_stdout(&args));
    assert_eq!(
        j["gpu"]["tuning"],
        serde_json::json!({"matvec_threads": 4, "matvec_rows": 4, "naga_loop_bounding": false, "prefill_kernel": null, "swiglu": null, "norm": null, "join": null, "int_dot": null, "chain": null})
    );
    // A decode step's dispatches, counted where the ops record them: the embedding; per layer
    // (30) norm, q, k, v, RoPE (which writes K and V into the cache), attention (one pass up to
    // 256 keys), o, norm, gate, up, SwiGLU, down; the last block's residual add; the output
    // norm, the output and the argmax's two passes. Fusing kernels (issue 18) lowers it on
    // purpose: `--swiglu fused` forms SwiGLU in down's loads, and `--norm fused` (both what
    // GPUs get; lavapipe, a CPU device, keeps them separate) folds the norms into the products
    // that read them and the residual adds into the products that write them, and then (with
    // `--join`, by default) Q, K and V are one product and gate and up one, which the loader
    // put in one buffer each: 6 per layer.
    assert_eq!(j["decode_dispatches_per_token"], 1 + 30 * 12 + 1 + 1 + 1 + 2, "{j}");
    let bench_with = |extra: &[&str]| {
        let mut a = vec!["bench", "-m", m, "--prompt-len", "4", "-n", "2", "--json"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))
    };
    let fused = bench_with(&["--swiglu", "fused"]);
    assert_eq!(fused["decode_dispatches_per_token"], 1 + 30 * 11 + 1 + 1 + 1 + 2, "{fused}");
    assert_eq!(fused["gpu"]["tuning"]["swiglu"], "fused");
    let norms = bench_with(&["--norm", "fused", "--swiglu", "fused"]);
    assert_eq!(norms["decode_dispatches_per_token"], 1 + 30 * 6 + 1 + 2, "{norms}");
    assert_eq!(norms["gpu"]["tuning"]["norm"], "fused");
    let apart = bench_with(&["--norm", "fused", "--swiglu", "fused", "--join", "separate"]);
    assert_eq!(apart["decode_dispatches_per_token"], 1 + 30 * 9 + 1 + 2, "{apart}");
    assert_eq!(apart["gpu"]["tuning"]["join"], "separate");
    let norms_only = bench_with(&["--norm", "fused"]);
    assert_eq!(norms_only["decode_dispatches_per_token"], 1 + 30 * 7 + 1 + 2, "{norms_only}");
    // In the Q4_K_M file, some layers' V has another type than Q and K (llama.cpp gives V more
    // bits in some layers): there Q and K are one product and V another, 7 per layer.
    let km = common::model("SmolLM2-135M-Instruct.Q4_K_M.gguf");
    let gguf = GgufFile::open(&km).unwrap();
    let ty = |l: usize, w: &str| gguf.tensor(&format!("blk.{l}.{w}.weight")).unwrap().info.ggml_type;
    let v_apart = (0..30).filter(|&l| ty(l, "attn_v") != ty(l, "attn_q")).count();
    assert!(v_apart > 0 && v_apart < 30, "{v_apart} layers with V apart");
    let km_args = ["bench", "-m", km.to_str().unwrap(), "--prompt-len", "4", "-n", "2", "--json", "--norm", "fused", "--swiglu", "fused"];
    let j = last_json(&ok_stdout(&km_args));
    assert_eq!(j["decode_dispatches_per_token"], 1 + 30 * 6 + v_apart as u64 + 1 + 2, "{j}");
    for (flag, bad) in [("--matvec-rows", "3"), ("--matvec-rows", "8"), ("--matvec-threads", "128")] {
        let out = cli(&["bench", "-m", m, flag, bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("power of two"), "{flag} {bad}: {err}");
    }
    let out = cli(&["bench", "-m", m, "--prefill-kernel", "mma"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tiled, matvec"), "--prefill-kernel mma: {err}");
    // A short prompt runs through the matrix-vector kernel, several tokens per weight decode.
    // With an f32 KV cache, so that only the summation order differs: with f16 the cache's
    // rounding turns a last-bit difference into up to 1e-3 nats (measured 1.1e-3 between the
    // two prefill kernels), which would hide a real error of that size.
    let score_prompt = |prompt: &str, extra: &[&str]| {
        let mut a = vec!["score", "-m", m, "-p", prompt, "--top", "1", "--json", "--no-f16"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))
    };
    let score = |extra: &[&str]| score_prompt("The capital of France is Paris", extra);
    let (base, other) = (score(&["--naga-loop-bounding"]), score(&tuned));
    let close = |base: &Value, other: &Value| assert_scores_close("SmolLM2", base, other);
    close(&base, &other);
    // Decode steps with SwiGLU fused into the down projection continue as the separate kernels do.
    let greedy = |extra: &[&str]| {
        let mut a = vec!["generate", "-m", m, "-p", "The capital of France is", "-n", "12", "--temp", "0", "--json", "--no-f16"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))["tokens"].clone()
    };
    assert_eq!(greedy(&["--swiglu", "fused"]), greedy(&["--swiglu", "separate"]));
    // And with the norms and residual adds folded into the products: decode-sized steps
    // (`--chunk 1`) scored teacher-forced give the separate kernels' log-probabilities.
    let stepwise = |extra: &[&str]| {
        let mut a = vec!["score", "-m", m, "-p", "The capital of France is Paris, and the capital of Italy is Rome", "--top", "1", "--json", "--no-f16", "--chunk", "1"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))
    };
    let separate = stepwise(&["--norm", "separate"]);
    close(&separate, &stepwise(&["--norm", "fused"]));
    let folded = stepwise(&["--norm", "fused", "--swiglu", "fused"]);
    close(&separate, &folded);
    // The joint products compute each row as the matrices' own products do: equal to the bit.
    assert_eq!(folded, stepwise(&["--norm", "fused", "--swiglu", "fused", "--join", "separate"]));
    let km = km.to_str().unwrap();
    let km_greedy = |extra: &[&str]| {
        let mut a = vec!["generate", "-m", km, "-p", "The capital of France is", "-n", "12", "--temp", "0", "--json", "--no-f16", "--norm", "fused"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))["tokens"].clone()
    };
    assert_eq!(km_greedy(&["--join", "fused"]), km_greedy(&["--join", "separate"]));
    assert_eq!(greedy(&["--norm", "fused", "--swiglu", "fused"]), greedy(&["--norm", "separate"]));
    // Past 16 tokens, prefill takes the tiled kernel or the matrix-vector one as told (lavapipe
    // defaults to the latter), with the same results.
    let long = "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen";
    let long_score = |extra: &[&str]| score_prompt(long, extra);
    let (matvec, tiled) = (long_score(&["--prefill-kernel", "matvec"]), long_score(&["--prefill-kernel", "tiled"]));
    assert!(matvec["tokens"].as_array().unwrap().len() > 16);
    close(&matvec, &tiled);
    let mut args = vec!["bench", "-m", m, "--prompt-len", "20", "-n", "1", "--json", "--prefill-kernel", "tiled"];
    let j = last_json(&ok_stdout(&args));
    assert_eq!(j["gpu"]["tuning"]["prefill_kernel"], "tiled");
    args.pop();
    args.push("matvec");
    assert_eq!(last_json(&ok_stdout(&args))["gpu"]["tuning"]["prefill_kernel"], "matvec");
}

/// `--int-dot on|off`: decode steps on 8-bit activations with packed-integer dot products, off
/// by default; the model still answers, and bench counts the quantize dispatches.
#[test]
fn int_dot_switch_runs_the_packed_integer_products() {
    let m = common::smollm2();
    let m = m.to_str().unwrap();
    let bench = |extra: &[&str]| {
        let mut a = vec!["bench", "-m", m, "--prompt-len", "4", "-n", "2", "--json"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))
    };
    let (default, on) = (bench(&[]), bench(&["--int-dot", "on"]));
    assert_eq!(default["gpu"]["int_dot_available"], true, "naga has dot4I8Packed");
    assert_eq!(default["gpu"]["int_dot"], false, "off by default");
    assert_eq!(on["gpu"]["int_dot"], true);
    assert_eq!(on["gpu"]["tuning"]["int_dot"], "on");
    // Per layer, each product's input is quantized once: after the attention norm (for Q, K and
    // V), after attention, after the FFN norm (gate and up), and silu(gate)·up for down; SwiGLU
    // has no dispatch of its own. The output product stays f32.
    assert_eq!(on["decode_dispatches_per_token"], 1 + 30 * 15 + 1 + 1 + 1 + 2, "{on}");
    assert_eq!(bench(&["--int-dot", "off"])["decode_dispatches_per_token"], default["decode_dispatches_per_token"]);
    let greedy = |extra: &[&str]| {
        let mut a = vec!["generate", "-m", m, "-p", "The capital of France is", "-n", "4", "--temp", "0", "--json"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))["text"].as_str().unwrap().to_string()
    };
    let text = greedy(&["--int-dot", "on"]);
    assert!(text.starts_with(" Paris"), "{text:?}");
    // With a GPU's choices the attention and FFN norms are done by the quantizes of the blocks'
    // inputs, O and down add into the residual stream, and Q, K, V and gate, up are one product
    // each: 10 per layer (13 with the joints apart); the greedy tokens are the unfolded ones'.
    let gpu = ["--int-dot", "on", "--matvec-threads", "16", "--matvec-rows", "2", "--swiglu", "fused"];
    let with = |extra: &[&'static str]| [&gpu[..], extra].concat();
    assert_eq!(bench(&with(&["--norm", "fused"]))["decode_dispatches_per_token"], 1 + 30 * 10 + 1 + 2);
    assert_eq!(bench(&with(&["--norm", "fused", "--join", "separate"]))["decode_dispatches_per_token"], 1 + 30 * 13 + 1 + 2);
    let tokens = |extra: &[&str]| {
        let mut a = vec!["generate", "-m", m, "-p", "The capital of France is", "-n", "16", "--temp", "0", "--json"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))["tokens"].clone()
    };
    assert_eq!(tokens(&with(&["--norm", "fused"])), tokens(&with(&["--norm", "separate"])));
    let out = cli(&["bench", "-m", m, "--int-dot", "yes"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("on, off"));
}

#[test]
fn bench_profile_times_every_kernel() {
    let m = common::smollm2();
    let j = last_json(&ok_stdout(&[
        "bench", "-m", m.to_str().unwrap(), "--prompt-len", "4", "-n", "2", "--json", "--profile",
    ]));
    let p = j["profile"].as_array().expect("profile array");
    let names: Vec<&str> = p.iter().map(|k| k["kernel"].as_str().unwrap()).collect();
    for k in ["embedding", "attn_norm", "attn_q", "attention", "ffn_down", "output", "argmax"] {
        assert!(names.contains(&k), "{k} missing from {names:?}");
    }
    let percent: f64 = p.iter().map(|k| k["percent"].as_f64().unwrap()).sum();
    assert!((percent - 100.0).abs() < 0.01, "{percent}");
    for k in p {
        assert!(k["us_per_token"].as_f64().unwrap() >= 0.0);
    }
    // Matrix × vector kernels report the bandwidth of their weights; the graph's count of the
    // bytes each op reads adds up to the CLI's count over the GGUF's tensors.
    let down = p.iter().find(|k| k["kernel"] == "ffn_down").unwrap();
    assert!(down["weight_gb_per_s"].as_f64().unwrap() > 0.0, "{down}");
    let read: u64 = p.iter().filter_map(|k| k["weight_bytes"].as_u64()).sum();
    assert_eq!(read, j["weight_bytes_per_token"].as_u64().unwrap());
    // A GPU's decode step: the joint products appear under their own names, with the bytes of
    // the matrices they join, and still add up to the GGUF's count.
    let g = last_json(&ok_stdout(&[
        "bench", "-m", m.to_str().unwrap(), "--prompt-len", "4", "-n", "2", "--json", "--profile", "--norm", "fused", "--swiglu", "fused",
    ]));
    let p = g["profile"].as_array().expect("profile array");
    let bytes = |name: &str| p.iter().find(|k| k["kernel"] == name).and_then(|k| k["weight_bytes"].as_u64());
    let gguf = GgufFile::open(&m).unwrap();
    let layer_bytes = |w: &str| -> u64 { (0..30).map(|l| gguf.tensor(&format!("blk.{l}.{w}.weight")).unwrap().data.len() as u64).sum() };
    // (The norms' weights, now read by the products, count with the first product reading each.)
    let norm = layer_bytes("attn_norm");
    assert_eq!(bytes("attn_qkv"), Some(layer_bytes("attn_q") + layer_bytes("attn_k") + layer_bytes("attn_v") + norm), "{g}");
    assert_eq!(bytes("ffn_gate_up"), Some(layer_bytes("ffn_gate") + layer_bytes("ffn_up") + norm), "{g}");
    for gone in ["attn_norm", "attn_q", "attn_v", "ffn_norm", "ffn_gate", "ffn_up", "output_norm", "add"] {
        assert!(bytes(gone).is_none() && !p.iter().any(|k| k["kernel"] == gone), "{gone} in {g}");
    }
    let read: u64 = p.iter().filter_map(|k| k["weight_bytes"].as_u64()).sum();
    assert_eq!(read, j["weight_bytes_per_token"].as_u64().unwrap());
}

#[test]
fn split_model_runs_from_its_first_shard() {
    let src = GgufFile::open(common::smollm2()).unwrap();
    let dir = tmpdir("split");
    let prefix = dir.join("smol").display().to_string();
    let shards = split_into_shards(
        src.header(),
        |n| src.tensor(n).unwrap().data,
        &prefix,
        32 << 20,
    );
    for (name, bytes) in &shards {
        std::fs::write(name, bytes).unwrap();
    }
    let first = &shards[0].0;
    let whole = last_json(&ok_stdout(&[
        "generate",
        "-m",
        common::smollm2().to_str().unwrap(),
        "-p",
        "Hello",
        "-n",
        "4",
        "--temp",
        "0",
        "--json",
    ]));
    let split = last_json(&ok_stdout(&[
        "generate", "-m", first, "-p", "Hello", "-n", "4", "--temp", "0", "--json",
    ]));
    assert_eq!(whole["tokens"], split["tokens"]);
    let info = last_json(&ok_stdout(&["info", "-m", first, "--json"]));
    assert_eq!(info["shards"].as_array().unwrap().len(), shards.len());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_inputs_fail_with_typed_messages() {
    let dir = tmpdir("bad");
    let fail = |args: &[&str], needle: &str| {
        let out = cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    };
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"not a model at all").unwrap();
    fail(&["info", "-m", junk.to_str().unwrap()], "BAD_GGUF");
    fail(
        &["info", "-m", dir.join("absent.gguf").to_str().unwrap()],
        "IO_ERROR",
    );

    // Truncated real model: the error names a tensor that lies past the end.
    let bytes = std::fs::read(common::smollm2()).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fail(
        &["generate", "-m", cut.to_str().unwrap(), "-p", "hi"],
        "lies outside the file",
    );

    // A model without one of its tensors.
    let src = GgufFile::open(common::smollm2()).unwrap();
    let mut w = GgufWriter::default();
    for (k, v) in src.metadata().iter() {
        w.kv(k, v.clone());
    }
    for t in src
        .tensors()
        .filter(|t| t.info.name != "blk.3.attn_k.weight")
    {
        w.tensor(&t.info.name, &t.info.dims, t.info.ggml_type, t.data);
    }
    let missing = dir.join("missing.gguf");
    std::fs::write(&missing, w.to_bytes()).unwrap();
    fail(
        &["generate", "-m", missing.to_str().unwrap(), "-p", "hi"],
        "blk.3.attn_k.weight",
    );

    // The vocab-only Llama 3 GGUF tokenizes but cannot generate.
    let vocab = common::model("ggml-vocab-llama-bpe.gguf");
    let ids = ok_stdout(&["tokenize", "-m", vocab.to_str().unwrap(), "Hello world"]);
    assert_eq!(ids.trim(), "[9906,1917]");
    fail(
        &["generate", "-m", vocab.to_str().unwrap(), "-p", "hi"],
        "BAD_MODEL",
    );

    let m = common::smollm2();
    let m = m.to_str().unwrap();
    // No usable GPU: a clear error, with a code, instead of a crash.
    let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
        .args(["generate", "-m", m, "-p", "hi"])
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .env("VK_DRIVER_FILES", "/nonexistent.json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("NO_WEBGPU"), "{err}");
    fail(
        &["generate", "-m", m, "-p", "hi", "--top-p", "0"],
        "INVALID_SAMPLING_PARAMS",
    );
    fail(
        &["generate", "-m", m, "--tokens", "1,2,3,4,5,6", "--ctx", "4"],
        "PROMPT_TOO_LONG",
    );
    fail(&["generate", "-m", m, "--tokens", "99999999"], "BAD_TOKEN");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `generate --chat --chat-template FILE` gives a model a template in place of the file's: the real
/// Gemma 3 270M is a base model without one, so `--chat` alone fails with a typed error that
/// names the flag, and with Gemma 3's official template it renders BOS and the turns. A template
/// that does not compile, or a file that does not exist, fails before the model loads.
#[test]
fn chat_template_flag_gives_a_base_model_a_template() {
    let gemma = common::model("gemma-3-270m-q4_k_m.gguf");
    let template = common::model("google-gemma-3-it.jinja");
    let m = gemma.to_str().unwrap();
    let base = ["generate", "-m", m, "--chat", "-p", "Hello", "-n", "2", "--temp", "0", "--json"];
    let out = cli(&base);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("INVALID_ARGUMENT") && err.contains("--chat-template"), "{err}");
    let mut args = base.to_vec();
    args.extend_from_slice(&["--chat-template", template.to_str().unwrap()]);
    let j = last_json(&ok_stdout(&args));
    let ids: Vec<u64> = j["prompt_tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    // <bos> <start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n
    assert_eq!(ids.first(), Some(&2), "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 105).count(), 2, "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 106).count(), 1, "{ids:?}");
    assert_eq!(j["tokens"].as_array().map(Vec::len), Some(2));
    let bad = std::env::temp_dir().join(format!("llama-webgpu-bad-template-{}.jinja", std::process::id()));
    std::fs::write(&bad, "{% if %}").unwrap();
    for (file, code) in [(bad.to_str().unwrap(), "TEMPLATE_ERROR"), ("/nonexistent/template.jinja", "INVALID_ARGUMENT")] {
        let mut args = base.to_vec();
        args.extend_from_slice(&["--chat-template", file]);
        let out = cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(code), "{file}: {err}");
    }
    std::fs::remove_file(bad).unwrap();
}

/// Every family's decode step with a GPU's kernel choices (`--norm fused --swiglu fused`, and
/// the joint products): its dispatches, counted, and the separate kernels' results. Phi-3's Q, K
/// and V (and gate and up) come cut from its fused matrices, which the loader puts back in one
/// buffer; Qwen3's and Gemma 3's per-head norms of Q and K ride in RoPE, and Gemma 3's post-norms
/// are a dispatch each (README: folding them into the next products lost).
#[test]
fn every_family_decodes_in_few_dispatches_with_the_same_results() {
    let dir = tmpdir("family-dispatches");
    // (family, dispatches per layer of a decode step with a GPU's choices)
    for (arch, per_layer) in [("llama", 6u64), ("qwen2", 6), ("qwen3", 6), ("phi3", 6), ("gemma3", 8)] {
        let file = dir.join(format!("tiny-{arch}.gguf"));
        let m = file.to_str().unwrap();
        ok_stdout(&["synth", "-o", m, "--shape", "tiny", "--arch", arch, "--type", "q4_0", "--seed", "7", "--context", "256"]);
        let gpu = ["--norm", "fused", "--swiglu", "fused"];
        let mut args = vec!["bench", "-m", m, "--prompt-len", "4", "-n", "2", "--json"];
        args.extend_from_slice(&gpu);
        let j = last_json(&ok_stdout(&args));
        let layers = last_json(&ok_stdout(&["info", "-m", m, "--json"]))["hparams"]["n_layer"].as_u64().unwrap();
        // The embedding, the layers, the output and the argmax's two passes.
        assert_eq!(j["decode_dispatches_per_token"].as_u64(), Some(1 + layers * per_layer + 3), "{arch}: {j}");
        // Decode-sized steps scored teacher-forced, f32 cache: the fused kernels change only the
        // summation order, and the joint products not even that.
        let stepwise = |extra: &[&str]| {
            let mut a = vec!["score", "-m", m, "-p", "The capital of France is Paris, and the capital of Italy is Rome", "--top", "1", "--json", "--no-f16", "--chunk", "1"];
            a.extend_from_slice(extra);
            last_json(&ok_stdout(&a))
        };
        let separate = stepwise(&["--norm", "separate", "--swiglu", "separate"]);
        let fused = stepwise(&gpu);
        assert_scores_close(arch, &separate, &fused);
        let mut apart = gpu.to_vec();
        apart.extend_from_slice(&["--join", "separate"]);
        assert_eq!(fused, stepwise(&apart), "{arch}: joint products");
        std::fs::remove_file(&file).unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
    // The real Gemma 3 270M decodes as the separate kernels do with a GPU's choices, the output
    // product normalizing as it loads (which `score` does not run): its residual stream is
    // large, and its matrices of four types take Q and K joint, V apart.
    let gemma = common::model("gemma-3-270m-q4_k_m.gguf");
    let greedy = |extra: &[&str]| {
        let mut a = vec!["generate", "-m", gemma.to_str().unwrap(), "-p", "The history of the printing press begins in", "-n", "16", "--temp", "0", "--json"];
        a.extend_from_slice(extra);
        last_json(&ok_stdout(&a))["tokens"].clone()
    };
    let separate = greedy(&["--norm", "separate", "--swiglu", "separate"]);
    assert_eq!(separate.as_array().map(Vec::len), Some(16));
    assert_eq!(greedy(&["--norm", "fused", "--swiglu", "fused"]), separate);
}

/// Each family chats through the CLI with its own vocabulary and chat template: a released
/// model's shape cut to one block (`synth --shape … --layers 1`, which takes the family's
/// vocabulary and official template from .cache/models), `generate --chat` with a system
/// message renders the template and feeds the family's turn-marker tokens, then generates on
/// the GPU. Checked: the prompt's control tokens (Qwen's ChatML `<|im_start|>`/`<|im_end|>`,
/// Gemma's BOS and `<start_of_turn>` with the system folded into the user turn, Phi-3's
/// `<|system|>`, `<|user|>` and `<|assistant|>` with the newlines after them stripped).
#[test]
fn every_family_chats_with_its_own_template() {
    let dir = tmpdir("families");
    // (shape, the prompt's first ids, ids it must hold, how many times each, its last id)
    let families: [(&str, &[u64], &[(u64, usize)], u64); 4] = [
        ("qwen2.5-0.5b", &[151644, 8948], &[(151644, 3), (151645, 2)], 198),
        ("qwen3-0.6b", &[151644, 8948], &[(151644, 3), (151645, 2)], 198),
        ("gemma3-1b", &[2, 105], &[(105, 2), (106, 1)], 107),
        ("phi3.5-mini", &[32006], &[(32006, 1), (32010, 1), (32007, 2)], 32001),
    ];
    for (shape, head, holds, last) in families {
        let file = dir.join(format!("{shape}.gguf"));
        let file = file.to_str().unwrap();
        ok_stdout(&["synth", "-o", file, "--shape", shape, "--layers", "1", "--type", "q8_0", "--seed", "3"]);
        let j = last_json(&ok_stdout(&["generate", "-m", file, "--chat", "--system", "Be brief.", "-p", "Hello", "-n", "3", "--temp", "0", "--json"]));
        let ids: Vec<u64> = j["prompt_tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let ids = ids.strip_prefix(&[1]).unwrap_or(&ids); // Phi-3's vocabulary adds BOS
        assert!(ids.starts_with(head), "{shape}: {ids:?}");
        for &(id, n) in holds {
            assert_eq!(ids.iter().filter(|&&i| i == id).count(), n, "{shape}: {id} in {ids:?}");
        }
        assert_eq!(ids.last(), Some(&last), "{shape}: {ids:?}");
        assert_eq!(j["backend"], "gpu");
        assert!(!j["tokens"].as_array().unwrap().is_empty(), "{shape}: {j}");
        std::fs::remove_file(file).unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
}
