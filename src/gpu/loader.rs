//! The one way a model gets onto the GPU: GGUF shard bytes streamed straight into GPU memory as
//! they arrive ([`StreamLoader`]; natively [`load_files`] / [`load_gguf`] feed it from disk), or,
//! for comparison in tests, uploaded from memory-mapped tensors ([`load_mapped`]).
//!
//! The browser cannot memory-map a file, and an 8B model does not fit in wasm memory, so shards
//! are pushed through here in pieces of any size: the incremental GGUF parser reads each shard's
//! header, every tensor's GPU buffers are allocated as soon as the header names it (a model that
//! does not fit fails before its bytes are downloaded), and the [`TensorRouter`] hands each piece
//! of tensor data to its [`WeightWriter`], which repacks and writes it in ~1 MiB row groups
//! (a layer's Q, K and V, and its gate and up, into one buffer each where they can share one,
//! so that a decode step can multiply each set in one dispatch).
//! What stays in memory is the metadata, one pending row group and the small 1-D tensors.

use super::graph::{GpuModel, GpuModelError, TensorSource};
use super::ops::KvCache;
use super::weights::{is_supported, GpuWeight, WeightWriter};
use super::memory::OomFigures;
use super::{GpuContext, GpuError};
use crate::gguf::{GgufError, GgufHeader, HeaderParser, Metadata, Progress, SplitInfo, TensorInfo, TensorRouter};
use crate::model::memory::{uploaded_bytes, MemoryPlan, DEFAULT_CONTEXT};
use crate::model::names::{self, is_graph_tensor};
use crate::model::{ModelConfig, ModelError};
use crate::quant;
use std::collections::HashMap;
use std::sync::Arc;

/// Where one tensor's bytes go.
enum Sink {
    /// Not used by the graph (e.g. extra tensors some converters add): bytes are dropped.
    Skip,
    Weight(Box<WeightWriter>),
    /// A fused matrix (Phi-3's QKV, gate/up), cut by rows into the matrices the graph reads.
    Split(Box<SplitWriter>),
    /// 1-D tensors are small (≤ n_embd elements): collected, dequantized and uploaded as f32.
    Vector(Vec<u8>),
    Done,
}

/// Writes a fused matrix's rows into one [`WeightWriter`] per part, in order: its bytes arrive
/// row after row, and each part is a run of whole rows. The parts share one buffer as a joint
/// ([`WeightWriter::joint`]) where they can, as stored Q, K and V do, so that a decode step
/// multiplies them in one dispatch again.
struct SplitWriter {
    /// Each part with the bytes it still takes.
    parts: Vec<(String, WeightWriter, u64)>,
    at: usize,
}

impl SplitWriter {
    fn new(ctx: &GpuContext, t: &TensorInfo, parts: Vec<(String, usize)>) -> Result<Self, GpuError> {
        let cols = t.dims[0] as usize;
        let shapes: Vec<(&str, usize)> = parts.iter().map(|(name, rows)| (name.as_str(), *rows)).collect();
        let joint = WeightWriter::joint(ctx, t.ggml_type, cols, &shapes)?;
        let mut joint = joint.map(Vec::into_iter);
        let mut writers = Vec::with_capacity(parts.len());
        for (name, rows) in &parts {
            let bytes = t.ggml_type.bytes_for(cols as u64 * *rows as u64).unwrap_or(0);
            let w = match joint.as_mut().and_then(Iterator::next) {
                Some(w) => w,
                None => WeightWriter::new(ctx, name, t.ggml_type, cols, *rows)?,
            };
            writers.push((name.clone(), w, bytes));
        }
        Ok(SplitWriter { parts: writers, at: 0 })
    }

