//! Bring-up: the adapter and device with every feature and limit the kernels can use (and the
//! caller allows), and the device's asynchronous errors and loss, checked at safe points.
//!
//! [`GpuContext`] is the one handle the ops use. Its other methods live with what they do:
//! buffers and out-of-memory accounting in `memory.rs`, pipelines and bind groups in
//! `pipelines.rs`, reading results back in `readback.rs`. Those files build on this one; the
//! state they keep is declared here, with the context that owns it.

use super::GpuError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

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
    /// Whether a decode step forms SwiGLU in the down projection's activation loads
    /// ([`ops::MatmulOp::with_glu_input`]) rather than in a dispatch of its own. `None`: on a
    /// GPU, yes (one dispatch and one write and read of the gate activations fewer per layer
    /// for a few recomputed exponentials, which its special-function units take in stride);
    /// on a CPU device, no: there every group of rows recomputes the exponentials in software
    /// (lavapipe, SmolLM2 decode: 7.2–7.8 tok/s fused against 7.9–10.1 separate, 2026-12-06).
    pub fuse_swiglu: Option<bool>,
    /// Whether a decode step's products do the RMSNorm before each block and the residual add
    /// after it ([`ops::MatmulOp::for_decode`]): Q, K, V, gate, up and the output normalize
    /// the residual stream as they load it, O and down add into it, and the norm dispatches
    /// disappear with the residual adds they did (two per layer, and the last block's add and
    /// the output norm). `None`: on a GPU, yes (each dispatch costs a
    /// browser a validation and a barrier; the sum of squares comes with loads the products
    /// make anyway); on a CPU device, no: the products there broadcast their activations across
    /// subgroups, a variant that cannot fold the norm in.
    pub fuse_norm: Option<bool>,
    /// Whether a decode step with the norms folded in ([`KernelTuning::fuse_norm`]) multiplies
    /// a layer's Q, K and V in one product, and its gate and up in one, where the loader put
    /// each set in one buffer ([`super::weights::WeightWriter::joint`]): 9 dispatches per layer
    /// become 6 (7 where V has another type, as in Q4_K_M files). `None`: yes. Each member's
    /// rows are computed as its own product computes them; a GPU gains one dispatch's fixed
    /// cost (a validation and a barrier in a browser) per product saved, and K and V, with an
    /// eighth of Q's rows in 8B models (grouped-query attention), no longer run as dispatches
    /// too small to fill it.
    pub join_products: Option<bool>,
    /// Whether decode steps and small batches multiply with packed-integer dot products on
    /// 8-bit activations ([`ops::MatmulOp::with_int_dot`]) where the device's WGSL has them
    /// ([`GpuFeatures::int_dot`]). `None`: see [`KernelTuning::int_dot_for`].
    pub int_dot: Option<bool>,
    /// Whether greedy decoding queues each step on the GPU before the last step's token is read
    /// back ([`super::GpuModel::greedy_step`]: the step's embedding takes that token
    /// from the last step's argmax by a GPU copy). `None`: on a GPU, yes: it would otherwise
    /// idle through every token's readback round trip and the next step's recording (hundreds of
    /// dispatches through the browser's API), which on small models is a large share of a step.
    /// On a CPU device, no: there the "GPU" is the driver's threads on the same cores that
    /// record the next step, and recording beside them slows their every barrier (Dawn for
    /// Node on lavapipe, SmolLM2: 13.9 tok/s chained against 16.8 one step at a time, 2026-12-07;
    /// with lavapipe on one thread, leaving a core free, chained won, 11.1 against 10.7).
    pub chain_steps: Option<bool>,
}

