//! Random but valid weight blocks: each tensor from its own seeded RNG, generated a few MiB at
//! a time.

use super::PlannedTensor;
use crate::decode::sampling::Rng;
use crate::model::names;
use crate::quant::GgmlType;
use half::f16;

/// The RNG of one tensor: a function of the seed and the tensor's name only.
fn tensor_rng(seed: u64, name: &str) -> Rng {
    // FNV-1a of the name, mixed with the seed through SplitMix64.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut r = Rng::new(seed ^ h);
    Rng::new(r.next_u64())
}

fn fill_random(rng: &mut Rng, out: &mut [u8]) {
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let r = rng.next_u64().to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&r[..n]);
}

/// A normal (not subnormal) f16 uniformly drawn from `[lo, hi)`.
fn rand_scale(rng: &mut Rng, lo: f32, hi: f32) -> f16 {
    f16::from_f32(lo + (hi - lo) * rng.next_f64() as f32)
}

/// One random block of `ty` whose values have a standard deviation of about 0.02 around zero.
fn fill_block(ty: GgmlType, rng: &mut Rng, b: &mut [u8]) {
    match ty {
        // d · (q − 8), q in 0..16: σ ≈ 4.6 d.
        GgmlType::Q4_0 => {
            b[..2].copy_from_slice(&rand_scale(rng, 2.5e-3, 6e-3).to_le_bytes());
            fill_random(rng, &mut b[2..18]);
        }
        // d · q, q in -128..128: σ ≈ 74 d.
        GgmlType::Q8_0 => {
            b[..2].copy_from_slice(&rand_scale(rng, 1.5e-4, 3.5e-4).to_le_bytes());
            fill_random(rng, &mut b[2..34]);
        }
        // d · sc · q − dmin · m over 8 sub-blocks with 6-bit sc and m: with dmin = 8 d and
        // m = round(15 sc / 16), a sub-block is d · sc · (q − 7.5), zero-centred like real
        // weights; σ ≈ 36 · 4.6 d.
        GgmlType::Q4_K => {
            let d = rand_scale(rng, 0.8e-4, 1.6e-4);
            k_header(rng, 4, d, &mut b[..16]);
            fill_random(rng, &mut b[16..144]);
        }
        // d · sc · (q − 32), 6-bit q, 16 signed sub-block scales (here in -16..16 so that d is
        // a normal f16): σ ≈ 9.2 · 18.5 d.
        GgmlType::Q6_K => {
            fill_random(rng, &mut b[..192]);
            let mut r = [0u8; 16];
            fill_random(rng, &mut r);
            for (dst, x) in b[192..208].iter_mut().zip(r) {
                *dst = ((x & 31) as i8 - 16) as u8;
            }
            b[208..210].copy_from_slice(&rand_scale(rng, 0.8e-4, 1.6e-4).to_le_bytes());
        }
        // As Q4_K with 5-bit values: a sub-block is d · sc · (q − 15.5); σ ≈ 36 · 9.2 d.
        GgmlType::Q5_K => {
            let d = rand_scale(rng, 0.4e-4, 0.8e-4);
            k_header(rng, 5, d, &mut b[..16]);
            fill_random(rng, &mut b[16..176]);
        }
        // d · sc · q − dmin · m over 16 groups with 4-bit sc and m: with dmin = 2 d and
        // m = round(3 sc / 4), a group is d · sc · (q − 1.5); σ ≈ 8.8 · 1.1 d.
        GgmlType::Q2_K => {
            let mut r = [0u8; 16];
            fill_random(rng, &mut r);
            for (dst, x) in b[..16].iter_mut().zip(r) {
                let sc = x & 15;
                *dst = sc | (((3 * sc + 2) / 4) << 4);
            }
            fill_random(rng, &mut b[16..80]);
            let d = rand_scale(rng, 1.5e-3, 2.5e-3);
            b[80..82].copy_from_slice(&d.to_le_bytes());
            b[82..84].copy_from_slice(&f16::from_f32(2.0 * d.to_f32()).to_le_bytes());
        }
        // The lattice types: any bits are a valid block once the f16 d is finite. Values are
        // points of the type's lattice, signed, times a scale from d and a 3- or 4-bit s.
        // IQ2: coordinates 8, 25 or 43 (RMS 23–24) times d · (0.5 + s) / 4 (RMS 2.3 d):
        // σ ≈ 55 d.
        GgmlType::IQ2_XXS | GgmlType::IQ2_XS | GgmlType::IQ2_S => {
            b[..2].copy_from_slice(&rand_scale(rng, 2.5e-4, 4.5e-4).to_le_bytes());
            fill_random(rng, &mut b[2..]);
        }
        // IQ3_XXS: coordinates 4..62 (RMS 31) times d · (0.5 + s) / 2 (RMS 4.6 d): σ ≈ 142 d.
        GgmlType::IQ3_XXS => {
            b[..2].copy_from_slice(&rand_scale(rng, 1e-4, 2e-4).to_le_bytes());
            fill_random(rng, &mut b[2..]);
        }
        // IQ3_S: odd coordinates 1..15 (RMS 7.6) times d · (1 + 2 s) (RMS 18.5 d): σ ≈ 140 d.
        GgmlType::IQ3_S => {
            b[..2].copy_from_slice(&rand_scale(rng, 1e-4, 2e-4).to_le_bytes());
            fill_random(rng, &mut b[2..]);
        }
        // IQ1: coordinates -1, 0, 1 shifted by ±1/8 (RMS 0.78) times d · (2 s + 1) (RMS 9.2 d):
        // σ ≈ 7.2 d.
        GgmlType::IQ1_S => {
            b[..2].copy_from_slice(&rand_scale(rng, 2e-3, 3.5e-3).to_le_bytes());
            fill_random(rng, &mut b[2..]);
        }
        // IQ1_M keeps d in the top nibbles of its four scale words (bytes 48..56).
        GgmlType::IQ1_M => {
            fill_random(rng, b);
            let d = rand_scale(rng, 2e-3, 3.5e-3).to_bits();
            for k in 0..4 {
                let at = 49 + 2 * k;
                b[at] = (b[at] & 0x0f) | ((((d >> (4 * k)) & 0xf) as u8) << 4);
            }
        }
        // The 32-value types llama.cpp falls back to for rows that are not whole 256-value
        // blocks (mix::fallback). Q5_0: d · (q − 16), q in 0..32: σ ≈ 9.2 d.
        GgmlType::Q5_0 => {
            b[..2].copy_from_slice(&rand_scale(rng, 1.5e-3, 3e-3).to_le_bytes());
            fill_random(rng, &mut b[2..22]);
        }
        // Q5_1: d · q + m with m = −15.5 d, zero-centred: σ ≈ 9.2 d.
        GgmlType::Q5_1 => {
            let d = rand_scale(rng, 1.5e-3, 3e-3);
            b[..2].copy_from_slice(&d.to_le_bytes());
            b[2..4].copy_from_slice(&f16::from_f32(-15.5 * d.to_f32()).to_le_bytes());
            fill_random(rng, &mut b[4..24]);
        }
        // Q4_1: d · q + m with m = −7.5 d: σ ≈ 4.6 d.
        GgmlType::Q4_1 => {
            let d = rand_scale(rng, 2.5e-3, 6e-3);
            b[..2].copy_from_slice(&d.to_le_bytes());
            b[2..4].copy_from_slice(&f16::from_f32(-7.5 * d.to_f32()).to_le_bytes());
            fill_random(rng, &mut b[4..20]);
        }
        // IQ4_NL: d times one of 16 values in −127..113 (RMS ≈ 64): σ ≈ 64 d.
        GgmlType::IQ4_NL => {
            b[..2].copy_from_slice(&rand_scale(rng, 2e-4, 4e-4).to_le_bytes());
            fill_random(rng, &mut b[2..18]);
        }
        // Rows that fit no quantized block: uniform in ±0.035 (σ ≈ 0.02).
        GgmlType::F16 => {
            for v in b.chunks_exact_mut(2) {
                v.copy_from_slice(&f16::from_f32(0.07 * (rng.next_f64() as f32 - 0.5)).to_le_bytes());
            }
        }
        other => unreachable!("synth does not generate {other}"),
    }
}