    fn push(&mut self, ctx: &GpuContext, mut bytes: &[u8]) -> Result<(), GpuError> {
        while !bytes.is_empty() {
            let Some((_, w, left)) = self.parts.get_mut(self.at) else {
                // Never reached: the sink is chosen only where the parts' rows add up to the
                // tensor's, so its bytes are theirs.
                return Ok(());
            };
            let n = (*left).min(bytes.len() as u64) as usize;
            w.push(ctx, &bytes[..n])?;
            *left -= n as u64;
            bytes = &bytes[n..];
            if *left == 0 {
                self.at += 1;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<(String, GpuWeight)>, GpuError> {
        self.parts.into_iter().map(|(name, w, _)| Ok((name, w.finish()?))).collect()
    }
}

struct Shard {
    parser: HeaderParser,
    header: Option<GgufHeader>,
    router: Option<TensorRouter>,
    /// Absolute offset of the next byte pushed.
    at: u64,
    /// The shard's size, when the caller knows it.
    len: Option<u64>,
    sinks: Vec<Sink>,
}

/// Counters for progress reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadProgress {
    /// Tensors fully uploaded.
    pub tensors_loaded: usize,
    /// Tensors in the model, once known (the first shard's `split.tensors.count`, or its own
    /// tensor count when the model is not split); 0 before the first header.
    pub tensors_total: usize,
    /// Tensor bytes written to the GPU.
    pub bytes_uploaded: u64,
    /// Shard headers parsed so far; each allocates its tensors' GPU buffers.
    pub headers: u32,
}

/// Builds a [`GpuModel`] from GGUF shards pushed in order, each as a sequence of byte pieces.
pub struct StreamLoader {
    ctx: Arc<GpuContext>,
    shard: Option<Shard>,
    shards_done: u32,
    split: Option<SplitInfo>,
    metadata: Option<Metadata>,
    infos: HashMap<String, TensorInfo>,
    weights: HashMap<String, GpuWeight>,
    vectors: HashMap<String, wgpu::Buffer>,
    progress: LoadProgress,
    /// The context size the caller asked for; `None` lets the memory plan choose.
    requested_context: Option<usize>,
    /// All shards' bytes together, when the caller knows them before the download.
    expected_bytes: Option<u64>,
    /// Bytes of the shards whose headers have been read (as far as their sizes are known).
    headed_bytes: u64,
    /// Made at the first header that gives a valid config: the context is fixed then.
    plan: Option<MemoryPlan>,
    /// Allocated with the plan, so a context that does not fit fails before the download.
    kv: Option<KvCache>,
    /// Placeholders for what later shards' weights and the activations will take, allocated
    /// at each header and dropped just before the real buffers are made: a split model that
    /// does not fit fails at its first header, not after a shard has downloaded.
    reserve: Vec<wgpu::Buffer>,
    reserved_bytes: u64,
    /// The context's allocation counter when this loader started.
    allocated_base: u64,
}

impl StreamLoader {
    pub fn new(ctx: Arc<GpuContext>) -> Self {
        StreamLoader {
            shard: None,
            shards_done: 0,
            split: None,
            metadata: None,
            infos: HashMap::new(),
            weights: HashMap::new(),
            vectors: HashMap::new(),
            progress: LoadProgress::default(),
            allocated_base: ctx.allocated_bytes(),
            requested_context: None,
            expected_bytes: None,
            headed_bytes: 0,
            plan: None,
            kv: None,
            reserve: Vec::new(),
            reserved_bytes: 0,
            ctx,
        }
    }

    /// The context size to build for. Without one, the memory plan picks the model's context
    /// length, at most [`DEFAULT_CONTEXT`] and at most what the device allows.
    /// Set it before the first header: the plan fixes the context there.
    pub fn set_context_size(&mut self, context_size: Option<usize>) {
        self.requested_context = context_size;
    }

    /// All shards' sizes together (e.g. from HEAD requests), so the first header can reserve
    /// memory for the weights of shards not yet seen.
    pub fn set_expected_bytes(&mut self, bytes: u64) {
        self.expected_bytes = Some(bytes);
    }

    /// What the model takes in GPU memory and the context it will have, once a header has
    /// given its configuration (the weights of unseen shards are estimated from their sizes).
    pub fn memory_plan(&self) -> Option<MemoryPlan> {
        self.plan
    }

    /// Weights as uploaded, of the tensors whose headers were read.
    fn known_weights(&self) -> u64 {
        uploaded_bytes(self.infos.values())
    }

    /// Bytes of shards not yet headed (all of them weights, nearly), when the sizes are known.
    fn unseen_weights(&self) -> u64 {
        let more = self.shard_count().is_some_and(|n| self.progress.headers < n);
        match (more, self.expected_bytes) {
            (true, Some(total)) => total.saturating_sub(self.headed_bytes),
            _ => 0,
        }
    }

    fn release_reserve(&mut self) {
        for b in self.reserve.drain(..) {
            b.destroy();
        }
        self.ctx.note_freed(std::mem::take(&mut self.reserved_bytes));
    }

    /// The context the plan fixes; a requested one whose KV cache layers are over the device's
    /// buffer limits is an out-of-memory error before any weight downloads.
    fn resolve_context(&self, cfg: &ModelConfig) -> Result<usize, GpuError> {
        MemoryPlan::resolve_context(&self.ctx.memory_limits(), &cfg.shape, self.requested_context)
            .map_err(|e| self.ctx.over_limit("each KV cache layer (K or V)", e.layer_bytes, e.limit))
    }

    /// After a header: fixes the context and allocates the KV cache (first time only), then
    /// reserves what is still to come. A config the headers do not yet make valid (say, the
    /// vocabulary size comes from a tensor in a later shard) waits for the next header; an
    /// invalid one is reported by `finish` with the complete model.
    fn plan_memory(&mut self) -> Result<(), GpuModelError> {
        let Some(meta) = &self.metadata else {
            return Ok(());
        };
        let Ok(cfg) = ModelConfig::from_gguf(meta, |n| self.infos.get(n)) else {
            return Ok(());
        };
        let context = match self.plan {
            Some(p) => p.context_size as usize,
            None => self.resolve_context(&cfg)?,
        };
        let unseen = self.unseen_weights();
        let plan = MemoryPlan::new(&self.ctx.memory_limits(), &cfg.shape, self.known_weights() + unseen, context);
        self.plan = Some(plan);
        if self.kv.is_none() {
            self.kv = Some(KvCache::new(&self.ctx, cfg.shape.n_layer, context as u32, cfg.shape.n_head_kv as u32, cfg.shape.head_dim as u32)?);
        }
        let mut left = unseen + plan.activations;
        let chunk = self.ctx.limits.max_buffer_size.min(1 << 30);
        let mut i = 0;
        while left > 0 {
            let n = left.min(chunk);
            let what = format!("reservation {i} (for the weights of shards not yet downloaded, and the activations)");
            self.reserve.push(self.ctx.storage(&what, n, wgpu::BufferUsages::empty())?);
            self.reserved_bytes += n.max(4).next_multiple_of(4);
            left -= n;
            i += 1;
        }
        Ok(())
    }

    /// The model's memory needs as far as the headers read so far tell, and the allocation
    /// baseline, for out-of-memory reports.
    pub fn oom_figures(&self) -> OomFigures {
        let plan = self.plan.or_else(|| {
            let meta = self.metadata.as_ref()?;
            let cfg = ModelConfig::from_gguf(meta, |n| self.infos.get(n)).ok()?;
            let context = self.requested_context.unwrap_or(DEFAULT_CONTEXT);
            Some(MemoryPlan::new(&self.ctx.memory_limits(), &cfg.shape, self.known_weights() + self.unseen_weights(), context))
        });
        // Unseen shards' weights are estimated only when their sizes were given.
        let partial = self.shard_count().is_some_and(|n| self.progress.headers < n) && self.expected_bytes.is_none();
        OomFigures { allocated_base: self.allocated_base, plan, partial }
    }

    fn annotate(&self, e: GpuModelError) -> GpuModelError {
        annotate(&self.oom_figures(), &self.ctx, e)
    }

    pub fn progress(&self) -> LoadProgress {
        self.progress
    }

    /// The first shard's metadata (tokenizer, chat template, hyperparameters), once its header
    /// has been parsed.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// Shards the model has: 1, or `split.count`; `None` before the first header.
    pub fn shard_count(&self) -> Option<u32> {
        self.metadata.as_ref().map(|_| self.split.map_or(1, |s| s.count))
    }

    /// Starts the next shard. `total_len` (e.g. from Content-Length) lets a hostile header be
    /// rejected before its counts are trusted.
    pub fn begin_shard(&mut self, total_len: Option<u64>) -> Result<(), GpuModelError> {
        if self.shard.is_some() {
            return Err(split_err("a shard was started before the previous one ended".into()));
        }
        if let Some(n) = self.shard_count() {
            if self.shards_done >= n {
                return Err(split_err(format!("the model has {n} shards, but more were given")));
            }
        }
        self.shard = Some(Shard {
            parser: HeaderParser::new(total_len),
            header: None,
            router: None,
            at: 0,
            len: total_len,
            sinks: Vec::new(),
        });
        Ok(())
    }

    /// Feeds the next bytes of the current shard.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), GpuModelError> {
        let mut shard = self
            .shard
            .take()
            .ok_or_else(|| split_err("bytes were pushed outside a shard".into()))?;
        let r = self.push_into(&mut shard, bytes);
        self.shard = Some(shard);
        r.map_err(|e| self.annotate(e))
    }

    fn push_into(&mut self, shard: &mut Shard, bytes: &[u8]) -> Result<(), GpuModelError> {
        if shard.header.is_none() {
            match shard.parser.feed(bytes)? {
                Progress::NeedMore => {
                    shard.at += bytes.len() as u64;
                    return Ok(());
                }
                Progress::Done(h) => {
                    self.on_header(shard, *h)?;
                    let (at, rest) = shard.parser.take_remainder();
                    shard.at = at;
                    return self.route(shard, &rest);
                }
            }
        }
        self.route(shard, bytes)
    }

    /// Checks a shard's header against the model so far and allocates its tensors' buffers.
    fn on_header(&mut self, shard: &mut Shard, h: GgufHeader) -> Result<(), GpuModelError> {
        let index = self.shards_done;
        let split = SplitInfo::from_metadata(&h.metadata)?;
        if index == 0 {
            if let Some(s) = split {
                if s.index != 0 {
                    return Err(split_err(format!(
                        "the first file given is shard {} of {}; start from shard 1",
                        s.index + 1,
                        s.count
                    )));
                }
            }
            let arch = h.metadata.str("general.architecture").map_err(ModelError::from)?;
            if crate::model::Arch::from_name(arch).is_none() {
                return Err(ModelError::UnsupportedArchitecture(arch.to_string()).into());
            }
            self.split = split;
            self.progress.tensors_total = match split {
                Some(s) if s.tensors_total > 0 => s.tensors_total as usize,
                _ => h.tensors.len(),
            };
        } else {
            let first = self.split.expect("only split models have a second shard");
            match split {
                Some(s) if s.index == index && s.count == first.count => {}
                other => {
                    return Err(split_err(format!(
                        "shard {} of {} has split keys {:?}: the shards are mixed up",
                        index + 1,
                        first.count,
                        other.map(|s| (s.index + 1, s.count))
                    )))
                }
            }
        }
        for t in &h.tensors {
            if self.infos.contains_key(&t.name) {
                // An earlier shard had it (the reader catches repeats inside one shard): a shard of
                // another split, such as another quantization of the same model.
                return Err(split_err(format!(
                    "tensor '{}' of shard {} was already in an earlier shard: the shards are mixed up \
                     (is one from another download of the model?)",
                    t.name,
                    index + 1
                )));
            }
        }
        // Check every type before allocating anything, so an unsupported model fails cleanly.
        for t in &h.tensors {
            if is_graph_tensor(&t.name) && t.dims.len() >= 2 && !is_supported(t.ggml_type) {
                return Err(GpuError::UnsupportedType {
                    tensor: t.name.clone(),
                    ty: t.ggml_type,
                }
                .into());
            }
        }
        // What the header says is on record before anything is allocated, so that a device
        // refusing the buffers below is reported with the whole model's figures.
        for t in &h.tensors {
            self.infos.insert(t.name.clone(), t.clone());
        }
        if index == 0 {
            self.metadata = Some(h.metadata.clone());
        }
        self.headed_bytes += shard.len.unwrap_or_else(|| h.expected_file_len());
        self.progress.headers += 1;
        // The reservation made at the previous header stood in for these buffers.
        self.release_reserve();
        let mut joint = joint_writers(&self.ctx, &h)?;
        // Which matrices are fused (Phi-3), from the first header's metadata.
        let cfg = self.metadata.as_ref().and_then(|m| ModelConfig::from_gguf(m, |n| self.infos.get(n)).ok());
        for t in &h.tensors {
            let fused = cfg.as_ref().and_then(|c| c.fused_parts(&t.name));
            let sink = if !is_graph_tensor(&t.name) || t.size == 0 {
                Sink::Skip
            } else if let Some(parts) = fused.filter(|p| t.dims.len() == 2 && p.iter().map(|x| x.1 as u64).sum::<u64>() == t.dims[1]) {
                Sink::Split(Box::new(SplitWriter::new(&self.ctx, t, parts)?))
            } else if let Some(w) = joint.remove(&t.name) {
                Sink::Weight(Box::new(w))
            } else if t.dims.len() >= 2 {
                Sink::Weight(Box::new(WeightWriter::new(
                    &self.ctx,
                    &t.name,
                    t.ggml_type,
                    t.dims[0] as usize,
                    t.dims[1..].iter().product::<u64>() as usize,
                )?))
            } else {
                // Grown as bytes arrive: the declared size is not trusted for an allocation.
                Sink::Vector(Vec::new())
            };
            shard.sinks.push(sink);
        }
        shard.router = Some(TensorRouter::new(&h));
        shard.header = Some(h);
        self.plan_memory()
    }

    fn route(&mut self, shard: &mut Shard, bytes: &[u8]) -> Result<(), GpuModelError> {
        let at = shard.at;
        shard.at += bytes.len() as u64;
        let (Some(router), Some(header)) = (&shard.router, &shard.header) else {
            unreachable!("routing starts after the header");
        };
        for piece in router.route(at, bytes) {
            let sink = &mut shard.sinks[piece.tensor];
            let name = &header.tensors[piece.tensor].name;
            match sink {
                Sink::Skip => {}
                Sink::Weight(w) => {
                    w.push(&self.ctx, piece.bytes)?;
                    self.progress.bytes_uploaded += piece.bytes.len() as u64;
                }
                Sink::Split(w) => {
                    w.push(&self.ctx, piece.bytes)?;
                    self.progress.bytes_uploaded += piece.bytes.len() as u64;
                }
                Sink::Vector(v) => v.extend_from_slice(piece.bytes),
                Sink::Done => unreachable!("the router never revisits a finished tensor"),
            }
            if piece.last {
                match std::mem::replace(sink, Sink::Done) {
                    Sink::Weight(w) => {
                        self.weights.insert(name.clone(), w.finish()?);
                    }
                    Sink::Split(w) => {
                        self.weights.extend(w.finish()?);
                    }
                    Sink::Vector(v) => {
                        let info = &header.tensors[piece.tensor];
                        self.vectors
                            .insert(name.clone(), upload_vector(&self.ctx, name, info, &v)?);
                        self.progress.bytes_uploaded += v.len() as u64;
                    }
                    _ => {}
                }
                self.progress.tensors_loaded += 1;
            }
        }
        Ok(())
    }

    /// Ends the current shard: every tensor it declares must be complete, and nothing may
    /// follow the last tensor but alignment padding.
    pub fn end_shard(&mut self) -> Result<(), GpuModelError> {
        self.end_shard_inner().map_err(|e| self.annotate(e))
    }

    fn end_shard_inner(&mut self) -> Result<(), GpuModelError> {
        let mut shard = self
            .shard
            .take()
            .ok_or_else(|| split_err("end of a shard that was not started".into()))?;
        if shard.header.is_none() {
            // Fails with the precise truncation, or parses a file that is only a header.
            let h = shard.parser.finish()?;
            self.on_header(&mut shard, *h)?;
            let (at, rest) = shard.parser.take_remainder();
            shard.at = at;
            self.route(&mut shard, &rest)?;
        }
        let h = shard.header.as_ref().expect("header parsed");
        let shard_no = self.shards_done + 1;
        for (t, sink) in h.tensors.iter().zip(&shard.sinks) {
            let end = h.tensor_range(t).end;
            let incomplete = match sink {
                Sink::Done => false,
                Sink::Skip => shard.at < end,
                _ => t.size > 0,
            };
            if incomplete {
                return Err(GgufError::Truncated {
                    what: format!("shard {shard_no}: data of tensor '{}'", t.name),
                    offset: shard.at,
                    needed: end - shard.at,
                }
                .into());
            }
        }
        let data_end = h.tensors.iter().map(|t| h.tensor_range(t).end).max().unwrap_or(h.data_offset);
        let extra = shard.at.saturating_sub(data_end);
        if extra >= h.alignment.max(1) {
            return Err(GgufError::BadTensor {
                tensor: format!("(shard {shard_no})"),
                detail: format!(
                    "{extra} bytes follow the last tensor, which ends at byte {data_end}: the file is longer than its header says"
                ),
            }
            .into());
        }
        self.shards_done += 1;
        Ok(())
    }

    /// After the last shard: validates the complete model and prepares the graph, at the
    /// context the memory plan fixed.
    pub fn finish(mut self) -> Result<GpuModel, GpuModelError> {
        if self.shard.is_some() {
            return Err(split_err("finish() before the last shard ended".into()));
        }
        let count = self.shard_count().ok_or_else(|| split_err("no shard was loaded".into()))?;
        if self.shards_done != count {
            return Err(split_err(format!(
                "the model has {count} shards but {} were loaded",
                self.shards_done
            )));
        }
        if let Some(split) = self.split.filter(|s| s.tensors_total > 0) {
            if split.tensors_total != self.infos.len() as u64 {
                return Err(split_err(format!(
                    "split.tensors.count is {} but the shards hold {} tensors: the shards are mixed up",
                    split.tensors_total,
                    self.infos.len()
                )));
            }
        }
        let meta = self.metadata.as_ref().expect("first shard parsed");
        let infos = &self.infos;
        let cfg = ModelConfig::from_gguf(meta, |n| infos.get(n))?;
        cfg.validate_tensors(|n| infos.get(n))?;
        if self.plan.is_none() {
            self.plan_memory().map_err(|e| self.annotate(e))?;
        }
        // The reservation (the activations, by now) makes way for the real buffers.
        self.release_reserve();
        let figures = self.oom_figures();
        let context = self.plan.map_or(1, |p| p.context_size as usize);
        self.metadata = None;
        let ctx = self.ctx.clone();
        GpuModel::build(ctx.clone(), cfg, &mut self, context).map_err(|e| annotate(&figures, &ctx, e))
    }
}

/// Writers for the matrices of `h` that share a buffer with others of their layer
/// ([`names::JOINTS`]), by tensor name: where all the members are in this header (a model split
/// between them keeps them apart), have one type and row length, and can share one
/// ([`WeightWriter::joint`]).
fn joint_writers(ctx: &GpuContext, h: &GgufHeader) -> Result<HashMap<String, WeightWriter>, GpuModelError> {
    let infos: HashMap<&str, &TensorInfo> = h.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let layers: std::collections::BTreeSet<usize> = h.tensors.iter().filter_map(|t| names::layer_of(&t.name)).collect();
    let mut out = HashMap::new();
    for l in layers {
        for group in names::JOINTS {
            let members: Option<Vec<&TensorInfo>> = group.iter().map(|w| infos.get(names::blk(l, w).as_str()).copied()).collect();
            let Some(members) = members else { continue };
            let first = members[0];
            let alike = members.iter().all(|t| {
                t.dims.len() == 2 && t.size > 0 && t.ggml_type == first.ggml_type && t.dims[0] == first.dims[0] && !out.contains_key(&t.name)
            });
            if !alike {
                continue;
            }
            let shapes: Vec<(&str, usize)> = members.iter().map(|t| (t.name.as_str(), t.dims[1] as usize)).collect();
            if let Some(writers) = WeightWriter::joint(ctx, first.ggml_type, first.dims[0] as usize, &shapes)? {
                for (t, w) in members.iter().zip(writers) {
                    out.insert(t.name.clone(), w);
                }
            }
        }
    }
    Ok(out)
}

/// [`OomFigures::annotate`] for the model's errors, whose GPU errors it annotates.
fn annotate(figures: &OomFigures, ctx: &GpuContext, e: GpuModelError) -> GpuModelError {
    match e {
        GpuModelError::Gpu(g) => figures.annotate(ctx, g).into(),
        e => e,
    }
}

fn split_err(msg: String) -> GpuModelError {
    GgufError::Split(msg).into()
}

impl TensorSource for StreamLoader {
    fn weight(&mut self, name: &str) -> Result<GpuWeight, GpuModelError> {
        self.weights
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor(name.into()).into())
    }
    fn vector_opt(&mut self, name: &str) -> Result<Option<wgpu::Buffer>, GpuModelError> {
        Ok(self.vectors.remove(name))
    }
    fn kv_cache(&mut self) -> Option<KvCache> {
        self.kv.take()
    }
}

