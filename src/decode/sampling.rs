//! Turning logits into the next token: penalties, logit bias, top-k, top-p, min-p, temperature
//! and a seeded random draw — the same order llama.cpp's default sampler chain uses.

use std::collections::HashMap;

/// Sampling parameters. `temperature <= 0` means greedy (argmax).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p`; 1.0 disables.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one; 0 disables.
    pub min_p: f32,
    /// llama.cpp's repetition penalty over the last `penalty_last_n` tokens; 1.0 disables.
    pub repeat_penalty: f32,
    /// OpenAI-style penalties: subtract `frequency_penalty · count + presence_penalty`.
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Added to the logit of each listed token. `-inf`, or -100 and below as in OpenAI's API, bans
    /// it. JSON has no infinity, so in JSON a ban is also written as the string `"-inf"`.
    #[serde(with = "bias_json")]
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            seed: 0,
        }
    }
}

/// A bias at or below this bans the token outright: OpenAI documents -100 as a ban, and adding it
/// to a logit would only make the token unlikely.
pub const BAN_BIAS: f32 = -100.0;

/// `logit_bias` in JSON: `[[id, bias]]` where a bias is a number or `"-inf"`, because
/// `JSON.stringify(-Infinity)` is `null` and JSON has no infinities.
mod bias_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Bias {
        Number(f32),
        Word(String),
    }

    pub fn serialize<S: Serializer>(v: &[(u32, f32)], s: S) -> Result<S::Ok, S::Error> {
        let out: Vec<(u32, Bias)> = v
            .iter()
            .map(|&(id, b)| (id, if b == f32::NEG_INFINITY { Bias::Word("-inf".into()) } else { Bias::Number(b) }))
            .collect();
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u32, f32)>, D::Error> {
        let raw = Vec::<(u32, Bias)>::deserialize(d)?;
        raw.into_iter()
            .map(|(id, b)| match b {
                Bias::Number(x) => Ok((id, x)),
                Bias::Word(w) if w == "-inf" => Ok((id, f32::NEG_INFINITY)),
                Bias::Word(w) => Err(serde::de::Error::custom(format!(
                    "logit_bias for token {id}: {w:?} is neither a number nor \"-inf\""
                ))),
            })
            .collect()
    }
}

/// Parameters outside their meaningful range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid sampling parameter {name} = {value}: {why}")]
pub struct SamplerError {
    pub name: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl SamplerError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        "INVALID_SAMPLING_PARAMS"
    }
}

impl SamplerConfig {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 1,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), SamplerError> {
        let err = |name, value: f32, why| {
            Err(SamplerError {
                name,
                value: value.to_string(),
                why,
            })
        };
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return err(
                "temperature",
                self.temperature,
                "must be a finite number >= 0",
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return err("top_p", self.top_p, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return err("min_p", self.min_p, "must be in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return err(
                "repeat_penalty",
                self.repeat_penalty,
                "must be a finite number > 0",
            );
        }
        if !self.frequency_penalty.is_finite() || self.frequency_penalty.abs() > 2.0 {
            return err(
                "frequency_penalty",
                self.frequency_penalty,
                "must be in [-2, 2]",
            );
        }
        if !self.presence_penalty.is_finite() || self.presence_penalty.abs() > 2.0 {
            return err(
                "presence_penalty",
                self.presence_penalty,
                "must be in [-2, 2]",
            );
        }
        for &(id, b) in &self.logit_bias {
            if b.is_nan() || b == f32::INFINITY {
                return Err(SamplerError {
                    name: "logit_bias",
                    value: format!("{b} for token {id}"),
                    why: "must be a finite number, or -infinity to ban the token (a large finite bias such as 100 favours it)",
                });
            }
        }
        Ok(())
    }
}