impl KernelTuning {
    /// Whether the integer products run on a device with `features`: only where forced on, for
    /// now. They should win on GPUs with a packed dot instruction (one `dot4I8Packed` for four
    /// conversions and four multiply-adds per weight quad; Apple GPUs have none, and their
    /// browsers emulate it), but no GPU has measured them yet (scripts/gpu-bench runs both),
    /// and their agreement with llama.cpp on SmolLM2 Q4_K_M is 96.7–96.9% against the f32
    /// path's 97.1%: llama.cpp's own floor for 8-bit activations, which its two CPU builds
    /// differ by (tests/gpu_agreement.rs, INT_DOT_BAR). CPU devices keep their broadcasting f32 kernel,
    /// which has no integer counterpart. Never where the device lacks them.
    pub fn int_dot_for(&self, features: &GpuFeatures) -> bool {
        features.int_dot && self.int_dot.unwrap_or(false)
    }
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
    /// WGSL's packed-integer dot products (`dot4I8Packed`, the `packed_4x8_integer_dot_product`
    /// language feature): whether the kernels can multiply 8-bit activations with them
    /// ([`KernelTuning::int_dot`] decides whether they do).
    pub int_dot: bool,
}

/// What `memory.rs` counts of the context's allocations.
#[derive(Default)]
pub(super) struct Allocations {
    /// Bytes of storage buffers created so far (never decreases; a loader takes differences).
    pub(super) allocated: AtomicU64,
    pub(super) unsubmitted_write_bytes: AtomicU64,
    /// The web's out-of-memory scopes around buffer creations, popped at once and awaited by
    /// [`GpuContext::check_allocations`].
    #[cfg(target_arch = "wasm32")]
    pub(super) pending: Mutex<Vec<PendingAlloc>>,
}
/// A buffer creation whose out-of-memory scope has not been awaited yet (web only).
#[cfg(target_arch = "wasm32")]
pub(super) struct PendingAlloc {
    pub(super) what: String,
    pub(super) size: u64,
    pub(super) allocated_before: u64,
    pub(super) scope: std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>,
}
/// Compiled pipelines by kernel, entry point and defines.
#[derive(Default)]
pub(super) struct PipelineCache(pub(super) Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>);
/// Idle readback buffers by size, reused so a decode step allocates nothing.
#[derive(Default)]
pub(super) struct StagingPool {
    pub(super) idle: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    pub(super) created: AtomicUsize,
}