/// Native: loads a model by streaming its shard files through a [`StreamLoader`] in 4 MiB
/// reads, the same path the browser takes. Unlike memory-mapping, no file page stays resident,
/// so peak memory is the GPU's copy plus a few MiB (on lavapipe, GPU memory is host memory).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_files(
    ctx: Arc<GpuContext>,
    paths: &[&std::path::Path],
    context_size: Option<usize>,
) -> Result<GpuModel, GpuModelError> {
    use std::io::Read;
    let io = |p: &std::path::Path, source: std::io::Error| GgufError::Io {
        path: p.display().to_string(),
        source,
    };
    let mut loader = StreamLoader::new(ctx);
    loader.set_context_size(context_size);
    let sizes: Result<Vec<u64>, _> = paths.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).map_err(|e| io(p, e))).collect();
    loader.set_expected_bytes(sizes?.iter().sum());
    let mut buf = vec![0u8; 4 << 20];
    for &p in paths {
        let mut f = std::fs::File::open(p).map_err(|e| io(p, e))?;
        let len = f.metadata().map_err(|e| io(p, e))?.len();
        loader.begin_shard(Some(len))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| io(p, e))?;
            if n == 0 {
                break;
            }
            loader.push(&buf[..n])?;
        }
        loader.end_shard()?;
    }
    loader.finish()
}

