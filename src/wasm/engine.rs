//! The loaded model for JS ([`Engine`]): tokenizer, chat template and the GPU model with its KV
//! cache, generating one token per awaited `step()` through [`crate::decode::Decoding`].

use super::plan::plan_js;
use super::{invalid, js_error, set};
use crate::decode::constrain::{ConstraintEnv, ConstraintSpec};
use crate::decode::sampling::SamplerConfig;
use crate::decode::{Decoding, FinishReason, GenerateParams, Need, StepOutput};
use crate::gpu::GpuModel;
use crate::tokenizer::{ChatMessage, Tokenizer};
use js_sys::{Array, Object};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// Sampling and stopping parameters as JS passes them (JSON, snake_case as in OpenAI's API).
#[derive(serde::Deserialize)]
#[serde(default)]
struct StepParams {
    max_tokens: usize,
    #[serde(flatten)]
    sampler: SamplerConfig,
    stop: Vec<String>,
    /// Extra stop token ids on top of the model's end-of-generation tokens.
    stop_token_ids: Vec<u32>,
    ignore_eos: bool,
    logprobs: Option<usize>,
    /// Structured output: the grammar the text must match.
    constraint: Option<ConstraintSpec>,
}

impl Default for StepParams {
    fn default() -> Self {
        StepParams {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            logprobs: None,
            constraint: None,
        }
    }
}

struct State {
    model: GpuModel,
    /// Tokens whose keys and values are in the cache, in order from position 0.
    cached: Vec<u32>,
    decoding: Option<Decoding>,
}

/// A loaded model: tokenizer, chat template, and the GPU model with its KV cache. A generation
/// is `begin(promptIds, paramsJson)` then `await step()` until a step has `finish`; the KV
/// cache is reused for the longest prefix the new prompt shares with what it holds.
#[wasm_bindgen]
pub struct Engine {
    state: Rc<RefCell<State>>,
    tokenizer: Rc<Tokenizer>,
    /// The vocabulary indexed for grammar masks, built by the first constrained request.
    constraint_env: RefCell<Option<Arc<ConstraintEnv>>>,
    /// What the model takes in GPU memory, from the loader's plan.
    pub(super) plan: Option<crate::model::memory::MemoryPlan>,
}

/// The state, or `INVALID_ARGUMENT` while an awaited step or benchmark holds it.
fn borrow(state: &RefCell<State>) -> Result<std::cell::RefMut<'_, State>, JsValue> {
    state
        .try_borrow_mut()
        .map_err(|_| invalid("the engine is busy with a step; await it first".into()))
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::ContextFull => "length",
        FinishReason::Aborted => "abort",
    }
}

impl Engine {
    pub(super) fn new(model: GpuModel, tokenizer: Tokenizer) -> Engine {
        Engine {
            state: Rc::new(RefCell::new(State {
                model,
                cached: Vec::new(),
                decoding: None,
            })),
            tokenizer: Rc::new(tokenizer),
            constraint_env: RefCell::new(None),
            plan: None,
        }
    }

    fn constraint_env(&self) -> Result<Arc<ConstraintEnv>, JsValue> {
        let mut env = self.constraint_env.borrow_mut();
        if env.is_none() {
            *env = Some(ConstraintEnv::new(&self.tokenizer).map_err(|e| js_error(crate::Error::from(e)))?);
        }
        Ok(env.as_ref().expect("just set").clone())
    }

    fn state(&self) -> Result<std::cell::RefMut<'_, State>, JsValue> {
        borrow(&self.state)
    }
}