/// An adapter, device and queue, plus the pipelines compiled for them.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub features: GpuFeatures,
    /// The device's limits, with `max_storage_buffer_binding_size` lowered to any forced value.
    pub limits: wgpu::Limits,
    pub tuning: KernelTuning,
    pub(super) pipelines: PipelineCache,
    pub(super) staging: StagingPool,
    pub(super) memory: Allocations,
    /// The first error the device reported outside an error scope (the browser reports GPU
    /// errors asynchronously), and whether the device was lost; see [`GpuContext::check`].
    fault: Arc<Mutex<Option<(bool, String)>>>,
    lost: Arc<Mutex<Option<String>>>,
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
    /// [`KernelTuning::fuse_swiglu`] as chosen for this device.
    pub fn fuse_swiglu(&self) -> bool {
        self.tuning.fuse_swiglu.unwrap_or(self.adapter_info.device_type != wgpu::DeviceType::Cpu)
    }

    /// [`KernelTuning::fuse_norm`] as chosen for this device (the graph also needs rows of a
    /// multiple of 32 values).
    pub fn fuse_norm(&self) -> bool {
        self.tuning.fuse_norm.unwrap_or(self.adapter_info.device_type != wgpu::DeviceType::Cpu)
    }

    /// [`KernelTuning::chain_steps`] as chosen for this device.
    pub fn chain_steps(&self) -> bool {
        self.tuning.chain_steps.unwrap_or(self.adapter_info.device_type != wgpu::DeviceType::Cpu)
    }

    /// [`KernelTuning::join_products`] as chosen for this device: only with the norms folded in.
    pub fn join_products(&self) -> bool {
        self.fuse_norm() && self.tuning.join_products.unwrap_or(true)
    }

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
        // wgpu's web backend cannot ask for subgroups yet; see web_subgroups.rs.
        #[cfg(target_arch = "wasm32")]
        let subgroup_request = opts
            .allow_subgroups
            .then(super::web_subgroups::SubgroupRequest::install);
        let request = adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("llama-webgpu"),
            required_features: required,
            required_limits: adapter_limits.clone(),
            ..Default::default()
        });
        #[cfg(target_arch = "wasm32")]
        drop(subgroup_request);
        let (device, queue) = request
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        #[cfg(target_arch = "wasm32")]
        let subgroups =
            opts.allow_subgroups && super::web_subgroups::device_has(&device, "subgroups");
        let mut limits = device.limits();
        if let Some(m) = opts.max_storage_binding {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(m);
        }
        let info = adapter.get_info();
        // A device whose subgroups are narrower than the kernels assume runs the fallbacks.
        let sizes = subgroups
            .then(|| subgroup_sizes(info.subgroup_min_size, info.subgroup_max_size))
            .flatten();
        let subgroups = sizes.is_some();
        let (subgroup_min_size, subgroup_max_size) = sizes.unwrap_or((0, 0));
        let features = GpuFeatures {
            f16,
            subgroups,
            subgroup_min_size,
            subgroup_max_size,
            timestamps,
            // A language feature of the WGSL compiler (naga natively, the browser's on the web),
            // not a device feature: nothing to request.
            int_dot: instance
                .wgsl_language_features()
                .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct),
        };
        if opts.tuning.int_dot == Some(true) && !features.int_dot {
            return Err(GpuError::FeatureUnavailable(
                "packed-integer dot products (WGSL's packed_4x8_integer_dot_product)".into(),
            ));
        }
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
            pipelines: Default::default(),
            staging: Default::default(),
            memory: Default::default(),
        })
    }

    /// An error scope where its result can be awaited in place (natively, where it resolves
    /// at once). On the web none is pushed: a scope's error would go only to its dropped
    /// promise, while without one it reaches the uncaptured-error handler and so
    /// [`check`](Self::check), which the loader awaits after allocating.
    pub(super) fn error_scope(&self, filter: wgpu::ErrorFilter) -> Option<wgpu::ErrorScopeGuard> {
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

    /// Native convenience: [`GpuContext::new`] run to completion.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: GpuOptions) -> Result<Self, GpuError> {
        pollster::block_on(Self::new(opts))
    }
}

/// Error scopes resolve immediately natively; on the web they are awaited by async callers,
/// so here they are only checked where blocking is possible.
pub(super) fn block_on_scope<F: std::future::Future<Output = Option<wgpu::Error>>>(
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

/// The subgroup size range the kernels plan with, from the adapter's report, or `None` where
/// the kernels cannot use them. The kernels need powers of two from 4 to 128, which WebGPU
/// guarantees; a browser that does not report its range (0: older ones lack `GPUAdapterInfo`'s
/// fields) gets that whole range, so the kernels assume no more than the guarantee. A native
/// device may report smaller subgroups (Vulkan allows 1): those run the fallbacks.
pub fn subgroup_sizes(min: u32, max: u32) -> Option<(u32, u32)> {
    let valid = |s: u32| s.is_power_of_two() && (4..=128).contains(&s);
    let min = match min {
        0 => 4,
        m if valid(m) => m,
        _ => return None,
    };
    let max = if valid(max) && max >= min { max } else { 128 };
    Some((min, max))
}

#[cfg(test)]
mod tests {
    use super::subgroup_sizes;

    #[test]
    fn subgroup_sizes_keep_to_what_the_kernels_support() {
        assert_eq!(subgroup_sizes(4, 4), Some((4, 4)));
        assert_eq!(subgroup_sizes(8, 32), Some((8, 32)));
        assert_eq!(subgroup_sizes(32, 64), Some((32, 64)));
        // Unreported (older browsers): WebGPU's guarantee.
        assert_eq!(subgroup_sizes(0, 0), Some((4, 128)));
        assert_eq!(subgroup_sizes(16, 0), Some((16, 128)));
        // Too narrow, or not a power of two: no subgroups.
        assert_eq!(subgroup_sizes(1, 64), None);
        assert_eq!(subgroup_sizes(2, 2), None);
        assert_eq!(subgroup_sizes(12, 12), None);
    }
}
