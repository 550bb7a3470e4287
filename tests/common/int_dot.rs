//! The packed-integer products' CPU side, shared by tests/gpu_matmul.rs (lavapipe) and
//! tests/browser.rs (Chromium): the quantized activations as quantize.wgsl lays them out, their
//! check against the CPU's rounding, and the reference product with the error bound.

/// Bytes of one unit (`XQ_UNIT_BYTES`).
pub const UNIT_BYTES: usize = 48;

/// One 32-element unit of quantized activations as read back from the GPU.
#[derive(Clone, Copy)]
pub struct XUnit {
    pub q: [i8; 32],
    pub d: f32,
    pub s: [f32; 2],
}

/// The units of a read-back buffer of quantized activations.
pub fn parse(bytes: &[u8]) -> Vec<XUnit> {
    bytes
        .chunks_exact(UNIT_BYTES)
        .map(|c| {
            let f = |i: usize| f32::from_le_bytes(c[32 + 4 * i..36 + 4 * i].try_into().unwrap());
            assert_eq!(&c[44..48], &[0; 4], "the padding word is zero");
            XUnit { q: std::array::from_fn(|k| c[k] as i8), d: f(0), s: [f(1), f(2)] }
        })
        .collect()
}

/// The GPU's quantized activations of `values` (rows of `cols`) against the CPU's rounding of
/// them as llama.cpp rounds them (shaders/quantize.wgsl): per 32 values with the scale rounded to
/// f16 (Q8_0), or with `k_blocks` per 256 values from the signed largest one (Q8_K). The scale
/// within `scale_tolerance` (relative; the GPU's division is accurate to 2.5 ulp, its `exp` in
/// silu(x)·up to a few more) and, per 32, one of the two f16 values around it; each integer within
/// 1 of the CPU's (a value at a rounding boundary may go either way, the GPU's quotient being
/// inexact) and equal nearly everywhere; the half sums exactly d·Σq (one correctly rounded product).
pub fn check_quantized(what: &str, values: &[f32], cols: usize, got: &[XUnit], k_blocks: bool, scale_tolerance: f32) {
    let units = cols.div_ceil(32);
    let (mut off, mut total) = (0, 0);
    let value = |t: usize, k: usize| if k < cols { values[t * cols + k] } else { 0.0 };
    for (i, u) in got.iter().enumerate() {
        let (t, k0) = (i / units, (i % units) * 32);
        let (scale, d) = if k_blocks {
            let b0 = k0 / 256 * 256;
            let m = (b0..b0 + 256).map(|k| value(t, k)).fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
            let iscale = if m != 0.0 { -127.0 / m } else { 0.0 };
            (iscale, if m != 0.0 { 1.0 / iscale } else { 0.0 })
        } else {
            let amax = (k0..k0 + 32).map(|k| value(t, k).abs()).fold(0f32, f32::max);
            let d = amax / 127.0;
            let (lo, hi) = (half::f16::from_f32(d * (1.0 - 1e-3)).to_f32(), half::f16::from_f32(d * (1.0 + 1e-3)).to_f32());
            assert!(half::f16::from_f32(u.d).to_f32() == u.d && u.d >= lo && u.d <= hi, "{what}: unit {i}: scale {} is not an f16 next to {d}", u.d);
            (if amax > 0.0 { 127.0 / amax } else { 0.0 }, d)
        };
        assert!((u.d - d).abs() <= d.abs() * scale_tolerance.max(if k_blocks { 0.0 } else { 1e-3 }), "{what}: unit {i}: scale {} against {d}", u.d);
        for k in 0..32 {
            let want = (value(t, k0 + k) * scale).round_ties_even().clamp(-127.0, 127.0) as i32;
            let q = u.q[k] as i32;
            assert!((q - want).abs() <= 1, "{what}: unit {i} element {k}: {q} against {want} ({})", value(t, k0 + k));
            off += (q != want) as usize;
            total += 1;
        }
        for h in 0..2 {
            let sum: i32 = u.q[16 * h..16 * h + 16].iter().map(|&q| q as i32).sum();
            assert_eq!(u.s[h], u.d * sum as f32, "{what}: unit {i}: half sum {h}");
        }
    }
    assert!(off * 1000 <= total, "{what}: {off} of {total} integers differ from the CPU's rounding");
}

/// `got` (n × rows) against f64 products of the dequantized weights `values` (rows × cols) with
/// the GPU's own quantized activations (d·q), so that only the kernel's float arithmetic
/// differs: per unit it scales an exact integer sum and subtracts the weight's offset or min
/// times the activations' sum, terms each at most about three times the unit's largest |w|
/// times Σ|x̂| (and they may cancel), then adds the units. The bound is (units + 32)·2^-24 of
/// the sum over units of 3·max|w|·Σ|x̂|; one wrong weight element moves a 576-long row by ~1e-3
/// of that. Returns the largest error relative to the scale.
pub fn check_int(what: &str, values: &[f32], cols: usize, rows: usize, xq: &[XUnit], n: usize, got: &[f32]) -> f64 {
    let units = cols.div_ceil(32);
    let eps = (2f64).powi(-24);
    let mut worst = 0f64;
    for tok in 0..n {
        for r in 0..rows {
            let wr = &values[r * cols..(r + 1) * cols];
            let (mut want, mut scale) = (0f64, 0f64);
            for (ui, u) in xq[tok * units..(tok + 1) * units].iter().enumerate() {
                let k0 = ui * 32;
                let ws = &wr[k0..(k0 + 32).min(cols)];
                let wmax = ws.iter().fold(0f64, |m, w| m.max(w.abs() as f64));
                let mut xabs = 0f64;
                for (k, &w) in ws.iter().enumerate() {
                    let xv = u.d as f64 * u.q[k] as f64;
                    want += w as f64 * xv;
                    xabs += xv.abs();
                }
                scale += 3.0 * wmax * xabs;
            }
            let g = got[tok * rows + r] as f64;
            let err = (g - want).abs();
            assert!(
                err <= (units as f64 + 32.0) * eps * scale + 1e-30,
                "{what}: token {tok} row {r}: gpu {g:e}, cpu {want:e}, scale {scale:e}, error {:.2e} of it",
                err / scale
            );
            worst = worst.max(if scale > 0.0 { err / scale } else { 0.0 });
        }
    }
    worst
}
