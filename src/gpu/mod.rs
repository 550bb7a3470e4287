//! The GPU context: adapter and device setup with feature detection (`shader-f16`, subgroups,
//! binding limits), a pipeline cache keyed by kernel variant, the WGSL variant preprocessor, and
//! buffer helpers. Kernels live in `shaders/*.wgsl`, one family per file.

pub mod loader;
pub mod model;
pub mod ops;
mod preprocess;
pub mod weights;
pub use preprocess::{preprocess, ShaderDefs};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// GPU failures, with enough detail to act on.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU adapter available: {0}")]
    NoAdapter(String),
    #[error("could not create the GPU device: {0}")]
    RequestDevice(String),
    /// A buffer could not be created: the device refused it, or it is over one of the device's
    /// size limits (so it could never be created here). The report says what the model needs.
    #[error("{0}")]
    OutOfMemory(Box<MemoryReport>),
    #[error("GPU validation error in {what}: {message}")]
    Validation { what: String, message: String },
    #[error("shader '{kernel}' failed to compile: {message}")]
    Shader { kernel: String, message: String },
    #[error("reading back a GPU buffer failed: {0}")]
    Readback(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("the GPU ran out of memory: {0}")]
    DeviceOutOfMemory(String),
    #[error("tensor '{tensor}' has type {ty}, which the GPU kernels do not support (supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)")]
    UnsupportedType {
        tensor: String,
        ty: crate::quant::GgmlType,
    },
}

/// The figures of an out-of-memory error: the allocation that failed, what the whole model
/// needs, and what the device is known to give (its limits, and what it had allocated for the
/// model before refusing: at least that much memory is available).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    /// The buffer that could not be created.
    pub what: String,
    /// Its size in bytes.
    pub request_bytes: u64,
    /// The device limit the buffer is over (`maxBufferSize` or `maxStorageBufferBindingSize`),
    /// or `None` when the device refused an allocation within its limits.
    pub over_limit: Option<&'static str>,
    /// The device's or browser's own message, when it refused.
    pub device_message: Option<String>,
    /// Bytes of this model's buffers created before the failure.
    pub allocated_bytes: u64,
    /// What the model needs in all (weights + KV cache + activations), when known.
    pub needed_bytes: Option<u64>,
    /// Whether `needed_bytes` counts only the shards whose headers were read (a split model
    /// that failed before its last header): the real need is larger.
    pub needed_is_lower_bound: bool,
    pub weights_bytes: Option<u64>,
    pub kv_cache_bytes: Option<u64>,
    pub activations_bytes: Option<u64>,
    /// The context size the KV cache was sized for.
    pub context_size: Option<u64>,
    /// The largest context whose KV cache layers fit the device's buffer limits.
    pub max_context_size: Option<u64>,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
}

/// Bytes as `1.23 GiB`, `45.6 MiB`, `789 KiB` or `12 B`.
pub fn format_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f >= K * K * K {
        format!("{:.2} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.0} KiB", f / K)
    } else {
        format!("{b} B")
    }
}

