//! CPU dequantization against gguf-py, bit for bit, on real tensors of every supported type.
//!
//! The material comes from `scripts/setup`: SmolLM2-135M-Instruct in Q4_1 and its requantizations
//! by llama.cpp (`scripts/requant.py`). References are made by `scripts/quant_ref.py` (gguf-py's
//! `gguf.quants.dequantize`) into `.cache/quant-ref/`; this test runs it, and it does nothing when
//! its cache is current.
#![cfg(not(target_arch = "wasm32"))]

use llama_webgpu::gguf::GgufFile;
use llama_webgpu::quant::{
    dequantize, dequantize_into, dequantize_row, dequantize_rows, GgmlType, QuantError,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[path = "common/random.rs"]
mod random;
use llama_webgpu::quant::QK_K;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FAMILY: &str = "SmolLM2-135M-Instruct.";
/// Files scripts/setup provides (any other `SmolLM2-135M-Instruct.*.gguf` is tested too);
/// together they hold tensors of every supported type.
const EXPECTED_MODELS: [&str; 16] = [
    "Q4_1",
    "F16",
    "BF16",
    "Q4_0",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q2_K_pure",
    "Q3_K_M",
    "Q4_K_M",
    "Q5_K_M",
    "Q6_K",
    "IQ4_NL",
    "IQ4_XS",
    "IQ3_S",
];
const SUPPORTED: [GgmlType; 16] = {
    use GgmlType::*;
    [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, IQ3_S,
    ]
};

#[derive(Deserialize)]
struct Manifest {
    tensors: Vec<RefTensor>,
}

#[derive(Deserialize)]
struct RefTensor {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    n_elements: u64,
    file: String,
    sha256: String,
}

struct ModelRefs {
    model: PathBuf,
    dir: PathBuf,
    tensors: Vec<RefTensor>,
}

fn setup_hint() -> &'static str {
    "run scripts/setup (it downloads the model, requantizes it and installs the gguf reference in .cache/venv)"
}

/// The models and their references, made once per test binary.
fn references() -> &'static [ModelRefs] {
    static REFS: OnceLock<Vec<ModelRefs>> = OnceLock::new();
    REFS.get_or_init(|| {
        let root = Path::new(ROOT);
        let dir = root.join(".cache/models");
        let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; {}", dir.display(), setup_hint()))
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(FAMILY) && n.ends_with(".gguf"))
            })
            .collect();
        models.sort();
        let missing: Vec<_> = EXPECTED_MODELS
            .iter()
            .map(|m| dir.join(format!("{FAMILY}{m}.gguf")))
            .filter(|m| !models.contains(m))
            .map(|m| m.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "missing test models {missing:?}: {}",
            setup_hint()
        );
        let python = root.join(".cache/venv/bin/python");
        assert!(
            python.is_file(),
            "no {}: {}",
            python.display(),
            setup_hint()
        );
        let out = root.join(".cache/quant-ref");
        let status = Command::new(&python)
            .arg(root.join("scripts/quant_ref.py"))
            .args(&models)
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}; {}", python.display(), setup_hint()));
        assert!(
            status.success(),
            "scripts/quant_ref.py failed ({status}); {}",
            setup_hint()
        );
        models
            .into_iter()
            .map(|model| {
                let stem = model.file_stem().unwrap().to_string_lossy().into_owned();
                let dir = out.join(stem);
                let text = std::fs::read_to_string(dir.join("manifest.json"))
                    .expect("quant_ref.py wrote the manifest");
                let manifest: Manifest = serde_json::from_str(&text).expect("valid manifest");
                ModelRefs {
                    model,
                    dir,
                    tensors: manifest.tensors,
                }
            })
            .collect()
    })
}

fn read_reference(dir: &Path, t: &RefTensor) -> Vec<u8> {
    let path = dir.join(&t.file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len() as u64, 4 * t.n_elements, "{}", path.display());
    bytes
}

fn ref_value(reference: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(reference[4 * i..4 * i + 4].try_into().unwrap())
}

/// The first index where `ours` and the reference differ in bits, with a description.
fn first_difference(ours: &[f32], reference: &[u8]) -> Option<String> {
    let differs = |i: &usize| ours[*i].to_bits() != ref_value(reference, *i);
    let first = (0..ours.len()).find(differs)?;
    let count = (first..ours.len()).filter(differs).count();
    let (a, b) = (ours[first], f32::from_bits(ref_value(reference, first)));
    Some(format!("{count} of {} values differ; first at [{first}]: ours {a:e} ({:#010x}), gguf-py {b:e} ({:#010x})", ours.len(), a.to_bits(), b.to_bits()))
}

