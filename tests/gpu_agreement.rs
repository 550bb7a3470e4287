//! The CLI's GPU backend against llama.cpp on SmolLM2-135M-Instruct in eight quantizations: the
//! original Q4_1 file and llama.cpp's own requantizations to Q4_K_M, Q4_0, Q8_0, IQ4_NL, IQ4_XS,
//! Q2_K (whose mix gives ffn_down Q3_K) and pure Q2_K (scripts/requant.py). The fixtures come from scripts/ref-generate-quants.mjs: for 16 prompts
//! (chat turns, prose and code), llama.cpp's 64-token greedy continuation and its teacher-forced
//! top-5 log-probabilities.
//!
//! - `score --backend gpu` over prompt + continuation: teacher-forced top-1 agreement with
//!   llama.cpp's continuation over the 16 × 64 continuation positions must reach the CPU
//!   reference's bar (≥ 97%); the mean |Δ logprob| of llama.cpp's chosen token is printed.
//!   Q4_K_M is also run with `--no-f16 --no-subgroups` (what browsers without those features get),
//!   and Q4_1 and Q4_K_M with the packed-integer products (`--int-dot on --chunk 16`; their bar
//!   is `INT_DOT_BAR`).
//! - `generate --backend gpu --temp 0 -n 16` on the first four prompts: free-running greedy
//!   decoding diverges from llama.cpp at near-ties (llama.cpp quantizes its activations, we do
//!   not), so only the first 4 tokens of each case must match, unless the divergence is at a
//!   near-tie (< 0.1 nats in llama.cpp's own log-probabilities); the real matching prefix lengths
//!   are printed.
//!
//! Why 1024 positions: two correct implementations pick different top-1 tokens at near-ties.
//! llama.cpp's own CPU and Vulkan backends differ at about 2.5% of positions, and llama.cpp's
//! batched pass differs from its own one-token-at-a-time greedy decode at 23–29 of these 1024
//! (2.2–2.8%). Over the first four prompts alone (256 positions) the standard error is about one
//! point, and Q4_K_M measured 95.7% there, which llama.cpp's own F32 run of the same weights also
//! scores: the sample was too small to tell an exact implementation from a wrong one. Measured
//! over all 16 prompts (2026-11-28), on lavapipe: Q4_1 97.5%, Q4_K_M 97.2% (97.1% without f16 and
//! subgroups), Q4_0 97.5%, Q8_0 97.4%.
//!
//! At each miss the output shows llama.cpp's log-probability gap between its choice and ours
//! ("llama.cpp's batched top-1": llama.cpp's own teacher-forced pass chose our token, not the one
//! its one-token-at-a-time greedy decode chose). Every miss must be one of those or a near-tie
//! (gap ≤ `MISS_NEAR_TIE`), whatever the count: a miss of another kind fails the test. llama.cpp quantizes activations before every
//! quantized matmul, which moves its log-probabilities by ~0.1–0.5 nats and flips near-ties; we
//! compute in f32.
//!
//! Run with `--nocapture` to see the figures. Missing models or a model whose sha256 differs
//! from the fixture's are failures (run scripts/setup), not skips.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::ids;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const BAR: f64 = 0.97;
const CASES: usize = 16;
const CONTINUATION: usize = 64;
/// Free-running generation is checked on the first four prompts: it is a smoke test of the
/// decode loop, while the teacher-forced score over all 16 is the statistical bar.
const GENERATE_CASES: usize = 4;
/// A divergence before `GENERATE_MIN_PREFIX` is accepted only at a near-tie: where llama.cpp's
/// own log-probabilities for its token and ours differ by less than this.
const NEAR_TIE: f64 = 0.1;
const GENERATE_N: usize = 16;
/// A teacher-forced miss must be a near-tie: our token within this many nats of llama.cpp's top-1
/// in llama.cpp's own log-probabilities (and so in its top-5), unless its batched top-1 is our
/// token. Why 1 nat: llama.cpp quantizes activations to 8 bits before every quantized matmul, and
/// in these fixtures that moves its log-probability of a single token by up to 0.6 nats against
/// an f32 computation (the `|Δ logprob|` max printed per file); the gap between two tokens moves
/// by up to the sum of both shifts. Measured (2026-12-06, lavapipe), the largest gap at a miss:
/// Q4_1 0.34, Q4_0 0.47, Q4_K_M 0.36, Q8_0 0.83 (a flat choice between digits, where llama.cpp's
/// log-probabilities of our token and its own moved by 0.62 and 0.27); llama.cpp's own batched
/// pass and its one-token greedy decode disagree at gaps up to 0.35. A wrong kernel moves tokens
/// by whole nats and off llama.cpp's top-5.
const MISS_NEAR_TIE: f64 = 1.0;
const GENERATE_MIN_PREFIX: usize = 4;
/// The packed-integer products on 8-bit activations (quantized as llama.cpp quantizes them),
/// scored in steps of 16 tokens: the steps that run them, as decoding and short prompts do.
const INT_DOT: &[&str] = &["--int-dot", "on", "--chunk", "16"];
/// Their bar. Measured (2026-12-06, lavapipe): Q4_1 97.7%, Q4_0 97.3%, Q8_0 97.1%, Q4_K_M
/// 96.7–96.9%, against the f32 path's 97.5/97.5/97.4/97.1%.
///
/// Rounding as llama.cpp rounds does not bring us closer to llama.cpp, and cannot: 8-bit
/// activations make the result chaotic in the float order. Measured 2026-12-07 on the same
/// sequences:
/// - llama.cpp's own other CPU build (libggml-cpu-zen4, which ggml loads when the AMX library
///   is hidden) agrees with these fixtures' greedy continuations at 96.8% (Q8_0), 97.2% (Q4_K_M)
///   and 96.2% (Q4_1), and its log-probabilities sit 0.032–0.038 nats from the AMX build's: as
///   far as ours (0.029–0.040, f32 or integer).
/// - On Q4_0 the two builds are bit-identical, and our integer path is no nearer them than our
///   f32 path (0.035 against 0.033 nats).
/// - The CPU reference with llama.cpp's Q8_0 rounding of every product's input moves 0.037 nats
///   and flips 2% of top-1 choices when one input in seven is moved by one ulp first.
/// - On the F16 file (no activation rounding) we agree at 100% within 0.0004 nats.
///
/// So any two correct implementations of the 8-bit arithmetic differ by this much, and the
/// integer path sits at llama.cpp's own floor rather than above it. 96.5% holds what it reaches,
/// and every miss must still be a near-tie of llama.cpp's. The products stay off by default
/// until a GPU measures them (KernelTuning::int_dot_for). Q4_1 (legacy 8-bit blocks with a
/// weight offset) and Q4_K_M (Q5_0, Q8_0, Q4_K and Q6_K weights, both roundings) run here;
/// Q4_0 and Q8_0 add no kernel that these do not, and cost CI time.
const INT_DOT_BAR: f64 = 0.965;
/// The bar for the files whose matrices include 256-value blocks at 2, 3 or 4 bits (Q2_K, Q3_K,
/// IQ4_XS) in SmolLM2's ffn_down. llama.cpp quantizes that product's input (the SwiGLU output,
/// whose outliers are the largest of any product's) to 8 bits per 256 values for these types,
/// and on these files that moves its log-probabilities further from an exact computation than
/// elsewhere: our CPU reference (f32 on the weights as gguf-py decodes them) agrees with its
/// greedy continuation at 96.9% (IQ4_XS), 96.7% (Q2_K) and 97.1% (pure Q2_K), the GPU at
/// 96.9/96.8/97.0% (2026-12-06), and llama.cpp's own batched pass agrees with its own greedy
/// decode at 97.7/96.5/98.0%. 96.5% is that floor; the test also scores the CPU reference and
/// holds the GPU within 3 positions of it (check_score_beside_reference).
const LOW_BIT_BAR: f64 = 0.965;