/// Native: loads an opened (possibly split) GGUF file by streaming its shards from disk through
/// [`load_files`], so the memory map's pages never become resident.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_gguf(ctx: Arc<GpuContext>, model: &crate::gguf::GgufFile, context_size: usize) -> Result<GpuModel, GpuModelError> {
    load_files(ctx, &model.shard_paths(), Some(context_size))
}

/// Validates a model, uploads its weights and prepares every op from tensors already in memory
/// (`tensor` looks them up by name, across shards): the path tests compare the streaming loader
/// with. `context_size` is capped at the model's context length.
pub fn load_mapped<'a>(
    ctx: Arc<GpuContext>,
    meta: &Metadata,
    tensor: impl Fn(&str) -> Option<(&'a TensorInfo, &'a [u8])>,
    context_size: usize,
) -> Result<GpuModel, GpuModelError> {
    let info = |n: &str| tensor(n).map(|(i, _)| i);
    let cfg = ModelConfig::from_gguf(meta, info)?;
    cfg.validate_tensors(info)?;
    let mut source = SliceSource { ctx: &ctx, tensor, cfg: cfg.clone() };
    GpuModel::build(ctx.clone(), cfg, &mut source, context_size)
}

/// Uploads each tensor from its GGUF bytes when asked (the native loader: memory-mapped files),
/// each in buffers of its own: no joints, so tests compare them with the streamed joints.
struct SliceSource<'c, F> {
    ctx: &'c GpuContext,
    tensor: F,
    /// Says which matrices are rows of a fused one (Phi-3).
    cfg: ModelConfig,
}

