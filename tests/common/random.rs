//! Deterministic random test data, shared by the native kernel tests and the wasm browser tests
//! (included by path, since `common/mod.rs` reads files and the browser tests cannot).
#![allow(dead_code)]

use llama_webgpu::quant::GgmlType;

/// The crate's own SplitMix64 (the sampler's), so there is one generator to trust.
pub use llama_webgpu::decode::sampling::Rng;

/// The draws the tests need, on top of [`Rng::next_u64`].
pub trait Draws {
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32;
    /// `n` values uniform in [-scale, scale).
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32>;
    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize;
}

impl Draws for Rng {
    fn f(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A `rows` × `cols` weight of any supported type: random values for F32/F16; for block types
/// random bytes with the f16 scales replaced by values of a sane magnitude (random bits would
/// give NaN or inf).
pub fn quant_weights(ty: GgmlType, cols: usize, rows: usize, seed: u64) -> Vec<u8> {
    use GgmlType::*;
    let mut rng = Rng::new(seed);
    let n = cols * rows;
    match ty {
        F32 => (0..n).flat_map(|_| rng.f().to_le_bytes()).collect(),
        F16 => (0..n)
            .flat_map(|_| half::f16::from_f32(rng.f()).to_le_bytes())
            .collect(),
        BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(rng.f()).to_le_bytes())
            .collect(),
        _ => {
            let (_, bytes) = ty.block_geometry();
            let mut data: Vec<u8> = (0..ty.bytes_for(n as u64).expect("whole blocks"))
                .map(|_| rng.next_u64() as u8)
                .collect();
            let scales: &[usize] = match ty {
                Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
                Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
                Q2_K => &[80, 82],
                Q3_K => &[108],
                Q6_K => &[208],
                IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S => &[0],
                // IQ1_M's d is the top nibbles of its four scale words.
                IQ1_M => &[],
                _ => panic!("no random weights for {ty}"),
            };
            for block in data.chunks_exact_mut(bytes) {
                for &at in scales {
                    let v = rng.f() * 0.05;
                    block[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                }
                if ty == IQ1_M {
                    let d = half::f16::from_f32(rng.f() * 0.05).to_bits();
                    for k in 0..4 {
                        let at = 49 + 2 * k;
                        block[at] = (block[at] & 0x0f) | ((((d >> (4 * k)) & 0xf) as u8) << 4);
                    }
                }
            }
            data
        }
    }
}