/// SplitMix64: tiny, seedable and identical on every platform and crate version, which is what
/// "reproducible for a given seed" needs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A sampler with its own RNG state; one per generation.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Self, SamplerError> {
        cfg.validate()?;
        let rng = Rng::new(cfg.seed);
        Ok(Sampler { cfg, rng })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Whether sampling reduces to argmax of the raw logits (no penalties or bias), so a
    /// backend may pick the token itself.
    pub fn is_plain_greedy(&self) -> bool {
        let c = &self.cfg;
        (c.temperature <= 0.0 || c.top_k == 1) && self.ranks_raw_logits()
    }

    /// Whether no penalty or bias moves a logit, so the raw logits' ranking is the sampler's.
    fn ranks_raw_logits(&self) -> bool {
        let c = &self.cfg;
        c.repeat_penalty == 1.0 && c.frequency_penalty == 0.0 && c.presence_penalty == 0.0 && c.logit_bias.is_empty()
    }

    /// Picks the next token from `logits` given the tokens so far (for penalties).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        self.apply_penalties(&mut logits, history);
        for &(id, b) in &self.cfg.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if b <= BAN_BIAS { f32::NEG_INFINITY } else { *l + b };
            }
        }
        if self.cfg.temperature <= 0.0 || self.cfg.top_k == 1 {
            return argmax(&logits);
        }
        // Candidates sorted by logit, descending; ties broken by id so results are stable.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite() || **l == f32::INFINITY)
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cand.is_empty() {
            return argmax(&logits);
        }
        let k = if self.cfg.top_k == 0 {
            cand.len()
        } else {
            self.cfg.top_k.min(cand.len())
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            cand.truncate(k);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.draw(cand)
    }

    /// This step's draw and the next one's, when sampling needs no more than the `k ≤ 64` most
    /// likely tokens of the raw logits: no penalty or bias, and neither greedy (temperature 0 or
    /// `top_k` 1) nor top-k off. A backend then draws the token from its own top-k, and a GPU
    /// can queue the next step on the drawn token before reading it back, with the next draw's
    /// random number. Neither number is consumed until [`Sampler::take_draw`].
    pub fn draws(&self) -> Option<(Draw, Draw)> {
        let c = &self.cfg;
        if !self.ranks_raw_logits() || self.is_plain_greedy() || !(2..=MAX_DRAW_K).contains(&c.top_k) {
            return None;
        }
        let mut rng = self.rng.clone();
        let draw = |r| Draw { k: c.top_k, temperature: c.temperature, top_p: c.top_p, min_p: c.min_p, r };
        let now = draw(rng.next_f64());
        Some((now, draw(rng.next_f64())))
    }

    /// Consumes the random number of this step's draw from [`Sampler::draws`], once the backend
    /// has drawn its token.
    pub fn take_draw(&mut self) {
        self.rng.next_f64();
    }

    /// top-p, min-p, temperature and the seeded draw over sorted candidates.
    fn draw(&mut self, cand: Vec<(u32, f32)>) -> u32 {
        pick(&cand, self.cfg.top_p, self.cfg.min_p, self.cfg.temperature, self.rng.next_f64())
    }

    fn apply_penalties(&self, logits: &mut [f32], history: &[u32]) {
        let c = &self.cfg;
        if c.repeat_penalty == 1.0 && c.frequency_penalty == 0.0 && c.presence_penalty == 0.0 {
            return;
        }
        let recent = &history[history.len().saturating_sub(c.penalty_last_n)..];
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in recent {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            // llama.cpp: divide positive logits, multiply negative ones.
            if *l <= 0.0 {
                *l *= c.repeat_penalty;
            } else {
                *l /= c.repeat_penalty;
            }
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }
}

/// The most candidates a [`Draw`] takes: the top-k that a GPU step returns.
pub const MAX_DRAW_K: usize = crate::model::memory::TOP_K as usize;

/// One seeded draw from a step's top candidates: top-p, min-p and temperature over the `k` most
/// likely tokens, then the pick at the uniform number `r`. It carries all the draw needs, so a
/// GPU can make it on the device (shaders/sample.wgsl, in f32 where [`Draw::pick`] uses f64:
/// the two choose alike unless `r` falls within rounding of a boundary between two tokens).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// Candidates kept by top-k, 2 to [`MAX_DRAW_K`].
    pub k: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub min_p: f32,
    /// Uniform in [0, 1): the sampler's random number for this step.
    pub r: f64,
}

impl Draw {
    /// The draw over `top`, candidates `(id, logit)` sorted descending with ties by id (the first
    /// `k` are used); 0 for no candidates.
    pub fn pick(&self, top: &[(u32, f32)]) -> u32 {
        let k = self.k.max(1).min(top.len());
        if k == 0 {
            return 0;
        }
        pick(&top[..k], self.top_p, self.min_p, self.temperature, self.r)
    }
}