impl std::fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = format_bytes;
        match (self.over_limit, &self.device_message) {
            (Some(limit), _) => {
                let max = if limit == "maxBufferSize" { self.max_buffer_size } else { self.max_storage_buffer_binding_size };
                write!(f, "out of GPU memory: {} needs {}, more than this device's {limit} of {} (no buffer that large can be created here)", self.what, b(self.request_bytes), b(max))?;
            }
            (None, Some(m)) => {
                let m = m.lines().next().unwrap_or("").trim();
                write!(f, "out of GPU memory: the device refused to allocate {} ({})", self.what, b(self.request_bytes))?;
                if !m.is_empty() {
                    write!(f, ": {m}")?;
                }
            }
            (None, None) => write!(f, "out of GPU memory allocating {} ({})", self.what, b(self.request_bytes))?,
        }
        write!(f, ". ")?;
        if let Some(n) = self.needed_bytes {
            write!(f, "The model needs {}{}", if self.needed_is_lower_bound { "at least " } else { "" }, b(n))?;
            if let Some(c) = self.context_size {
                write!(f, " at a context of {c} tokens")?;
            }
            if let (Some(w), Some(k), Some(a)) = (self.weights_bytes, self.kv_cache_bytes, self.activations_bytes) {
                write!(f, " (weights {} + KV cache {} + activations {})", b(w), b(k), b(a))?;
            }
            write!(f, "; ")?;
        }
        if self.over_limit.is_none() {
            write!(f, "{} had been allocated before the device refused, so at least that much is available; ", b(self.allocated_bytes))?;
        } else {
            write!(f, "{} had been allocated before; ", b(self.allocated_bytes))?;
        }
        write!(
            f,
            "device limits: maxBufferSize {}, maxStorageBufferBindingSize {}. Try a smaller contextSize",
            b(self.max_buffer_size),
            b(self.max_storage_buffer_binding_size)
        )?;
        if let Some(m) = self.max_context_size {
            write!(f, " (at most {m} for this device's buffer limits)")?;
        }
        write!(f, " or a smaller quantization of the model")
    }
}

/// What the caller allows the context to use (forcing a feature off exercises the fallbacks).
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Use `shader-f16` when the adapter has it.
    pub allow_f16: bool,
    /// Use subgroup operations when the adapter has them.
    pub allow_subgroups: bool,
    /// Pretend the storage-binding limit is at most this (tests use 128 MiB, WebGPU's default).
    pub max_storage_binding: Option<u64>,
    /// Overrides of the kernels' per-device choices, for tuning on new hardware.
    pub tuning: KernelTuning,
}

/// Overrides of choices the kernels otherwise make from the adapter (`bench --matvec-threads
/// --matvec-rows`), so that a new GPU can be measured under each without a rebuild. `None`
/// keeps the device's choice; every value computes the same products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelTuning {
    /// [`ops::MatmulConfig::threads_per_row`].
    pub matvec_threads_per_row: Option<u32>,
    /// [`ops::MatmulConfig::rows_per_invocation`].
    pub matvec_rows_per_invocation: Option<u32>,
    /// Let naga guard every shader loop with a 64-bit iteration counter (natively; browsers
    /// compile WGSL themselves). Off by default: the guard exists for untrusted shaders that may
    /// never end, ours all run counted loops, and an extra exit the compiler cannot reason
    /// about can keep a driver from unrolling the small fixed loops over register arrays that
    /// the kernels are made of (see gfx-rs/wgpu#6521 on naga's loops and unrolling).
    pub naga_loop_bounding: bool,
    /// [`ops::MatmulConfig::matvec_prefill`]: `Some(true)` runs all prefill through the
    /// matrix-vector kernel, `Some(false)` through the tiled kernel past small batches.
    pub matvec_prefill: Option<bool>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            allow_f16: true,
            allow_subgroups: true,
            max_storage_binding: None,
            tuning: KernelTuning::default(),
        }
    }
}

/// Features the kernels may use on this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GpuFeatures {
    pub f16: bool,
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// Timestamp queries at compute-pass boundaries (for `bench --profile`).
    pub timestamps: bool,
}

/// One WGSL kernel family: a name and its source.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub source: &'static str,
}

