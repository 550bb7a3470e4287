//! Kernels and their pipelines: the WGSL families (one file each in `shaders/`), compiled per
//! variant (f16, subgroups, sizes) once and cached, and the bind-group helpers the ops use.

use super::device::block_on_scope;
use super::{preprocess, GpuContext, GpuError, ShaderDefs};
use std::sync::Arc;

/// One WGSL kernel family: a name and its source.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub source: &'static str,
}

/// WGSL files that other kernels `#include`.
pub(crate) const INCLUDES: &[(&str, &str)] = &[
    ("quant.wgsl", include_str!("../../shaders/quant.wgsl")),
    ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
    ("matmul_io.wgsl", include_str!("../../shaders/matmul_io.wgsl")),
    ("gate.wgsl", include_str!("../../shaders/gate.wgsl")),
];

impl GpuContext {
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
            .0
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
            .0
            .lock()
            .expect("pipeline cache poisoned")
            .insert(key, p.clone());
        Ok(p)
    }

    /// Pipelines compiled so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines
            .0
            .lock()
            .expect("pipeline cache poisoned")
            .len()
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
        let entries: Vec<(u32, wgpu::BindingResource)> = buffers.iter().map(|&(i, b)| (i, b.as_entire_binding())).collect();
        self.bind_resources(pipeline, &entries)
    }

    /// [`bind_numbered`](Self::bind_numbered) with any resources (such as a range of a buffer).
    pub fn bind_resources(
        &self,
        pipeline: &wgpu::ComputePipeline,
        resources: &[(u32, wgpu::BindingResource<'_>)],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .map(|(binding, r)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: r.clone(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

}

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
    kernel!(QUANTIZE, "quantize");
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
