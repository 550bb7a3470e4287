//! GPU memory: storage buffers with out-of-memory accounting (every allocation is counted, and a
//! refused or over-limit one becomes a [`MemoryReport`] that says what the model needs), and the
//! uploads that fill them.

#[cfg(target_arch = "wasm32")]
use super::device::PendingAlloc;
use super::{GpuContext, GpuError};
use crate::model::memory::{DeviceLimits, MemoryPlan};
use std::sync::atomic::Ordering;

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

/// What a loader knows of the model for out-of-memory reports: its plan, as far as the headers
/// read so far tell, and the allocation count before it started.
#[derive(Clone, Copy, Debug)]
pub struct OomFigures {
    pub(super) allocated_base: u64,
    pub(super) plan: Option<MemoryPlan>,
    /// The plan counts only the shards whose headers were read.
    pub(super) partial: bool,
}

impl OomFigures {
    /// Adds the model's figures to an out-of-memory error (and turns the device's asynchronous
    /// out-of-memory report into one); other errors pass through.
    pub fn annotate(&self, ctx: &GpuContext, e: GpuError) -> GpuError {
        let mut r = match e {
            GpuError::OutOfMemory(r) => r,
            GpuError::DeviceOutOfMemory(m) => Box::new(MemoryReport {
                what: "a GPU buffer".into(),
                device_message: Some(m),
                allocated_bytes: ctx.allocated_bytes(),
                max_buffer_size: ctx.limits.max_buffer_size,
                max_storage_buffer_binding_size: ctx.limits.max_storage_buffer_binding_size,
                ..Default::default()
            }),
            e => return e,
        };
        r.allocated_bytes = r.allocated_bytes.saturating_sub(self.allocated_base);
        if let Some(p) = self.plan {
            r.needed_bytes = Some(p.total());
            r.needed_is_lower_bound = self.partial;
            r.weights_bytes = Some(p.weights);
            r.kv_cache_bytes = Some(p.kv_cache);
            r.activations_bytes = Some(p.activations);
            r.context_size = Some(p.context_size);
            r.max_context_size = Some(p.max_context_size);
        }
        GpuError::OutOfMemory(r)
    }
}

impl GpuContext {
    /// The limits the memory plan works within (see [`crate::model::memory`]).
    pub fn memory_limits(&self) -> DeviceLimits {
        DeviceLimits {
            kv_f16: self.features.f16,
            max_buffer_size: self.limits.max_buffer_size,
            max_storage_buffer_binding_size: self.limits.max_storage_buffer_binding_size,
        }
    }

    /// Bytes of storage buffers created on this context so far (freed ones included).
    pub fn allocated_bytes(&self) -> u64 {
        self.memory.allocated.load(Ordering::Relaxed)
    }

    /// Awaits the out-of-memory scopes of the buffers created since the last call (on the web,
    /// where they resolve asynchronously; natively each creation was checked in place) and
    /// fails with the first buffer the device refused.
    pub async fn check_allocations(&self) -> Result<(), GpuError> {
        #[cfg(target_arch = "wasm32")]
        {
            let pending = std::mem::take(&mut *self.memory.pending.lock().expect("pending allocations poisoned"));
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
        let _ = self.memory.allocated.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| Some(a.saturating_sub(size)));
    }

    /// An out-of-memory error for a buffer over one of the device's limits.
    pub fn over_limit(&self, what: &str, size: u64, limit: &'static str) -> GpuError {
        GpuError::OutOfMemory(Box::new(self.oom_report(what, size, Some(limit), None, self.allocated_bytes())))
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
        self.memory.pending.lock().expect("pending allocations poisoned").push(PendingAlloc {
            what: what.to_string(),
            size,
            allocated_before,
            scope: Box::pin(scope.pop()),
        });
        self.memory.allocated.fetch_add(size, Ordering::Relaxed);
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
            .memory
            .unsubmitted_write_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if pending + bytes.len() as u64 >= WRITE_FLUSH_BYTES {
            self.memory.unsubmitted_write_bytes.store(0, Ordering::Relaxed);
            self.queue.submit([]);
            #[cfg(not(target_arch = "wasm32"))]
            let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        }
    }
}

/// Buffer writes between forced submissions (see [`GpuContext::write`]).
const WRITE_FLUSH_BYTES: u64 = 64 << 20;