/// WGSL files that other kernels `#include`.
pub(crate) const INCLUDES: &[(&str, &str)] =
    &[("quant.wgsl", include_str!("../../shaders/quant.wgsl")), ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl"))];

/// An adapter, device and queue, plus the pipelines compiled for them.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub features: GpuFeatures,
    /// The device's limits, with `max_storage_buffer_binding_size` lowered to any forced value.
    pub limits: wgpu::Limits,
    pub tuning: KernelTuning,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    /// Idle readback buffers by size, reused so a decode step allocates nothing.
    staging_pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    staging_created: std::sync::atomic::AtomicUsize,
    unsubmitted_write_bytes: std::sync::atomic::AtomicU64,
    /// The first error the device reported outside an error scope (the browser reports GPU
    /// errors asynchronously), and whether the device was lost; see [`GpuContext::check`].
    fault: Arc<Mutex<Option<(bool, String)>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// Bytes of storage buffers created so far (never decreases; a loader takes differences).
    allocated: std::sync::atomic::AtomicU64,
    /// The web's out-of-memory scopes around buffer creations, popped at once and awaited by
    /// [`GpuContext::check_allocations`].
    #[cfg(target_arch = "wasm32")]
    pending_allocs: Mutex<Vec<PendingAlloc>>,
}

/// A buffer creation whose out-of-memory scope has not been awaited yet (web only).
#[cfg(target_arch = "wasm32")]
struct PendingAlloc {
    what: String,
    size: u64,
    allocated_before: u64,
    scope: std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>,
}

#[cfg(target_arch = "wasm32")]
impl Drop for GpuContext {
    /// Dropping a device on the web frees nothing until garbage collection: destroy it, so a
    /// failed or unloaded model's buffers are released at once.
    fn drop(&mut self) {
        self.device.destroy();
    }
}

