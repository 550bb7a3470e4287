//! The host's draw as the device tests judge the device's: how near a draw is to a boundary
//! where f32 rounding (the device's) and f64 (the host's) may choose differently. Shared by the
//! native kernel tests and the wasm browser tests (included by path).
#![allow(dead_code)]

use llama_webgpu::decode::sampling::Draw;

/// A draw whose [`margin`] is below this may differ between the device and the host.
pub const NEAR: f64 = 1e-5;

/// How near `d`'s draw over `top` is to changing its token: the least distance, in probability,
/// between one of its decisions and the threshold it was taken against (the top-p mass, the
/// min-p floor, `r` against the running sum), in f64 as the host draws. The device draws in f32,
/// so within rounding of a boundary the two may differ.
pub fn margin(top: &[(u32, f32)], d: &Draw) -> f64 {
    let softmax = |c: &[(u32, f32)], t: f64| -> Vec<f64> {
        let e: Vec<f64> = c.iter().map(|&(_, l)| ((l as f64 - c[0].1 as f64) / t).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|x| x / sum).collect()
    };
    let c = &top[..d.k];
    let p = softmax(c, 1.0);
    let mut margin = f64::INFINITY;
    let mut keep = c.len();
    if d.top_p < 1.0 {
        let mut cum = 0.0;
        for (i, q) in p.iter().enumerate() {
            cum += q;
            margin = margin.min((cum - d.top_p as f64).abs());
            if cum >= d.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
    }
    if d.min_p > 0.0 {
        let floor = p[0] * d.min_p as f64;
        for q in &p {
            margin = margin.min((q - floor).abs());
        }
        keep = keep.min(p.iter().take_while(|&&q| q >= floor).count().max(1));
    }
    // The last kept candidate is the pick whether r falls below the running sum or past it.
    let mut cum = 0.0;
    for q in &softmax(&c[..keep], d.temperature as f64)[..keep - 1] {
        cum += q;
        margin = margin.min((cum - d.r).abs());
    }
    margin
}
