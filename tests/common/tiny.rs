//! A tiny, complete Llama GGUF that tests edit before writing: the valid starting point of the
//! hostile-file corpus (tests/hostile.rs) and of the fuzz seeds (tests/fuzz_corpus.rs).

use llama_webgpu::gguf::{GgufWriter, Value};
use llama_webgpu::quant::GgmlType;

pub const N_EMBD: u64 = 8;
pub const N_HEAD: u64 = 2;
pub const N_HEAD_KV: u64 = 1;
pub const HEAD_DIM: u64 = N_EMBD / N_HEAD;
pub const N_FF: u64 = 16;
pub const N_VOCAB: u64 = 16;

/// A complete, valid two-layer Llama with tiny f32 tensors (tied output), with the metadata and
/// tensor list open to edits before it is written.
pub struct Tiny {
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>)>,
}

impl Tiny {
    pub fn new() -> Tiny {
        let u = |v: u64| Value::U32(v as u32);
        let meta = vec![
            (
                "general.architecture".to_string(),
                Value::String("llama".into()),
            ),
            ("llama.embedding_length".into(), u(N_EMBD)),
            ("llama.block_count".into(), u(2)),
            ("llama.attention.head_count".into(), u(N_HEAD)),
            ("llama.attention.head_count_kv".into(), u(N_HEAD_KV)),
            ("llama.feed_forward_length".into(), u(N_FF)),
            ("llama.context_length".into(), u(64)),
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                Value::F32(1e-5),
            ),
            ("llama.vocab_size".into(), u(N_VOCAB)),
        ];
        let (e, q, kv, f) = (N_EMBD, N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM, N_FF);
        let mut tensors = vec![
            ("token_embd.weight".to_string(), vec![e, N_VOCAB]),
            ("output_norm.weight".into(), vec![e]),
        ];
        for l in 0..2 {
            for (w, dims) in [
                ("attn_norm", vec![e]),
                ("attn_q", vec![e, q]),
                ("attn_k", vec![e, kv]),
                ("attn_v", vec![e, kv]),
                ("attn_output", vec![q, e]),
                ("ffn_norm", vec![e]),
                ("ffn_gate", vec![e, f]),
                ("ffn_up", vec![e, f]),
                ("ffn_down", vec![f, e]),
            ] {
                tensors.push((format!("blk.{l}.{w}.weight"), dims));
            }
        }
        Tiny { meta, tensors }
    }
    pub fn set(mut self, key: &str, v: Value) -> Tiny {
        self.meta.retain(|(k, _)| k != key);
        self.meta.push((key.into(), v));
        self
    }
    pub fn unset(mut self, key: &str) -> Tiny {
        self.meta.retain(|(k, _)| k != key);
        self
    }
    pub fn without(mut self, tensor: &str) -> Tiny {
        self.tensors.retain(|(n, _)| n != tensor);
        self
    }
    pub fn reshape(mut self, tensor: &str, dims: &[u64]) -> Tiny {
        self.tensors
            .iter_mut()
            .find(|(n, _)| n == tensor)
            .unwrap()
            .1 = dims.to_vec();
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        let data: Vec<Vec<u8>> = self
            .tensors
            .iter()
            .map(|(_, d)| vec![0u8; d.iter().product::<u64>() as usize * 4])
            .collect();
        let mut w = GgufWriter::default();
        for (k, v) in &self.meta {
            w.kv(k, v.clone());
        }
        for ((name, dims), data) in self.tensors.iter().zip(&data) {
            w.tensor(name, dims, GgmlType::F32, data);
        }
        w.to_bytes()
    }
}