impl GpuContext {
    /// Finds an adapter and creates a device with every feature and limit the kernels can use.
    pub async fn new(opts: GpuOptions) -> Result<Self, GpuError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let available = adapter.features();
        let mut required = wgpu::Features::empty();
        let f16 = opts.allow_f16 && available.contains(wgpu::Features::SHADER_F16);
        if f16 {
            required |= wgpu::Features::SHADER_F16;
        }
        let subgroups = opts.allow_subgroups && available.contains(wgpu::Features::SUBGROUP);
        if subgroups {
            required |= wgpu::Features::SUBGROUP;
        }
        let timestamps = available.contains(wgpu::Features::TIMESTAMP_QUERY);
        if timestamps {
            required |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let adapter_limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("llama-webgpu"),
                required_features: required,
                required_limits: adapter_limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        let mut limits = device.limits();
        if let Some(m) = opts.max_storage_binding {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(m);
        }
        let info = adapter.get_info();
        let features = GpuFeatures {
            f16,
            subgroups,
            subgroup_min_size: if subgroups { info.subgroup_min_size } else { 0 },
            subgroup_max_size: if subgroups { info.subgroup_max_size } else { 0 },
            timestamps,
        };
        let fault: Arc<Mutex<Option<(bool, String)>>> = Default::default();
        let lost: Arc<Mutex<Option<String>>> = Default::default();
        {
            let fault = fault.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let oom = matches!(e, wgpu::Error::OutOfMemory { .. });
                let mut f = fault.lock().expect("fault slot poisoned");
                f.get_or_insert((oom, e.to_string()));
            }));
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                let mut l = lost.lock().expect("lost slot poisoned");
                l.get_or_insert(format!("{reason:?}: {message}"));
            });
        }
        Ok(GpuContext {
            device,
            queue,
            fault,
            lost,
            adapter_info: info,
            features,
            limits,
            tuning: opts.tuning,
            pipelines: Mutex::new(HashMap::new()),
            staging_pool: Mutex::new(HashMap::new()),
            staging_created: Default::default(),
            unsubmitted_write_bytes: Default::default(),
            allocated: Default::default(),
            #[cfg(target_arch = "wasm32")]
            pending_allocs: Default::default(),
        })
    }

    /// An error scope where its result can be awaited in place (natively, where it resolves
    /// at once). On the web none is pushed: a scope's error would go only to its dropped
    /// promise, while without one it reaches the uncaptured-error handler and so
    /// [`check`](Self::check), which the loader awaits after allocating.
    fn error_scope(&self, filter: wgpu::ErrorFilter) -> Option<wgpu::ErrorScopeGuard> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            Some(self.device.push_error_scope(filter))
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = filter;
            None
        }
    }

    /// Errors the device reported asynchronously since the last check (out-of-memory,
    /// validation), or that it was lost. Once lost, every check fails.
    pub fn check(&self) -> Result<(), GpuError> {
        if let Some(m) = self.lost.lock().expect("lost slot poisoned").clone() {
            return Err(GpuError::DeviceLost(m));
        }
        match self.fault.lock().expect("fault slot poisoned").take() {
            Some((true, m)) => Err(GpuError::DeviceOutOfMemory(m)),
            Some((false, m)) => Err(GpuError::Validation {
                what: "the device".into(),
                message: m,
            }),
            None => Ok(()),
        }
    }

    /// Waits until the GPU has finished all submitted work (and the browser has delivered any
    /// errors it caused), then [`check`](Self::check)s.
    pub async fn sync(&self) -> Result<(), GpuError> {
        self.check_allocations().await?;
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let _ = rx.await;
        self.check()
    }

    /// Bytes of storage buffers created on this context so far (freed ones included).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Awaits the out-of-memory scopes of the buffers created since the last call (on the web,
    /// where they resolve asynchronously; natively each creation was checked in place) and
    /// fails with the first buffer the device refused.
    pub async fn check_allocations(&self) -> Result<(), GpuError> {
        #[cfg(target_arch = "wasm32")]
        {
            let pending = std::mem::take(&mut *self.pending_allocs.lock().expect("pending allocations poisoned"));
            let mut first = None;
            for p in pending {
                if let Some(e) = p.scope.await {
                    first.get_or_insert_with(|| self.oom_report(&format!("buffer '{}'", p.what), p.size, None, Some(e.to_string()), p.allocated_before));
                }
            }
            if let Some(r) = first {
                return Err(GpuError::OutOfMemory(Box::new(r)));
            }
        }
        Ok(())
    }

    /// The report for a failed allocation, with the device's limits (the model's figures are
    /// added by the loader).
    fn oom_report(
        &self,
        what: &str,
        size: u64,
        over_limit: Option<&'static str>,
        device_message: Option<String>,
        allocated: u64,
    ) -> MemoryReport {
        MemoryReport {
            what: what.to_string(),
            request_bytes: size,
            over_limit,
            device_message,
            allocated_bytes: allocated,
            max_buffer_size: self.limits.max_buffer_size,
            max_storage_buffer_binding_size: self.limits.max_storage_buffer_binding_size,
            ..Default::default()
        }
    }

    /// Takes back from the allocation counter the buffers a caller has dropped (the loader's
    /// reservations), so out-of-memory reports count what is really held.
    pub fn note_freed(&self, size: u64) {
        let _ = self.allocated.fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |a| Some(a.saturating_sub(size)));
    }

    /// An out-of-memory error for a buffer over one of the device's limits.
    pub fn over_limit(&self, what: &str, size: u64, limit: &'static str) -> GpuError {
        GpuError::OutOfMemory(Box::new(self.oom_report(what, size, Some(limit), None, self.allocated_bytes())))
    }

    /// Native convenience: [`GpuContext::new`] run to completion.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: GpuOptions) -> Result<Self, GpuError> {
        pollster::block_on(Self::new(opts))
    }

    /// Defines every kernel sees: `F16` and `SUBGROUPS` when in use.
    pub fn base_defs(&self) -> ShaderDefs {
        let mut d = ShaderDefs::default();
        if self.features.f16 {
            d.set("F16", "1");
        }
        if self.features.subgroups {
            d.set("SUBGROUPS", "1");
        }
        d
    }

    /// The compute pipeline for `kernel`'s `entry` with `defs`, compiled once and cached.
    pub fn pipeline(
        &self,
        kernel: Kernel,
        entry: &str,
        defs: &ShaderDefs,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let key = format!("{}:{entry}:{}", kernel.name, defs.key());
        if let Some(p) = self
            .pipelines
            .lock()
            .expect("pipeline cache poisoned")
            .get(&key)
        {
            return Ok(p.clone());
        }
        let source = preprocess(kernel.source, defs, INCLUDES).map_err(|m| GpuError::Shader {
            kernel: kernel.name.into(),
            message: m,
        })?;
        let scope = self.error_scope(wgpu::ErrorFilter::Validation);
        let mut checks = wgpu::ShaderRuntimeChecks::checked();
        checks.force_loop_bounding = self.tuning.naga_loop_bounding;
        // SAFETY: the kernels are this crate's own WGSL, not user input: every loop is counted
        // (by a constant or a uniform), and out-of-bounds accesses stay checked.
        let module = unsafe {
            self.device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.name),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                },
                checks,
            )
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&key),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = scope.and_then(|s| block_on_scope(s.pop())) {
            return Err(GpuError::Shader {
                kernel: format!("{}::{entry} [{}]", kernel.name, defs.key()),
                message: e.to_string(),
            });
        }
        let p = Arc::new(pipeline);
        self.pipelines
            .lock()
            .expect("pipeline cache poisoned")
            .insert(key, p.clone());
        Ok(p)
    }

    /// Pipelines compiled so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines
            .lock()
            .expect("pipeline cache poisoned")
            .len()
    }

    /// A storage buffer; out-of-memory and over-limit sizes become [`GpuError::OutOfMemory`].
    /// Natively the device's answer is checked in place; on the web it arrives later, so the
    /// buffer's out-of-memory scope is kept for [`GpuContext::check_allocations`].
    pub fn storage(
        &self,
        what: &str,
        size: u64,
        extra: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, GpuError> {
        let size = size.max(4).next_multiple_of(4);
        if size > self.limits.max_buffer_size {
            return Err(self.over_limit(&format!("buffer '{what}'"), size, "maxBufferSize"));
        }
        let allocated_before = self.allocated_bytes();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC
                | extra,
            mapped_at_creation: false,
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::OutOfMemory(Box::new(self.oom_report(
                &format!("buffer '{what}'"),
                size,
                None,
                Some(e.to_string()),
                allocated_before,
            ))));
        }
        #[cfg(target_arch = "wasm32")]
        self.pending_allocs.lock().expect("pending allocations poisoned").push(PendingAlloc {
            what: what.to_string(),
            size,
            allocated_before,
            scope: Box::pin(scope.pop()),
        });
        self.allocated.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        Ok(buf)
    }

    /// A storage buffer holding `bytes` (padded to 4 bytes).
    pub fn upload(&self, what: &str, bytes: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        let buf = self.storage(what, bytes.len() as u64, wgpu::BufferUsages::empty())?;
        self.write(&buf, 0, bytes);
        Ok(buf)
    }

    /// Writes bytes into a buffer at `offset`, padding the tail to 4 bytes as WebGPU requires.
    pub fn write(&self, buf: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(buf, offset, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            self.queue.write_buffer(buf, offset, &padded);
        }
        // wgpu keeps each write's staging copy until the next submission completes: without
        // this, loading a model would hold a second copy of all its weights.
        let pending = self
            .unsubmitted_write_bytes
            .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if pending + bytes.len() as u64 >= WRITE_FLUSH_BYTES {
            self.unsubmitted_write_bytes.store(0, std::sync::atomic::Ordering::Relaxed);
            self.queue.submit([]);
            #[cfg(not(target_arch = "wasm32"))]
            let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        }
    }

    /// A bind group for `pipeline`'s group 0 with `buffers` at bindings 0, 1, 2, ...
    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[wgpu::BindingResource<'_>],
    ) -> wgpu::BindGroup {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        })
    }

    /// A bind group for `pipeline`'s group 0 with each buffer at the binding number given, for
    /// entry points of one module that use different subsets of its bindings.
    pub fn bind_numbered(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .map(|&(binding, b)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// A mappable buffer of at least `size` bytes for reading results back, from a pool:
    /// record a copy into it in the same command buffer as the work, then [`GpuContext::map_read`].
    pub fn staging(&self, size: u64) -> wgpu::Buffer {
        let size = size.next_multiple_of(256).max(256);
        if let Some(b) = self.staging_pool.lock().expect("staging pool poisoned").get_mut(&size).and_then(Vec::pop) {
            return b;
        }
        self.staging_created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Readback buffers created so far (the pool keeps this flat during decoding).
    pub fn staging_buffers_created(&self) -> usize {
        self.staging_created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for the submitted work that fills `staging`, returns its first `size` bytes, and
    /// puts the buffer back in the pool.
    pub async fn map_read(&self, staging: wgpu::Buffer, size: u64) -> Result<Vec<u8>, GpuError> {
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Readback(e.to_string()))?;
        rx.await
            .map_err(|_| GpuError::Readback("map callback dropped".into()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let data = staging
            .slice(..size)
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .to_vec();
        staging.unmap();
        self.staging_pool.lock().expect("staging pool poisoned").entry(staging.size()).or_default().push(staging);
        Ok(data)
    }

    /// Copies `size` bytes at `offset` of `buf` back to the CPU, in a submission of its own
    /// (for tests and tools; the model graph copies inside its step's submission instead).
    pub async fn read(&self, buf: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>, GpuError> {
        let size = size.next_multiple_of(4);
        let staging = self.staging(size);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, offset, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.map_read(staging, size).await
    }

    /// Native convenience: read back f32 values.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(
        &self,
        buf: &wgpu::Buffer,
        offset: u64,
        count: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let bytes = pollster::block_on(self.read(buf, offset, count as u64 * 4))?;
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..count * 4]))
    }

    /// Native convenience: read back u32 values.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(
        &self,
        buf: &wgpu::Buffer,
        offset: u64,
        count: usize,
    ) -> Result<Vec<u32>, GpuError> {
        let bytes = pollster::block_on(self.read(buf, offset, count as u64 * 4))?;
        Ok(bytemuck::pod_collect_to_vec::<u8, u32>(&bytes[..count * 4]))
    }
}