/// top-p, min-p, temperature and the draw at `r` over candidates sorted descending.
fn pick(cand: &[(u32, f32)], top_p: f32, min_p: f32, temperature: f32, r: f64) -> u32 {
    let probs = softmax_of(cand, 1.0);
    // top-p: smallest prefix reaching the mass (always at least one token).
    let mut keep = cand.len();
    if top_p < 1.0 {
        let mut cum = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= top_p as f64 {
                keep = i + 1;
                break;
            }
        }
    }
    // min-p relative to the most likely token.
    if min_p > 0.0 {
        let floor = probs[0] * min_p as f64;
        keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
    }
    let cand = &cand[..keep];
    let probs = softmax_of(cand, temperature);
    let mut cum = 0.0;
    for (i, p) in probs.iter().enumerate() {
        cum += p;
        if r < cum {
            return cand[i].0;
        }
    }
    cand[cand.len() - 1].0
}

/// Index of the largest logit; the lowest id wins ties (NaN is never chosen).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

fn softmax_of(cand: &[(u32, f32)], temperature: f32) -> Vec<f64> {
    let max = cand[0].1 as f64;
    // +inf logits share all the probability (exp(inf - inf) would make every probability NaN,
    // and the draw would fall through to the least likely candidate).
    if max == f64::INFINITY {
        let n = cand.iter().filter(|c| c.1 == f32::INFINITY).count() as f64;
        return cand
            .iter()
            .map(|c| if c.1 == f32::INFINITY { 1.0 / n } else { 0.0 })
            .collect();
    }
    let t = temperature.max(1e-6) as f64;
    let e: Vec<f64> = cand
        .iter()
        .map(|&(_, l)| ((l as f64 - max) / t).exp())
        .collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, -1.0, 2.5, 0.0]
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&logits(), &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_different_seed_differs() {
        let cfg = SamplerConfig {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone()).unwrap();
            (0..64)
                .map(|_| s.sample(&logits(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(&cfg), draw(&cfg));
        assert_ne!(
            draw(&cfg),
            draw(&SamplerConfig {
                seed: 8,
                ..cfg.clone()
            })
        );
        assert!(
            draw(&cfg)
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 2
        );
    }

    #[test]
    fn top_k_top_p_min_p_restrict() {
        let base = SamplerConfig {
            temperature: 5.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        let seen = |cfg: SamplerConfig| {
            let mut s = Sampler::new(cfg).unwrap();
            (0..400)
                .map(|_| s.sample(&logits(), &[]))
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            seen(SamplerConfig {
                top_k: 2,
                ..base.clone()
            }),
            [1, 4].into()
        );
        // probs at T=1: 3.0 → .43, 2.5 → .26, 2.0 → .16: 0.5 needs two tokens.
        assert_eq!(
            seen(SamplerConfig {
                top_p: 0.5,
                ..base.clone()
            }),
            [1, 4].into()
        );
        // min_p 0.5: e^(l-3) >= .5 ⇔ l >= 2.31.
        assert_eq!(
            seen(SamplerConfig {
                min_p: 0.5,
                ..base.clone()
            }),
            [1, 4].into()
        );
    }

    #[test]
    fn penalties_and_bias() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        })
        .unwrap();
        // 3.0 / 2 = 1.5 < 2.5
        assert_eq!(s.sample(&logits(), &[1]), 4);
        let mut s = Sampler::new(SamplerConfig {
            presence_penalty: 1.5,
            ..SamplerConfig::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&logits(), &[1, 4]), 2);
        let mut s = Sampler::new(SamplerConfig {
            logit_bias: vec![(1, f32::NEG_INFINITY), (5, 10.0)],
            ..SamplerConfig::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&logits(), &[]), 5);
        // -100 bans as -inf does, whatever the logit.
        let mut big = logits();
        big[2] = 1e4;
        let mut s = Sampler::new(SamplerConfig { logit_bias: vec![(2, -100.0)], ..SamplerConfig::greedy() }).unwrap();
        assert_ne!(s.sample(&big, &[]), 2);
        let mut s = Sampler::new(SamplerConfig { logit_bias: vec![(2, -99.0)], ..SamplerConfig::greedy() }).unwrap();
        assert_eq!(s.sample(&big, &[]), 2);
    }

    #[test]
    fn logit_bias_json_carries_bans() {
        let c: SamplerConfig = serde_json::from_str(r#"{"logit_bias": [[7, "-inf"], [9, -100], [3, 2.5]]}"#).unwrap();
        assert_eq!(c.logit_bias, vec![(7, f32::NEG_INFINITY), (9, -100.0), (3, 2.5)]);
        let back: SamplerConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.logit_bias, c.logit_bias);
        let e = serde_json::from_str::<SamplerConfig>(r#"{"logit_bias": [[7, "inf"]]}"#).unwrap_err();
        assert!(e.to_string().contains("token 7"), "{e}");
        // JSON.stringify(-Infinity) is null: a clear error, not a silent ban or a bias of 0.
        assert!(serde_json::from_str::<SamplerConfig>(r#"{"logit_bias": [[7, null]]}"#).is_err());
        let e = Sampler::new(SamplerConfig { logit_bias: vec![(42, f32::INFINITY)], ..Default::default() }).unwrap_err();
        assert_eq!(e.code(), "INVALID_SAMPLING_PARAMS");
        assert!(e.to_string().contains("token 42"), "{e}");
    }

    /// A draw from the top candidates, as a backend makes it from its top-k, picks what sampling
    /// the whole vocabulary does, step after step with the sampler's numbers; the next step's
    /// draw is the one after this one's.
    #[test]
    fn draws_from_top_candidates_equal_full_sampling() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 7919 % 503) as f32 / 50.0).sin() * 4.0).collect();
        let cfg = SamplerConfig { temperature: 0.9, top_k: 20, top_p: 0.9, min_p: 0.02, seed: 3, ..Default::default() };
        let mut full = Sampler::new(cfg.clone()).unwrap();
        let mut top = Sampler::new(cfg).unwrap();
        let mut sorted: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        sorted.truncate(MAX_DRAW_K);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (now, next) = top.draws().unwrap();
            assert_eq!(now.k, 20);
            let t = now.pick(&sorted);
            assert_eq!(full.sample(&logits, &[]), t);
            seen.insert(t);
            top.take_draw();
            assert_eq!(top.draws().unwrap().0, next);
        }
        assert!(seen.len() > 2, "{seen:?}");
        for cfg in [
            SamplerConfig { repeat_penalty: 1.1, ..Default::default() },
            SamplerConfig { logit_bias: vec![(3, 1.0)], ..Default::default() },
            SamplerConfig { top_k: 0, ..Default::default() },
            SamplerConfig { top_k: 65, ..Default::default() },
            SamplerConfig::greedy(),
            SamplerConfig { top_k: 1, ..Default::default() },
        ] {
            assert_eq!(Sampler::new(cfg.clone()).unwrap().draws(), None, "{cfg:?}");
        }
    }

    /// Fuzz regression (tests/fixtures/fuzz-regressions/sampler/): with min-p off, a +inf logit
    /// made every probability NaN and the draw returned the least likely candidate.
    #[test]
    fn infinite_logits_win() {
        let logits = [1.0, f32::INFINITY, -2.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 7.0];
        // The two +inf tokens share the probability; a tiny top-p keeps only the first.
        for (temperature, top_k, top_p, min_p, expected) in [
            (0.8, 0, 1.0, 0.0, vec![1, 4]),
            (1.6e25, 63, 1.2e-38, 0.0, vec![1]),
            (0.8, 40, 0.95, 0.05, vec![1, 4]),
            (2.0, 3, 1.0, 0.0, vec![1, 4]),
        ] {
            let mut s = Sampler::new(SamplerConfig { temperature, top_k, top_p, min_p, ..Default::default() })
                .unwrap();
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..64 {
                seen.insert(s.sample(&logits, &[]));
            }
            assert_eq!(seen, expected.into_iter().collect(), "T={temperature} k={top_k} p={top_p} min_p={min_p}");
        }
        let draw = Draw { k: 3, temperature: 0.8, top_p: 0.95, min_p: 0.0, r: 0.99 };
        assert_eq!(draw.pick(&[(9, f32::INFINITY), (2, 5.0), (4, 1.0)]), 9);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(Sampler::new(SamplerConfig {
            temperature: -1.0,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplerConfig {
            top_p: 0.0,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplerConfig {
            min_p: f32::NAN,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplerConfig {
            logit_bias: vec![(0, f32::NAN)],
            ..Default::default()
        })
        .is_err());
    }
}