/// The IQ3_S file's bar. llama.cpp multiplies IQ3_S with its activations quantized to 8 bits per
/// 256 values, as for the types of LOW_BIT_BAR, and this file (IQ3_S made without an importance
/// matrix) has many near-ties: our CPU reference (f32 on the weights as gguf-py decodes them)
/// agrees with llama.cpp's greedy continuation at 96.4% (987/1024), the GPU at 96.5% (988), while
/// llama.cpp's batched pass agrees with its own greedy decode at 97.6% (2026-12-07). The GPU is
/// held at 96%, within 3 positions of the CPU reference, and its greedy output must equal the
/// CPU reference's wherever it leaves llama.cpp's before a near-tie.
const IQ3_S_BAR: f64 = 0.96;

fn check_int_dot_score(quant: &str) -> Option<String> {
    check_score_with_bar(quant, INT_DOT, INT_DOT_BAR, false)
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The model `GEMMA3` stands for in the `quant` argument of the checks: Gemma 3 270M Q4_K_M
/// from PyPI (scripts/setup), beside SmolLM2's quantizations.
const GEMMA3: &str = "GEMMA3";

/// The fixture and the model file for one quantization of SmolLM2 (or [`GEMMA3`]), with the
/// model's sha256 checked.
fn load(quant: &str) -> (Value, PathBuf) {
    let (fixture_name, file) = if quant == GEMMA3 {
        ("gemma3-270m-q4_k_m-greedy.json".to_string(), "gemma-3-270m-q4_k_m.gguf".to_string())
    } else {
        (format!("smollm2-{}-greedy.json", quant.to_lowercase()), format!("SmolLM2-135M-Instruct.{quant}.gguf"))
    };
    let fx = common::fixture(&fixture_name);
    assert_eq!(
        fx["model"],
        file.as_str(),
        "{fixture_name} is for another model"
    );
    let path = common::model(&file);
    let want = fx["model_sha256"]
        .as_str()
        .expect("fixture has model_sha256");
    let got = common::sha256_file(&path);
    assert_eq!(
        got,
        want,
        "{} has sha256 {got}, but tests/fixtures/{fixture_name} was made from a file with sha256 \
         {want}: rerun scripts/setup (it regenerates the requantizations with the pinned llama.cpp), \
         or regenerate the fixtures with scripts/make-fixtures if the model was meant to change",
        path.display()
    );
    assert_eq!(
        fx["cases"].as_array().unwrap().len(),
        CASES,
        "{fixture_name}: {CASES} cases"
    );
    (fx, path)
}

/// Runs the CLI and returns its stdout; a failure shows its stderr.
fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
        .args(args)
        .output()
        .expect("run llama-webgpu");
    assert!(
        out.status.success(),
        "llama-webgpu {} failed ({}):\n{}",
        args.iter()
            .map(|a| if a.len() > 60 { "…" } else { a })
            .collect::<Vec<_>>()
            .join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON")
}

/// llama.cpp's log-probability gap between its top-1 and `token` at one fixture position (how
/// near a tie it was), if `token` is in its top-5.
fn llama_gap(position: &Value, token: u64) -> Option<f64> {
    let top = position["top"].as_array().unwrap();
    let lp = |e: &Value| e[1].as_f64().unwrap();
    top.iter()
        .find(|e| e[0].as_u64() == Some(token))
        .map(|e| lp(&top[0]) - lp(e))
}

/// `score --backend gpu` on every case: prints the agreement figures and returns a failure
/// message when teacher-forced top-1 agreement is below 97%.
fn check_score(quant: &str, extra: &[&str]) -> Option<String> {
    check_score_with_bar(quant, extra, BAR, false)
}

/// `score` on every case's prompt + continuation with `backend` and `extra` flags, one JSON
/// result per case.
fn score_cases(model: &str, label: &str, sequences: &[Vec<u32>], backend: &str, extra: &[&str]) -> Vec<Value> {
    let file = std::env::temp_dir().join(format!(
        "llama-webgpu-agreement-{}-{backend}-{}.txt",
        label.replace(' ', "_"),
        std::process::id()
    ));
    std::fs::write(&file, sequences.iter().map(|s| join(s) + "\n").collect::<String>()).unwrap();
    let mut args = vec!["score", "-m", model, "--backend", backend];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--tokens-file", file.to_str().unwrap(), "--top", "5", "--json"]);
    let stdout = cli(&args);
    std::fs::remove_file(&file).unwrap();
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON line per sequence"))
        .collect();
    assert_eq!(results.len(), sequences.len(), "{label} {backend}: one result per sequence");
    results
}

/// [`check_score`] for the files where llama.cpp's own arithmetic moves further from an exact
/// computation than on the others (see LOW_BIT_BAR): the CPU reference (f32 on the weights as
/// gguf-py decodes them) scores the same cases too, and a miss where the GPU chose what the CPU
/// reference chose is llama.cpp's difference, not the kernels'. The GPU must agree with llama.cpp
/// at LOW_BIT_BAR and within 3 positions of the CPU reference's own agreement.
fn check_score_beside_reference(quant: &str) -> Option<String> {
    check_score_with_bar(quant, &[], LOW_BIT_BAR, true)
}

fn check_score_with_bar(quant: &str, extra: &[&str], bar: f64, beside_reference: bool) -> Option<String> {
    let (fx, model) = load(quant);
    let model = model.to_str().unwrap();
    let label = if extra.is_empty() {
        format!("{quant} gpu")
    } else {
        format!("{quant} gpu {}", extra.join(" "))
    };
    let t = Instant::now();
    let (mut agree, mut total) = (0usize, 0usize);
    // |Δ logprob| of llama.cpp's chosen token, where it is in both top-5 lists.
    let (mut diff_sum, mut diff_n, mut diff_max) = (0f64, 0usize, 0f64);
    let mut lines = Vec::new();
    // Misses that are neither near-ties nor llama.cpp's own batched choice, and the largest
    // near-tie gap seen.
    let (mut unexplained, mut max_gap) = (Vec::new(), 0f64);
    let cases = fx["cases"].as_array().unwrap();
    // Every case's prompt + continuation, scored by one CLI run (one model load for all 16).
    let sequences: Vec<Vec<u32>> = cases
        .iter()
        .map(|case| {
            let prompt = ids(&case["prompt_tokens"]);
            prompt.into_iter().chain(ids(&case["continuation"])).collect()
        })
        .collect();
    let results = score_cases(model, &label, &sequences, "gpu", extra);
    // The CPU reference's top-1 at every position, where asked for.
    let reference: Vec<Option<Vec<u64>>> = if beside_reference {
        score_cases(model, &label, &sequences, "cpu", extra)
            .iter()
            .map(|j| Some(j["positions"].as_array().unwrap().iter().map(|p| p["top"][0][0].as_u64().unwrap()).collect()))
            .collect()
    } else {
        vec![None; cases.len()]
    };
    let mut reference_agree = 0usize;
    for (((case, all), j), reference) in cases.iter().zip(&sequences).zip(&results).zip(&reference) {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["prompt_tokens"]);
        let cont = ids(&case["continuation"]);
        let theirs = case["positions"].as_array().unwrap();
        assert_eq!(theirs.len(), cont.len());
        assert_eq!(cont.len(), CONTINUATION, "{label} {name}: continuation length");
        assert_eq!(&ids(&j["tokens"]), all, "{label} {name}: tokens echoed");
        let ours = j["positions"].as_array().unwrap();
        assert_eq!(
            ours.len(),
            all.len(),
            "{label} {name}: one position per token"
        );
        let mut case_agree = 0;
        let mut misses = Vec::new();
        for (k, &want) in cont.iter().enumerate() {
            // Position prompt.len()-1+k predicts continuation[k].
            let top = ours[prompt.len() - 1 + k]["top"].as_array().unwrap();
            let ours_top1 = top[0][0].as_u64().unwrap();
            let reference_top1 = reference.as_ref().map(|r| r[prompt.len() - 1 + k]);
            reference_agree += usize::from(reference_top1 == Some(want as u64));
            if ours_top1 == want as u64 {
                case_agree += 1;
            } else {
                // How close llama.cpp itself was to choosing our token.
                // llama.cpp's batched pass disagreeing with its own one-token greedy decode
                // explains a miss whatever the gap.
                let batched = theirs[k]["top"][0][0].as_u64() == Some(ours_top1);
                let gap = llama_gap(&theirs[k], ours_top1);
                let (note, near_tie) = match gap {
                    _ if batched => (format!("{k} (= llama.cpp's batched top-1)"), true),
                    _ if reference_top1 == Some(ours_top1) => (format!("{k} (llama.cpp gap {:.3}; = the CPU reference's top-1)", gap.unwrap_or(f64::INFINITY)), true),
                    Some(g) if g <= MISS_NEAR_TIE => (format!("{k} (llama.cpp gap {g:.3})"), true),
                    Some(g) => (format!("{k} (llama.cpp gap {g:.3} > {MISS_NEAR_TIE}: NOT a near-tie)"), false),
                    None => (format!("{k} (not in llama.cpp's top-5: NOT a near-tie)"), false),
                };
                if !near_tie {
                    unexplained.push(format!("{name} {note}"));
                }
                if !batched {
                    max_gap = max_gap.max(gap.unwrap_or(0.0));
                }
                misses.push(note);
            }
            let find = |list: &[Value]| {
                list.iter()
                    .find(|e| e[0].as_u64() == Some(want as u64))
                    .map(|e| e[1].as_f64().unwrap())
            };
            if let (Some(a), Some(b)) = (find(top), find(theirs[k]["top"].as_array().unwrap())) {
                let d = (a - b).abs();
                diff_sum += d;
                diff_n += 1;
                diff_max = diff_max.max(d);
            }
        }
        lines.push(format!(
            "  {name:>14}: {case_agree}/{}; misses at [{}]",
            cont.len(),
            misses.join(", ")
        ));
        agree += case_agree;
        total += cont.len();
    }
    let rate = agree as f64 / total as f64;
    let mean = diff_sum / diff_n.max(1) as f64;
    eprintln!(
        "{label}: teacher-forced top-1 agreement with llama.cpp {agree}/{total} = {:.1}%; \
         |Δ logprob| of llama.cpp's token mean {mean:.4}, max {diff_max:.3} (over {diff_n} \
         positions where it is in both top-5 lists); largest llama.cpp gap at a miss {max_gap:.3}; \
         {:.1}s\n{}",
        rate * 100.0,
        t.elapsed().as_secs_f64(),
        lines.join("\n")
    );
    assert_eq!(total, CASES * CONTINUATION);
    let mut failures = Vec::new();
    if rate < bar - 1e-9 {
        failures.push(format!(
            "{label}: teacher-forced top-1 agreement {agree}/{total} = {:.1}% < {:.1}%",
            rate * 100.0,
            bar * 100.0
        ));
    }
    if beside_reference {
        eprintln!(
            "{label}: the CPU reference's own agreement with llama.cpp {reference_agree}/{total} = {:.1}%",
            100.0 * reference_agree as f64 / total as f64
        );
        if agree + 3 < reference_agree {
            failures.push(format!("{label}: {agree}/{total} agree, more than 3 fewer than the CPU reference's {reference_agree}"));
        }
    }
    if !unexplained.is_empty() {
        failures.push(format!(
            "{label}: misses that are not near-ties in llama.cpp's own log-probabilities: {}",
            unexplained.join("; ")
        ));
    }
    (!failures.is_empty()).then(|| failures.join("\n"))
}