/// Error scopes resolve immediately natively; on the web they are awaited by async callers,
/// so here they are only checked where blocking is possible.
fn block_on_scope<F: std::future::Future<Output = Option<wgpu::Error>>>(
    f: F,
) -> Option<wgpu::Error> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        // The browser reports these asynchronously through the device's uncaptured-error
        // handler; the web loader checks scopes with awaits of its own.
        drop(f);
        None
    }
}

/// Buffer writes between forced submissions (see [`GpuContext::write`]).
const WRITE_FLUSH_BYTES: u64 = 64 << 20;

/// The kernel families, one file each.
pub mod kernels {
    use super::Kernel;

    macro_rules! kernel {
        ($konst:ident, $name:literal) => {
            pub const $konst: Kernel = Kernel { name: $name, source: include_str!(concat!("../../shaders/", $name, ".wgsl")) };
        };
    }

    kernel!(ELEMENTWISE, "elementwise");
    kernel!(MATVEC, "matvec");
    kernel!(MATMUL, "matmul");
    kernel!(EMBEDDING, "embedding");
    kernel!(NORM, "norm");
    kernel!(ROPE, "rope");
    kernel!(ATTENTION, "attention");
    kernel!(SAMPLE, "sample");
}

/// Workgroup counts for `n` invocations of `wg_size`, spilling into y past the 65535 limit.
pub fn dispatch_1d(n: u32, wg_size: u32) -> (u32, u32, u32) {
    let groups = n.div_ceil(wg_size).max(1);
    if groups <= 65535 {
        (groups, 1, 1)
    } else {
        (65535, groups.div_ceil(65535), 1)
    }
}