#[test]
fn dequantization_is_bit_exact_with_gguf_py() {
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    let mut checked = 0;
    for refs in references() {
        let model = GgufFile::open(&refs.model)
            .unwrap_or_else(|e| panic!("{}: {e}", refs.model.display()));
        let model_name = refs.model.file_name().unwrap().to_string_lossy();
        for t in &refs.tensors {
            let tensor = model
                .tensor(&t.name)
                .unwrap_or_else(|| panic!("{model_name}: no tensor {}", t.name));
            let ty = tensor.info.ggml_type;
            assert_eq!(ty.name(), t.ty, "{model_name}: {}", t.name);
            assert_eq!(
                tensor.info.n_elements(),
                t.n_elements,
                "{model_name}: {}",
                t.name
            );
            let ours = dequantize(&t.name, ty, tensor.data, t.n_elements as usize)
                .unwrap_or_else(|e| panic!("{model_name}: {e}"));
            let reference = read_reference(&refs.dir, t);
            if let Some(diff) = first_difference(&ours, &reference) {
                let intact = format!("{:x}", Sha256::digest(&reference)) == t.sha256;
                let note = if intact {
                    ""
                } else {
                    " (the reference file does not match its manifest sha256: rerun scripts/quant_ref.py)"
                };
                failures.push(format!("{model_name}: {} ({ty}): {diff}{note}", t.name));
            }
            covered.insert(ty);
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} tensors differ from gguf-py:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let missing: Vec<_> = SUPPORTED.iter().filter(|t| !covered.contains(t)).collect();
    assert!(
        missing.is_empty(),
        "no test tensor of types {missing:?}; {}",
        setup_hint()
    );
    eprintln!("{checked} tensors bit-exact, types {covered:?}");
}

#[test]
fn rows_match_the_whole_tensor() {
    let mut checked = BTreeSet::new();
    for refs in references() {
        let model = GgufFile::open(&refs.model).unwrap();
        for t in &refs.tensors {
            let tensor = model.tensor(&t.name).unwrap();
            let [row_len, n_rows] = tensor.info.dims[..] else {
                continue;
            };
            let (row_len, n_rows) = (row_len as usize, n_rows as usize);
            let ty = tensor.info.ggml_type;
            // Checking every 2-D type once is enough; it is the row arithmetic that is tested.
            if !checked.insert(ty) {
                continue;
            }
            let reference = read_reference(&refs.dir, t);
            let mut row = vec![0f32; row_len];
            for r in [0, 1, n_rows / 2, n_rows - 1] {
                dequantize_row(&t.name, ty, tensor.data, row_len, r, &mut row).unwrap();
                let want = &reference[r * row_len * 4..(r + 1) * row_len * 4];
                assert!(
                    first_difference(&row, want).is_none(),
                    "{}: {} row {r}",
                    refs.model.display(),
                    t.name
                );
            }
            let mut two = vec![0f32; 2 * row_len];
            dequantize_rows(
                &t.name,
                ty,
                tensor.data,
                row_len,
                n_rows - 2..n_rows,
                &mut two,
            )
            .unwrap();
            assert!(
                first_difference(&two, &reference[(n_rows - 2) * row_len * 4..]).is_none(),
                "{}: last rows",
                t.name
            );
            let e =
                dequantize_row(&t.name, ty, tensor.data, row_len, n_rows, &mut row).unwrap_err();
            assert!(matches!(e, QuantError::RowsOutOfRange { .. }), "{e}");
        }
    }
    // F32 tensors here are all 1-D norms.
    let two_d: BTreeSet<_> = SUPPORTED
        .iter()
        .copied()
        .filter(|t| *t != GgmlType::F32)
        .collect();
    assert_eq!(checked, two_d);
}

#[test]
fn unsupported_type_is_an_error_naming_the_tensor() {
    let mut out = vec![0f32; 256];
    let e = dequantize_into(
        "blk.3.ffn_down.weight",
        GgmlType::TQ2_0,
        &[0; 66],
        &mut out,
    )
    .unwrap_err();
    assert!(
        matches!(&e, QuantError::Unsupported { tensor, ty: GgmlType::TQ2_0 } if tensor == "blk.3.ffn_down.weight"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("blk.3.ffn_down.weight") && e.to_string().contains("TQ2_0"),
        "{e}"
    );
    let e = dequantize_row(
        "token_embd.weight",
        GgmlType::Q8_1,
        &[0; 72],
        64,
        0,
        &mut out[..64],
    )
    .unwrap_err();
    assert!(matches!(e, QuantError::Unsupported { .. }), "{e:?}");
}

#[test]
fn wrong_lengths_are_size_mismatches() {
    let mut out = vec![0f32; 256];
    for ty in SUPPORTED {
        let (n, bytes) = ty.block_geometry();
        let n = 256 / n * n;
        let good = ty.bytes_for(n as u64).unwrap() as usize;
        for len in [0, good - 1, good + 1, good + bytes] {
            let e = dequantize_into("w", ty, &vec![0; len], &mut out[..n]).unwrap_err();
            assert!(
                matches!(e, QuantError::SizeMismatch { ref tensor, n_elements, expected, got, .. }
                    if tensor == "w" && n_elements == n as u64 && expected == good as u64 && got == len as u64),
                "{ty}: {e:?}"
            );
        }
        assert!(
            dequantize_into("w", ty, &vec![0; good], &mut out[..n]).is_ok(),
            "{ty}"
        );
    }
    // An element count that is not a whole number of blocks.
    let e = dequantize_into("w", GgmlType::Q4_K, &[0; 144], &mut out[..255]).unwrap_err();
    assert!(matches!(e, QuantError::SizeMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("not a whole number"), "{e}");
}

/// The lattice tables (src/quant/iq_grids.rs, written by scripts/iq-grids.py) equal gguf-py's,
/// entry by entry, and so does the sign table: a table regenerated or edited wrongly fails here,
/// whichever entries the test models happen to use.
#[test]
fn lattice_tables_equal_gguf_py() {
    use llama_webgpu::quant::iq_grids::*;
    let script = "import json, numpy as np; from gguf import quants as q\n\
        out = {}\n\
        for n in ['IQ2_XXS', 'IQ2_XS', 'IQ2_S', 'IQ3_XXS', 'IQ3_S', 'IQ1_S', 'IQ1_M']:\n\
        \x20   c = getattr(q, n); c.init_grid(); out[n] = np.asarray(c.grid).reshape(c.grid_shape).astype(int).tolist()\n\
        out['ksigns'] = list(q.IQ2_XXS.ksigns)\n\
        print(json.dumps(out))";
    let theirs: std::collections::BTreeMap<String, serde_json::Value> = serde_json::from_slice(&python(script, &[])).unwrap();
    // Ours hold bytes, element 0 lowest; IQ1's -1, 0, 1 are stored plus one (IQ1_M uses IQ1_S's).
    let check = |name: &str, ours: Vec<u64>, per: usize, offset: i64| {
        let t: Vec<Vec<i64>> = serde_json::from_value(theirs[name].clone()).unwrap();
        assert_eq!(t.len(), ours.len(), "{name}");
        for (i, (t, &o)) in t.iter().zip(&ours).enumerate() {
            let o: Vec<i64> = (0..per).map(|k| ((o >> (8 * k)) & 0xff) as i64 - offset).collect();
            assert_eq!(&o, t, "{name} grid entry {i}");
        }
    };
    check("IQ2_XXS", IQ2_XXS_GRID.to_vec(), 8, 0);
    check("IQ2_XS", IQ2_XS_GRID.to_vec(), 8, 0);
    check("IQ2_S", IQ2_S_GRID.to_vec(), 8, 0);
    check("IQ3_XXS", IQ3_XXS_GRID.iter().map(|&e| e.into()).collect(), 4, 0);
    check("IQ3_S", IQ3_S_GRID.iter().map(|&e| e.into()).collect(), 4, 0);
    check("IQ1_S", IQ1_S_GRID.to_vec(), 8, 1);
    check("IQ1_M", IQ1_S_GRID.to_vec(), 8, 1);
    let signs: Vec<u8> = serde_json::from_value(theirs["ksigns"].clone()).unwrap();
    assert_eq!(signs, KSIGNS);
}

/// Runs `script` in the reference venv's Python with `args`, returning its stdout.
fn python(script: &str, args: &[&str]) -> Vec<u8> {
    let python = PathBuf::from(ROOT).join(".cache/venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}; run scripts/setup", python.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The types llama.cpp makes only with an importance matrix have no requantized test file: their
/// dequantization is checked on random blocks (any bits are a valid block once the f16 scale is
/// finite), bit for bit against gguf-py. IQ3_S has a real file too.
#[test]
fn lattice_types_equal_gguf_py_on_random_blocks() {
    use GgmlType::*;
    let dir = std::env::temp_dir().join(format!("llama-webgpu-iq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, ty) in [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M].into_iter().enumerate() {
        let n = 64 * QK_K;
        let data = random::quant_weights(ty, QK_K, 64, 7 + i as u64);
        let path = dir.join(format!("{ty}.bin"));
        std::fs::write(&path, &data).unwrap();
        let theirs = python(
            "import sys, numpy as np; from gguf import quants, GGMLQuantizationType as T\n\
             d = np.fromfile(sys.argv[1], dtype=np.uint8)\n\
             sys.stdout.buffer.write(np.ascontiguousarray(quants.dequantize(d, T[sys.argv[2]]), dtype='<f4').tobytes())",
            &[path.to_str().unwrap(), ty.name()],
        );
        let ours = dequantize("w", ty, &data, n).unwrap();
        assert_eq!(theirs.len(), 4 * n, "{ty}");
        let mut nonzero = 0;
        for (k, (t, o)) in theirs.chunks_exact(4).zip(&ours).enumerate() {
            let t = f32::from_le_bytes(t.try_into().unwrap());
            assert_eq!(t.to_bits(), o.to_bits(), "{ty}: element {k}: gguf-py {t}, ours {o}");
            nonzero += usize::from(t != 0.0);
        }
        // Random blocks use most of each table, signs and scales: a decoder that reads the wrong
        // bits cannot agree by chance.
        assert!(nonzero > n / 2, "{ty}: {nonzero} of {n} nonzero");
    }
    std::fs::remove_dir_all(&dir).ok();
}
