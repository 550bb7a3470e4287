//! Deterministic random test data, shared by the native kernel tests and the wasm browser tests
//! (included by path, since `common/mod.rs` reads files and the browser tests cannot).
#![allow(dead_code)]

use llama_webgpu::quant::GgmlType;

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// `n` values uniform in [-scale, scale).
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A `rows` × `cols` weight of any supported type: random values for F32/F16; for block types
/// random bytes with the f16 scales replaced by values of a sane magnitude (random bits would
/// give NaN or inf).
pub fn quant_weights(ty: GgmlType, cols: usize, rows: usize, seed: u64) -> Vec<u8> {
    use GgmlType::*;
    let mut rng = Rng(seed);
    let n = cols * rows;
    match ty {
        F32 => (0..n).flat_map(|_| rng.f().to_le_bytes()).collect(),
        F16 => (0..n)
            .flat_map(|_| half::f16::from_f32(rng.f()).to_le_bytes())
            .collect(),
        _ => {
            let (_, bytes) = ty.block_geometry();
            let mut data: Vec<u8> = (0..ty.bytes_for(n as u64).expect("whole blocks"))
                .map(|_| rng.next() as u8)
                .collect();
            let scales: &[usize] = match ty {
                Q4_0 | Q5_0 | Q8_0 => &[0],
                Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
                Q6_K => &[208],
                _ => panic!("no random weights for {ty}"),
            };
            for block in data.chunks_exact_mut(bytes) {
                for &at in scales {
                    let v = rng.f() * 0.05;
                    block[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                }
            }
            data
        }
    }
}