/// `generate --backend gpu --temp 0` on every case: prints how many leading tokens match
/// llama.cpp's greedy continuation and returns a failure message for cases with fewer than 4.
fn check_generate(quant: &str) -> Option<String> {
    check_generate_with(quant, false)
}

/// [`check_generate`] for a file scored beside the CPU reference: a divergence from llama.cpp
/// that is no near-tie is accepted where the CPU reference generates exactly what the GPU did
/// (the difference is llama.cpp's arithmetic; see LOW_BIT_BAR).
fn check_generate_beside_reference(quant: &str) -> Option<String> {
    check_generate_with(quant, true)
}

fn generate_tokens(model: &str, backend: &str, prompt: &[u32]) -> Vec<u32> {
    let n = GENERATE_N.to_string();
    let j = last_json(&cli(&["generate", "-m", model, "--backend", backend, "--tokens", &join(prompt), "-n", &n, "--temp", "0", "--json"]));
    assert_eq!(j["backend"], backend);
    assert_eq!(ids(&j["prompt_tokens"]), prompt);
    ids(&j["tokens"])
}

fn check_generate_with(quant: &str, beside_reference: bool) -> Option<String> {
    let (fx, model) = load(quant);
    let model = model.to_str().unwrap();
    let t = Instant::now();
    let mut prefixes = Vec::new();
    for case in &fx["cases"].as_array().unwrap()[..GENERATE_CASES] {
        let name = case["name"].as_str().unwrap().to_string();
        let prompt = ids(&case["prompt_tokens"]);
        let want: Vec<u32> = ids(&case["continuation"])
            .into_iter()
            .take(GENERATE_N)
            .collect();
        let got = generate_tokens(model, "gpu", &prompt);
        let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        // Where it diverges, how near a tie llama.cpp's own choice was.
        let gap = got.get(same).and_then(|&t| llama_gap(&case["positions"][same], t as u64));
        let mut note = match got.get(same) {
            Some(&t) if same < want.len() => match gap {
                _ if case["positions"][same]["top"][0][0].as_u64() == Some(t as u64) => {
                    format!(" (then {t}, llama.cpp's batched top-1)")
                }
                Some(g) => format!(" (then {t}, llama.cpp gap {g:.3})"),
                None => format!(" (then {t}, not in llama.cpp's top-5)"),
            },
            _ => String::new(),
        };
        // A short prefix is accepted at a near-tie, or (beside the reference) where the CPU
        // reference generates exactly the same tokens.
        let mut accepted = same >= GENERATE_MIN_PREFIX || gap.is_some_and(|g| g < NEAR_TIE);
        if !accepted && beside_reference && generate_tokens(model, "cpu", &prompt) == got {
            note.push_str(", as the CPU reference generates");
            accepted = true;
        }
        prefixes.push((name, same, note, accepted));
    }
    eprintln!(
        "{quant} gpu generate --temp 0 -n {GENERATE_N}: leading tokens equal to llama.cpp's greedy \
         continuation: {}; {:.1}s",
        prefixes
            .iter()
            .map(|(n, s, note, _)| format!("{n} {s}/{GENERATE_N}{note}"))
            .collect::<Vec<_>>()
            .join(", "),
        t.elapsed().as_secs_f64()
    );
    let short: Vec<String> = prefixes
        .iter()
        .filter(|(_, _, _, accepted)| !accepted)
        .map(|(name, same, note, _)| format!("{name} {same}{note}"))
        .collect();
    (!short.is_empty()).then(|| {
        format!(
            "{quant} gpu generate: fewer than {GENERATE_MIN_PREFIX} leading tokens equal llama.cpp's: {}",
            short.join(", ")
        )
    })
}

