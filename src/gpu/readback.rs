//! Reading results back: a pool of mappable staging buffers, so that a decode step allocates
//! nothing, and the map-and-copy that waits for the GPU.

use super::{GpuContext, GpuError};
use std::sync::atomic::Ordering;

impl GpuContext {
    /// A mappable buffer of at least `size` bytes for reading results back, from a pool:
    /// record a copy into it in the same command buffer as the work, then [`GpuContext::map_read`].
    pub fn staging(&self, size: u64) -> wgpu::Buffer {
        let size = size.next_multiple_of(256).max(256);
        if let Some(b) = self.staging.idle.lock().expect("staging pool poisoned").get_mut(&size).and_then(Vec::pop) {
            return b;
        }
        self.staging.created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Readback buffers created so far (the pool keeps this flat during decoding).
    pub fn staging_buffers_created(&self) -> usize {
        self.staging.created.load(Ordering::Relaxed)
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
        self.recycle_staging(staging);
        Ok(data)
    }

    /// Puts an unmapped staging buffer back in the pool, read or not. Work still queued that
    /// copies into it stays ordered before any later use.
    pub fn recycle_staging(&self, staging: wgpu::Buffer) {
        self.staging.idle.lock().expect("staging pool poisoned").entry(staging.size()).or_default().push(staging);
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