#[wasm_bindgen]
impl Engine {
    /// Model facts: `{architecture, nLayer, nEmbd, nHead, nHeadKv, nFf, nVocab, contextLength,
    /// contextSize, bosId, stopIds, hasChatTemplate, name}`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let s = self.state()?;
        let c = &s.model.cfg;
        let o = Object::new();
        set(&o, "architecture", c.graph.arch.name());
        set(&o, "nLayer", c.shape.n_layer as u32);
        set(&o, "nEmbd", c.shape.n_embd as u32);
        set(&o, "nHead", c.shape.n_head as u32);
        set(&o, "nHeadKv", c.shape.n_head_kv as u32);
        set(&o, "nFf", c.shape.n_ff as u32);
        set(&o, "nVocab", c.shape.n_vocab as u32);
        set(&o, "contextLength", c.shape.context_length as u32);
        set(&o, "contextSize", s.model.context_size() as u32);
        set(&o, "bosId", self.tokenizer.bos_id().map_or(JsValue::NULL, JsValue::from));
        let stops: Array = self.tokenizer.stop_ids().into_iter().map(JsValue::from).collect();
        set(&o, "stopIds", stops);
        set(&o, "hasChatTemplate", self.tokenizer.chat_template().is_some());
        set(&o, "memory", self.plan.map_or(JsValue::NULL, plan_js));
        Ok(o.into())
    }

    /// Token ids of `text`. `parseSpecial` turns special-token text (`<|eot_id|>`) into its
    /// id; `addBos` puts the BOS token first when the model uses one.
    pub fn tokenize(&self, text: &str, parse_special: bool, add_bos: bool) -> Result<Vec<u32>, JsValue> {
        if add_bos {
            self.tokenizer.encode_prompt(text, parse_special)
        } else {
            self.tokenizer.encode(text, parse_special)
        }
        .map_err(js_error)
    }

    /// Text of `ids`; control tokens appear only with `renderSpecial`.
    pub fn detokenize(&self, ids: &[u32], render_special: bool) -> Result<String, JsValue> {
        let n = self.tokenizer.vocab_size();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= n) {
            return Err(js_error(crate::Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {n}"
            ))));
        }
        Ok(self.tokenizer.decode(ids, render_special))
    }

    /// Renders `[{role, content, tool_calls?, tool_call_id?}]` with the model's chat template;
    /// `toolsJson` (optional) is the `tools` array the template renders for tool calling.
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(
        &self,
        messages_json: &str,
        add_generation_prompt: bool,
        tools_json: Option<String>,
    ) -> Result<String, JsValue> {
        let messages: Vec<ChatMessage> = serde_json::from_str(messages_json)
            .map_err(|e| invalid(format!("messages must be an array of {{role, content}} strings: {e}")))?;
        let tools: Option<serde_json::Value> = match tools_json {
            Some(t) => Some(serde_json::from_str(&t).map_err(|e| invalid(format!("tools must be JSON: {e}")))?),
            None => None,
        };
        match self
            .tokenizer
            .apply_chat_template_with_tools(&messages, tools.as_ref(), add_generation_prompt)
        {
            None => Err(invalid("this model has no chat template (tokenizer.chat_template); give one with the chatTemplate load option".into())),
            Some(r) => r.map_err(js_error),
        }
    }

    /// Starts a generation after `prompt` with `paramsJson` (`{max_tokens, temperature, top_k,
    /// top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty, penalty_last_n,
    /// logit_bias: [[id, bias]], seed, stop, stop_token_ids, ignore_eos, logprobs, constraint}`; `constraint` is
    /// `{type: "json_object" | "json_schema" | "lark" | "regex", schema | grammar | pattern}`). Returns
    /// `{cachedTokens, prefillTokens}`: how much of the prompt the KV cache already held.
    pub fn begin(&self, prompt: &[u32], params_json: &str) -> Result<JsValue, JsValue> {
        let p: StepParams = serde_json::from_str(params_json)
            .map_err(|e| invalid(format!("bad generation parameters: {e}")))?;
        let mut s = self.state()?;
        let ctx = s.model.context_size();
        if prompt.len() >= ctx {
            return Err(js_error(crate::decode::DecodeError::PromptTooLong {
                prompt: prompt.len(),
                context: ctx,
            }));
        }
        let mut stop_tokens = if p.ignore_eos { Vec::new() } else { self.tokenizer.stop_ids() };
        stop_tokens.extend(&p.stop_token_ids);
        let params = GenerateParams {
            max_tokens: p.max_tokens,
            sampler: p.sampler,
            stop_tokens,
            stop_strings: p.stop,
            logprobs: p.logprobs,
        };
        let constraint_stops = params.stop_tokens.clone();
        let mut d = Decoding::new(&self.tokenizer, prompt, params).map_err(js_error)?;
        if let Some(spec) = &p.constraint {
            // Compiled here so a bad schema or grammar fails before any token is generated.
            let env = self.constraint_env()?;
            d.constrain(env.compile(spec, &constraint_stops).map_err(|e| js_error(crate::Error::from(e)))?);
        }
        // Reuse the longest shared prefix, but always run at least one token to get logits
        // (truncating gives back a step queued on the token the last generation ended at).
        let shared = s.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let reuse = shared.min(prompt.len() - 1);
        s.model.truncate(reuse);
        s.cached.truncate(reuse);
        d.skip_cached(reuse);
        s.decoding = Some(d);
        let o = Object::new();
        set(&o, "cachedTokens", reuse as u32);
        set(&o, "prefillTokens", (prompt.len() - reuse) as u32);
        Ok(o.into())
    }

    /// Runs one step (the first processes the prompt) and resolves to `{token, text, finish,
    /// logprob, topLogprobs}`: `token` is null when a stop token ended generation, `text` is
    /// the text that became final, `finish` is null or `stop` / `length` / `abort`.
    pub fn step(&self) -> js_sys::Promise {
        let state = self.state.clone();
        let tokenizer = self.tokenizer.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = borrow(&state)?;
            let s = &mut *guard;
            let d = s
                .decoding
                .as_mut()
                .ok_or_else(|| invalid("no generation in progress: call begin() first".into()))?;
            if let Some(f) = d.finish_reason() {
                return Err(invalid(format!("the generation already finished ({})", finish_str(f))));
            }
            let feed = d.feed().to_vec();
            // Where the device chains steps, the next step is queued before this one's token is
            // read back, unless the generation surely ends at that token.
            let may_continue = d.may_continue(s.model.position() + feed.len(), s.model.context_size());
            let out = match d.need() {
                Need::Argmax => s.model.greedy_step(&feed, may_continue).await.map(StepOutput::Argmax),
                Need::Draw { now, next } => s.model.sample_step(&feed, now.into(), may_continue.then(|| next.into())).await.map(StepOutput::Drawn),
                Need::Logits => s.model.forward_last(&feed).await.map(StepOutput::Logits),
            };
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    // The cache holds an unknown state after a failed step: start over next time.
                    s.model.reset();
                    s.cached.clear();
                    s.decoding = None;
                    return Err(js_error(e));
                }
            };
            s.cached.extend_from_slice(&feed);
            let step = d.accept(out, s.model.position(), s.model.context_size());
            if step.as_ref().map_or(true, |st| st.finish.is_some()) {
                // The token ended the generation: give back the step queued on it.
                s.model.drop_queued();
            }
            let step = step.map_err(js_error)?;
            let o = Object::new();
            set(&o, "token", step.token.map_or(JsValue::NULL, JsValue::from));
            set(&o, "text", step.text);
            set(&o, "finish", step.finish.map_or(JsValue::NULL, |f| finish_str(f).into()));
            set(&o, "forced", step.forced.len() as u32);
            if let (Some(c), Some(_)) = (d.constraint(), step.finish) {
                set(&o, "maskMs", c.mask_time().as_secs_f64() * 1e3);
                set(&o, "masks", c.masks());
                set(&o, "compileMs", c.compile_time().as_secs_f64() * 1e3);
            }
            if let Some(lp) = step.logprobs {
                set(&o, "logprob", lp.logprob);
                let top = Array::new();
                for (id, l) in lp.top {
                    let t = Object::new();
                    set(&t, "token", id);
                    set(&t, "text", tokenizer.decode(&[id], false));
                    set(&t, "logprob", l);
                    top.push(&t);
                }
                set(&o, "topLogprobs", top);
            }
            Ok(o.into())
        })
    }

    /// Ends the current generation early; returns the text that was held back (a partial
    /// character or stop-string prefix), and keeps the KV cache for the next request.
    pub fn abort(&self) -> Result<String, JsValue> {
        let mut s = self.state()?;
        s.model.drop_queued();
        Ok(match s.decoding.as_mut() {
            Some(d) => d.abort().text,
            None => String::new(),
        })
    }

    /// Forgets the KV cache (the next request prefills its whole prompt).
    pub fn reset(&self) -> Result<(), JsValue> {
        let mut s = self.state()?;
        s.model.reset();
        s.cached.clear();
        s.decoding = None;
        Ok(())
    }

    /// Measures this device on the loaded model ([`crate::gpu::bench`]): a fixed
    /// `promptTokens`-token prompt prefilled, then `decodeTokens` greedy decode steps, each run
    /// as generation runs it; then, where the device has timestamp queries and `profileSteps`
    /// is not 0, each kernel's mean time over that many more decode steps. Needs the sum of the
    /// three in positions of context, and forgets the conversation in the KV cache. Resolves
    /// to `{promptTokens, decodeTokens, prefillSeconds, decodeSeconds, prefillTokensPerSecond,
    /// decodeTokensPerSecond, dispatchesPerToken, weightBytesPerToken, decodeWeightGBPerSecond,
    /// profile}`; `profile` is `[{kernel, msPerToken, percent, weightBytes, weightGBPerSecond}]`
    /// (the last two null for ops that read no weights), or null without timestamp queries.
    pub fn benchmark(&self, prompt_tokens: u32, decode_tokens: u32, profile_steps: u32) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = borrow(&state)?;
            let s = &mut *guard;
            let need = prompt_tokens as u64 + decode_tokens as u64 + profile_steps as u64;
            let ctx = s.model.context_size() as u64;
            if prompt_tokens == 0 || decode_tokens == 0 {
                return Err(invalid("the benchmark needs at least 1 prompt token and 1 decode token".into()));
            }
            if need > ctx {
                return Err(invalid(format!(
                    "the benchmark needs {need} positions of context ({prompt_tokens} prompt + {decode_tokens} decode + {profile_steps} profiled), but the model was loaded with {ctx}"
                )));
            }
            s.decoding = None;
            s.cached.clear();
            let profile = s.model.ctx.features.timestamps && profile_steps > 0;
            let run = async {
                let (speed, next) = crate::gpu::bench::measure(&mut s.model, prompt_tokens as usize, decode_tokens as usize).await?;
                let kernels = match profile {
                    true => Some(crate::gpu::bench::profile(&mut s.model, next, profile_steps as usize).await?),
                    false => None,
                };
                Ok::<_, crate::gpu::GpuModelError>((speed, kernels))
            };
            let result = run.await;
            // Whatever the cache holds now is the benchmark's: the next request starts over.
            s.model.reset();
            let (speed, kernels) = result.map_err(js_error)?;
            let o = Object::new();
            set(&o, "promptTokens", speed.prompt_tokens as u32);
            set(&o, "decodeTokens", speed.decode_tokens as u32);
            set(&o, "prefillSeconds", speed.prefill_s);
            set(&o, "decodeSeconds", speed.decode_s);
            set(&o, "prefillTokensPerSecond", speed.prefill_tokens_per_s());
            set(&o, "decodeTokensPerSecond", speed.decode_tokens_per_s());
            set(&o, "dispatchesPerToken", speed.dispatches_per_token as f64);
            set(&o, "weightBytesPerToken", speed.weight_bytes_per_token as f64);
            set(&o, "decodeWeightGBPerSecond", speed.decode_weight_gb_per_s());
            let profile = kernels.map_or(JsValue::NULL, |ks| {
                ks.iter()
                    .map(|k| {
                        let t = Object::new();
                        set(&t, "kernel", k.kernel);
                        set(&t, "msPerToken", k.us_per_token / 1e3);
                        set(&t, "percent", k.percent);
                        set(&t, "weightBytes", k.weight_bytes.map_or(JsValue::NULL, |b| JsValue::from(b as f64)));
                        set(&t, "weightGBPerSecond", k.weight_gb_per_s().map_or(JsValue::NULL, JsValue::from));
                        JsValue::from(t)
                    })
                    .collect::<Array>()
                    .into()
            });
            set(&o, "profile", profile);
            Ok(o.into())
        })
    }

    /// Destroys the GPU device, as a driver reset or a lost GPU would: for tests of device-loss
    /// handling (the next step fails with `DEVICE_LOST`; `LlamaEngine.reload()` recovers).
    #[wasm_bindgen(js_name = destroyDeviceForTesting)]
    pub fn destroy_device_for_testing(&self) -> Result<(), JsValue> {
        self.state()?.model.ctx.device.destroy();
        Ok(())
    }

    /// Tokens generated in the current (or last) generation.
    #[wasm_bindgen(js_name = generatedTokens)]
    pub fn generated_tokens(&self) -> Result<Vec<u32>, JsValue> {
        let s = self.state()?;
        Ok(s.decoding.as_ref().map_or(Vec::new(), |d| d.tokens().to_vec()))
    }
}