impl<'a, F: Fn(&str) -> Option<(&'a TensorInfo, &'a [u8])>> TensorSource for SliceSource<'_, F> {
    fn weight(&mut self, name: &str) -> Result<GpuWeight, GpuModelError> {
        if let Some((fused, row, rows)) = self.cfg.fused_source(name) {
            let (i, data) = (self.tensor)(&fused).ok_or_else(|| ModelError::MissingTensor(fused.clone()))?;
            let cols = i.dims[0] as usize;
            let row_bytes = i.ggml_type.bytes_for(cols as u64).unwrap_or(0) as usize;
            let bytes = data.get(row * row_bytes..(row + rows) * row_bytes).ok_or_else(|| ModelError::MissingTensor(fused.clone()))?;
            return Ok(GpuWeight::upload(self.ctx, name, i.ggml_type, cols, rows, bytes)?);
        }
        let (i, data) = (self.tensor)(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        Ok(GpuWeight::upload(
            self.ctx,
            name,
            i.ggml_type,
            i.dims[0] as usize,
            i.dims.get(1).copied().unwrap_or(1) as usize,
            data,
        )?)
    }
    fn vector_opt(&mut self, name: &str) -> Result<Option<wgpu::Buffer>, GpuModelError> {
        let Some((i, data)) = (self.tensor)(name) else {
            return Ok(None);
        };
        Ok(Some(upload_vector(self.ctx, name, i, data)?))
    }
}

/// Uploads a 1-D tensor of any type as f32.
pub fn upload_vector(
    ctx: &GpuContext,
    name: &str,
    info: &TensorInfo,
    data: &[u8],
) -> Result<wgpu::Buffer, GpuModelError> {
    let v = quant::dequantize(name, info.ggml_type, data, info.n_elements() as usize).map_err(ModelError::from)?;
    Ok(ctx.upload(name, bytemuck::cast_slice(&v))?)
}