/// The 16-byte header of a Q4_K/Q5_K super-block of `bits`-bit values: `d`, dmin = d · 2^(bits-1)
/// and eight random 6-bit scales sc with mins m = round(sc · (2^bits − 1) / 2^bits), so that each
/// sub-block is d · sc · (q − (2^bits − 1) / 2), centred on zero.
fn k_header(rng: &mut Rng, bits: u32, d: f16, h: &mut [u8]) {
    let dmin = f16::from_f32(d.to_f32() * (1 << (bits - 1)) as f32);
    h[..2].copy_from_slice(&d.to_le_bytes());
    h[2..4].copy_from_slice(&dmin.to_le_bytes());
    let r = rng.next_u64();
    let sc: [u8; 8] = std::array::from_fn(|j| ((r >> (6 * j)) & 63) as u8);
    let m: [u8; 8] = sc.map(|s| ((s as u32 * ((1 << bits) - 1) + (1 << (bits - 1))) >> bits) as u8);
    let q = &mut h[4..16];
    for j in 0..4 {
        q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
}

/// Bytes generated per write: whole blocks, about 4 MiB.
pub(super) const CHUNK_BYTES: usize = 4 << 20;

/// Generates tensor `t` chunk by chunk into `emit`.
pub(super) fn generate(
    t: &PlannedTensor,
    seed: u64,
    freq_factors: &[f32],
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut rng = tensor_rng(seed, &t.name);
    let n = t.n_elements() as usize;
    if t.ggml_type == GgmlType::F32 {
        // Norm weights near 1, biases, or the RoPE frequency factors; small either way.
        buf.clear();
        if t.name == names::ROPE_FREQS {
            freq_factors
                .iter()
                .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        } else {
            // Biases small and zero-centred, norm weights near 1; Phi-3's long RoPE factors
            // stretch wavelengths up to 9× (its short ones stay near 1).
            let (centre, spread) = match t.name.as_str() {
                n if n.ends_with(".bias") => (0.0, 0.1),
                names::ROPE_FACTORS_LONG => (5.0, 8.0),
                _ => (1.0, 0.1),
            };
            for _ in 0..n {
                let v = centre + spread * (rng.next_f64() as f32 - 0.5);
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        return emit(buf);
    }
    let (bs, ts) = t.ggml_type.block_geometry();
    let n_blocks = n / bs;
    let per = (CHUNK_BYTES / ts).max(1);
    let mut done = 0;
    while done < n_blocks {
        let k = per.min(n_blocks - done);
        buf.resize(k * ts, 0);
        for b in buf.chunks_exact_mut(ts) {
            fill_block(t.ggml_type, &mut rng, b);
        }
        emit(buf)?;
        done += k;
    }
    Ok(())
}