/// Runs every check first (so all figures are printed), then fails with every failure.
fn all_pass(failures: impl IntoIterator<Item = Option<String>>) {
    let failures: Vec<String> = failures.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn q4_1_gpu_agrees_with_llama_cpp() {
    all_pass([check_score("Q4_1", &[]), check_int_dot_score("Q4_1"), check_generate("Q4_1")]);
}

#[test]
fn q4_k_m_gpu_agrees_with_llama_cpp() {
    all_pass([check_score("Q4_K_M", &[]), check_int_dot_score("Q4_K_M"), check_generate("Q4_K_M")]);
}

#[test]
fn q4_0_gpu_agrees_with_llama_cpp() {
    all_pass([check_score("Q4_0", &[]), check_generate("Q4_0")]);
}

#[test]
fn q8_0_gpu_agrees_with_llama_cpp() {
    all_pass([check_score("Q8_0", &[]), check_generate("Q8_0")]);
}

/// The IQ4 types: IQ4_NL's one scale per 32 values, and IQ4_XS's 256-value blocks with 6-bit
/// sub-block scales (the IQ4_XS file's ffn_down; its other matrices are IQ4_NL).
#[test]
fn iq4_nl_and_iq4_xs_gpu_agree_with_llama_cpp() {
    all_pass([check_score("IQ4_NL", &[]), check_score_beside_reference("IQ4_XS"), check_generate("IQ4_XS")]);
}

/// The 2- and 3-bit k-quants: llama.cpp's Q2_K mix gives SmolLM2's ffn_down Q3_K, and the pure
/// Q2_K file Q2_K (the other matrices are Q4_0, the rows of 576 not being whole 256-value blocks).
#[test]
fn q2_k_and_q3_k_gpu_agree_with_llama_cpp() {
    all_pass([check_score_beside_reference("Q2_K"), check_score_beside_reference("Q2_K_pure"), check_generate("Q2_K")]);
}

/// A lattice type: llama.cpp's IQ3_S mix gives SmolLM2's ffn_down IQ3_S (its other matrices are
/// IQ4_NL), 4 weights per index into a table of 512 points.
#[test]
fn iq3_s_gpu_agrees_with_llama_cpp() {
    all_pass([check_score_with_bar("IQ3_S", &[], IQ3_S_BAR, true), check_generate_beside_reference("IQ3_S")]);
}

/// The kernels browsers without shader-f16 and subgroups get (f32 KV cache, no subgroup reductions).
#[test]
fn q4_k_m_gpu_without_f16_and_subgroups_agrees_with_llama_cpp() {
    all_pass([check_score("Q4_K_M", &["--no-f16", "--no-subgroups"])]);
}

/// Gemma 3 270M (Q5_0, Q8_0, Q4_K and Q6_K matrices; Gemma 3's block: see model::arch) from
/// PyPI, against llama.cpp's greedy continuations of the same 16 prompts, beside the CPU
/// reference: the GPU scores at the 97% bar and generates llama.cpp's first tokens. Measured
/// (2026-12-07, lavapipe): GPU 97.3% (996/1024), the CPU reference 97.3%; every miss is
/// llama.cpp's own batched choice or one where the CPU reference chose as the GPU did, at
/// llama.cpp gaps up to 0.24 nats (llama.cpp's 8-bit activations and f16 GELU table). One
/// greedy continuation leaves llama.cpp's after 3 tokens at such a gap (0.23), as the CPU
/// reference does.
#[test]
fn gemma3_270m_gpu_agrees_with_llama_cpp() {
    all_pass([check_score_with_bar(GEMMA3, &[], BAR, true), check_generate_beside_reference(GEMMA3)]);
}
