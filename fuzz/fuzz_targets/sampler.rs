//! The sampler's parameters and logits: any `SamplerConfig` is either rejected by
//! `Sampler::new` with a typed error or samples without panicking, from any logits (NaN, ±inf,
//! empty, huge).
//!
//! Checks, for a valid config:
//! - the id is inside the logits (when there are any), and the same seed gives the same id;
//! - without penalties or bias, a token with a NaN or -inf logit is never chosen over a finite
//!   one, and a +inf logit always wins;
//! - when `draws()` gives a draw, `Draw::pick` over the sorted top candidates (what the GPU
//!   top-k returns) gives exactly what `sample` gives over all logits, step after step;
//! - a draw over any candidates, with any k, picks one of them.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use llama_webgpu::decode::sampling::{Draw, Sampler, SamplerConfig, MAX_DRAW_K};

/// A float that is often special: NaN, ±inf, 0, -0, tiny, huge, in-range, or raw bits; half the
/// time the typical (default) value, so valid configs are common.
fn float(u: &mut Unstructured, typical: f32) -> Result<f32> {
    if u.arbitrary()? {
        return Ok(typical);
    }
    Ok(match u.int_in_range(0..=11u8)? {
        0 => f32::NAN,
        1 => f32::INFINITY,
        2 => f32::NEG_INFINITY,
        3 => 0.0,
        4 => -0.0,
        5 => f32::MIN_POSITIVE,
        6 => f32::MAX,
        7 => -f32::MAX,
        8 => f32::from_bits(u.arbitrary()?),
        9 => typical,
        _ => u.int_in_range(-4000..=4000i32)? as f32 / 1000.0,
    })
}

fn config(u: &mut Unstructured) -> Result<SamplerConfig> {
    let n_bias = u.int_in_range(0..=4u8)?.saturating_sub(2);
    let mut logit_bias = Vec::new();
    for _ in 0..n_bias {
        let id = if u.arbitrary()? {
            u.int_in_range(0..=40u32)?
        } else {
            u.arbitrary()?
        };
        logit_bias.push((id, float(u, f32::NEG_INFINITY)?));
    }
    Ok(SamplerConfig {
        temperature: float(u, 0.8)?,
        top_k: match u.int_in_range(0..=3u8)? {
            0 => 0,
            1 => 1,
            2 => u.int_in_range(2..=80usize)?,
            _ => u.arbitrary()?,
        },
        top_p: float(u, 0.95)?,
        min_p: float(u, 0.05)?,
        repeat_penalty: float(u, 1.0)?,
        frequency_penalty: float(u, 0.0)?,
        presence_penalty: float(u, 0.0)?,
        penalty_last_n: if u.arbitrary()? {
            u.int_in_range(0..=64usize)?
        } else {
            u.arbitrary()?
        },
        logit_bias,
        seed: u.arbitrary()?,
    })
}

fn logits(u: &mut Unstructured) -> Result<Vec<f32>> {
    let n = u.int_in_range(0..=48usize)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(match u.int_in_range(0..=15u8)? {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => f32::from_bits(u.arbitrary()?),
            4 => f32::MAX,
            // Plenty of ties and ordinary logits.
            _ => u.int_in_range(-40..=40i32)? as f32 / 4.0,
        });
    }
    // Rarely (sorting them dominates the run time) a vocabulary's worth, repeating the pattern.
    if !v.is_empty() && u.int_in_range(0..=255u8)? == 0 {
        let pattern = v.clone();
        v = pattern.iter().copied().cycle().take(32_768).collect();
    }
    Ok(v)
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let cfg = config(&mut u)?;
    let logits = logits(&mut u)?;
    let n_hist = u.int_in_range(0..=16usize)?;
    let mut history = Vec::with_capacity(n_hist);
    for _ in 0..n_hist {
        history.push(if u.arbitrary()? {
            u.int_in_range(0..=50u32)?
        } else {
            u.arbitrary()?
        });
    }
    let steps = u.int_in_range(1..=3u8)?;

    let sampler = match Sampler::new(cfg.clone()) {
        Ok(s) => s,
        Err(e) => {
            assert!(cfg.validate().is_err());
            assert_eq!(
                llama_webgpu::Error::from(e).code(),
                "INVALID_SAMPLING_PARAMS"
            );
            return Ok(());
        }
    };
    let (mut a, mut b) = (sampler.clone(), sampler.clone());
    let plain = cfg.repeat_penalty == 1.0
        && cfg.frequency_penalty == 0.0
        && cfg.presence_penalty == 0.0
        && cfg.logit_bias.is_empty();
    for _ in 0..steps {
        let id = a.sample(&logits, &history);
        assert_eq!(id, b.sample(&logits, &history), "same seed, same token");
        if logits.is_empty() {
            continue;
        }
        assert!(
            (id as usize) < logits.len(),
            "id {id} outside {} logits",
            logits.len()
        );
        let chosen = logits[id as usize];
        if plain {
            if logits.contains(&f32::INFINITY) {
                assert_eq!(chosen, f32::INFINITY, "a +inf logit must win, got {chosen}");
            } else if logits.iter().any(|l| l.is_finite()) {
                assert!(
                    chosen.is_finite(),
                    "chose a {chosen} logit over finite ones"
                );
            }
        }
    }

    // The GPU path: the draw from the top candidates (sorted descending, ties by id) picks what
    // sampling the whole vocabulary does, step after step with the sampler's numbers.
    if sampler.draws().is_some() && !logits.is_empty() && logits.iter().all(|l| l.is_finite()) {
        let mut top: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        top.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        top.truncate(MAX_DRAW_K);
        let (mut full, mut part) = (sampler.clone(), sampler.clone());
        for _ in 0..steps {
            let (now, _) = part.draws().expect("the same sampler draws every step");
            assert_eq!(full.sample(&logits, &[]), now.pick(&top), "Draw::pick == sample");
            part.take_draw();
        }
    }
    // Whatever candidates and k a draw gets, it must not panic and picks one of them.
    let n = u.int_in_range(0..=8usize)?;
    let mut top = Vec::with_capacity(n);
    for _ in 0..n {
        top.push((u.arbitrary()?, float(&mut u, 1.0)?));
    }
    let draw = Draw {
        k: u.int_in_range(0..=70usize)?,
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        min_p: cfg.min_p,
        r: u.int_in_range(0..=u32::MAX)? as f64 / (1u64 << 32) as f64,
    };
    let id = draw.pick(&top);
    assert!(top.is_empty() || top.iter().any(|t| t.0 == id));
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
