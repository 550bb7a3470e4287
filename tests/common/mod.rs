//! Shared test helpers: where the test material lives, and this process's memory figures.
#![allow(dead_code)]

pub mod gpu;
pub mod tiny;

use llama_webgpu::gguf::{str_array, GgufWriter, Value, ValueType};
use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `.cache/models`, which `scripts/setup` fills. Missing material is a failure,
/// not a skip: a test that cannot run must not pass.
pub fn model(name: &str) -> PathBuf {
    let p = root().join(".cache/models").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

pub fn smollm2() -> PathBuf {
    model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// A file's SHA-256, lowercase hex.
pub fn sha256_file(path: &std::path::Path) -> String {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    format!("{:x}", h.finalize())
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = root().join("tests/fixtures").join(name);
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap()
}

/// A memory figure of this process from /proc/self/status (`VmRSS`, `VmSize`, ...), in bytes.
pub fn proc_status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    kb * 1024
}

/// Raw GGUF header bytes, built field by field, for the lies `GgufWriter` will not tell
/// (hostile-file tests).
pub struct Raw(Vec<u8>);

impl Raw {
    /// Magic, version 3 and the two counts.
    pub fn new(n_tensors: u64, n_kv: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(3).u64(n_tensors).u64(n_kv)
    }
    pub fn raw(mut self, bytes: &[u8]) -> Raw {
        self.0.extend_from_slice(bytes);
        self
    }
    pub fn u32(self, v: u32) -> Raw {
        self.raw(&v.to_le_bytes())
    }
    pub fn u64(self, v: u64) -> Raw {
        self.raw(&v.to_le_bytes())
    }
    /// A GGUF string: u64 length, then the bytes.
    pub fn str(self, s: &str) -> Raw {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// A metadata key and its value type id; the value follows.
    pub fn key(self, key: &str, type_id: u32) -> Raw {
        self.str(key).u32(type_id)
    }
    /// A tensor info: name, dims, type id, data offset.
    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    /// Pads to the 32-byte alignment and appends `n` data bytes.
    pub fn data(mut self, n: usize) -> Vec<u8> {
        let pad = self.0.len().div_ceil(32) * 32 - self.0.len();
        self.0.extend(std::iter::repeat_n(0x3cu8, pad + n));
        self.0
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A GGUF writer holding a metadata value of every type (nested arrays included) and a 64-byte
/// alignment, with no tensors yet: the reader's round trips and the fuzz seeds start from it.
pub fn every_value_type<'a>() -> GgufWriter<'a> {
    let mut w = GgufWriter::default();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("general.alignment", Value::U32(64))
        .kv("a.u8", Value::U8(7))
        .kv("a.i8", Value::I8(-7))
        .kv("a.u16", Value::U16(65535))
        .kv("a.i16", Value::I16(-300))
        .kv("a.u32", Value::U32(1 << 31))
        .kv("a.i32", Value::I32(-1))
        .kv("a.f32", Value::F32(0.5))
        .kv("a.bool", Value::Bool(true))
        .kv("a.str", Value::String("héllo".into()))
        .kv("a.u64", Value::U64(u64::MAX))
        .kv("a.i64", Value::I64(i64::MIN))
        .kv("a.f64", Value::F64(-2.25))
        .kv(
            "a.nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(2)]),
                    Value::Array(ValueType::String, vec![Value::String("x".into())]),
                ],
            ),
        )
        .kv("a.strs", str_array(&["a", "bb", ""]));
    w
}
