//! Weight matrices on the GPU, in the layout the kernels of `shaders/quant.wgsl` read.
//!
//! A 2-D GGUF tensor of `rows` rows of `cols` elements (ggml `dims = [cols, rows]`) is uploaded as
//! one or more *parts*, each a whole number of rows and each no larger than the device's storage
//! binding limit, so the kernels dispatch once per part.
//!
//! GGUF blocks whose size is not a multiple of 4 bytes cannot be read with aligned u32 loads, so
//! the legacy formats are stored as separate segments — quants, then the Q5 high bits, then the
//! f16 scales — each 16-byte aligned, which also makes the quants vec4-aligned:
//!
//! | type | GPU segments (per block)                      | GGUF block       |
//! |------|-----------------------------------------------|------------------|
//! | Q4_0 | qs 16 B · d 2 B                               | d qs (18 B)      |
//! | Q4_1 | qs 16 B · d,m 4 B                             | d m qs (20 B)    |
//! | Q5_0 | qs 16 B · qh 4 B · d 2 B                      | d qh qs (22 B)   |
//! | Q5_1 | qs 16 B · qh 4 B · d,m 4 B                    | d m qh qs (24 B) |
//! | Q8_0 | qs 32 B · d 2 B                               | d qs (34 B)      |
//! | Q4_K | unchanged (144 B, 16-aligned)                 |                  |
//! | Q5_K | unchanged (176 B, 16-aligned)                 |                  |
//! | Q6_K | ql qh scales 208 B · d 2 B                    | … d (210 B)      |
//! | F32, F16 | rows zero-padded to a multiple of 32 elements |              |
//!
//! No bytes are added except segment and row padding, so a part takes the same memory as the
//! GGUF data (F32/F16 tensors with row lengths that are multiples of 32 — all model tensors —
//! are uploaded byte for byte).

use super::{GpuContext, GpuError};
use crate::quant::GgmlType;

/// Elements per unit: the granularity at which the kernels decode a row.
pub const UNIT: usize = 32;

/// How a type is laid out on the GPU.
enum Layout {
    /// Block formats: byte ranges of a GGUF block, each gathered into its own segment, in order.
    Blocks(&'static [(usize, usize)]),
    /// Unquantized: rows padded to whole units, `elem` bytes per element.
    Float { elem: usize },
}

fn layout(ty: GgmlType) -> Option<Layout> {
    use GgmlType::*;
    Some(match ty {
        F32 => Layout::Float { elem: 4 },
        F16 => Layout::Float { elem: 2 },
        Q4_0 => Layout::Blocks(&[(2, 18), (0, 2)]),
        Q4_1 => Layout::Blocks(&[(4, 20), (0, 4)]),
        Q5_0 => Layout::Blocks(&[(6, 22), (2, 6), (0, 2)]),
        Q5_1 => Layout::Blocks(&[(8, 24), (4, 8), (0, 4)]),
        Q8_0 => Layout::Blocks(&[(2, 34), (0, 2)]),
        Q4_K => Layout::Blocks(&[(0, 144)]),
        Q5_K => Layout::Blocks(&[(0, 176)]),
        Q6_K => Layout::Blocks(&[(0, 208), (208, 210)]),
        _ => return None,
    })
}

/// Whether the GPU kernels can use weights of type `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    layout(ty).is_some()
}

/// The define that selects `ty`'s decoder in `shaders/quant.wgsl`.
pub(crate) fn type_define(ty: GgmlType) -> &'static str {
    use GgmlType::*;
    match ty {
        F32 => "TYPE_F32",
        F16 => "TYPE_F16",
        Q4_0 => "TYPE_Q4_0",
        Q4_1 => "TYPE_Q4_1",
        Q5_0 => "TYPE_Q5_0",
        Q5_1 => "TYPE_Q5_1",
        Q8_0 => "TYPE_Q8_0",
        Q4_K => "TYPE_Q4_K",
        Q5_K => "TYPE_Q5_K",
        Q6_K => "TYPE_Q6_K",
        _ => unreachable!("checked at upload"),
    }
}

/// One buffer holding rows `row0 .. row0 + rows` of a weight.
pub struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
    /// u32-word offsets of the second and third segments (0 where absent).
    pub(crate) seg: [u32; 2],
}

/// A weight matrix uploaded for the GPU kernels.
pub struct GpuWeight {
    pub ty: GgmlType,
    /// Row length in elements (ggml `dims[0]`).
    pub cols: usize,
    pub rows: usize,
    parts: Vec<WeightPart>,
}

/// Uniform values for one part, mirroring `struct Params` in `shaders/quant.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PartParams {
    pub cols: u32,
    pub units: u32,
    pub rows: u32,
    pub row0: u32,
    pub out_stride: u32,
    pub seg1: u32,
    pub seg2: u32,
    pub last: u32,
}

impl GpuWeight {
    /// Uploads `data` (GGUF bytes of `rows` rows of `cols` elements of `ty`), repacking and
    /// splitting it as described in the module docs. `name` labels buffers and errors.
    pub fn upload(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        cols: usize,
        rows: usize,
        data: &[u8],
    ) -> Result<GpuWeight, GpuError> {
        let layout = layout(ty).ok_or_else(|| GpuError::UnsupportedType {
            tensor: name.to_string(),
            ty,
        })?;
        let invalid = |message: String| GpuError::Validation {
            what: format!("weight '{name}'"),
            message,
        };
        let (block, block_bytes) = ty.block_geometry();
        if cols == 0 || rows == 0 || !cols.is_multiple_of(block) {
            return Err(invalid(format!(
                "{rows} rows of {cols} elements are not whole {ty} blocks of {block}"
            )));
        }
        let row_bytes = cols / block * block_bytes;
        if Some(data.len()) != row_bytes.checked_mul(rows) {
            return Err(invalid(format!(
                "{} bytes of {ty} data, but {rows} rows of {cols} elements need {}",
                data.len(),
                row_bytes.saturating_mul(rows)
            )));
        }
        let units = cols.div_ceil(UNIT);
        // (bytes per row, segment count) on the GPU.
        let (gpu_row_bytes, n_segs) = match layout {
            Layout::Blocks(segs) => (
                segs.iter().map(|(a, b)| b - a).sum::<usize>() * (cols / block),
                segs.len(),
            ),
            Layout::Float { elem } => (units * UNIT * elem, 1),
        };
        let limit = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size);
        let slack = 16 * n_segs as u64;
        let rows_per_part =
            (limit.saturating_sub(slack) / gpu_row_bytes as u64).min(rows as u64) as usize;
        if rows_per_part == 0 {
            return Err(GpuError::OutOfMemory {
                what: format!("a row of weight '{name}'"),
                needed: gpu_row_bytes as u64 + slack,
                max_buffer: limit,
            });
        }
        let mut parts = Vec::with_capacity(rows.div_ceil(rows_per_part));
        for row0 in (0..rows).step_by(rows_per_part) {
            let n = rows_per_part.min(rows - row0);
            let src = &data[row0 * row_bytes..(row0 + n) * row_bytes];
            let label = format!("{name}[{row0}..{}]", row0 + n);
            let mut seg = [0u32; 2];
            let buffer = match layout {
                // Already aligned: upload as is.
                Layout::Blocks(&[(0, b)]) if b == block_bytes => ctx.upload(&label, src)?,
                Layout::Float { .. } if units * UNIT == cols => ctx.upload(&label, src)?,
                Layout::Blocks(segs) => {
                    let blocks = n * (cols / block);
                    let mut bytes = Vec::with_capacity(n * gpu_row_bytes + slack as usize);
                    for (i, &(a, b)) in segs.iter().enumerate() {
                        if i > 0 {
                            seg[i - 1] = (bytes.len() / 4) as u32;
                        }
                        for blk in src.chunks_exact(block_bytes).take(blocks) {
                            bytes.extend_from_slice(&blk[a..b]);
                        }
                        bytes.resize(bytes.len().next_multiple_of(16), 0);
                    }
                    ctx.upload(&label, &bytes)?
                }
                Layout::Float { elem } => {
                    let mut bytes = vec![0u8; n * gpu_row_bytes];
                    for (dst, row) in bytes
                        .chunks_exact_mut(gpu_row_bytes)
                        .zip(src.chunks_exact(cols * elem))
                    {
                        dst[..row.len()].copy_from_slice(row);
                    }
                    ctx.upload(&label, &bytes)?
                }
            };
            parts.push(WeightPart {
                buffer,
                row0,
                rows: n,
                seg,
            });
        }
        Ok(GpuWeight {
            ty,
            cols,
            rows,
            parts,
        })
    }

    /// The buffers, in row order.
    pub fn parts(&self) -> &[WeightPart] {
        &self.parts
    }

    /// 32-element units per row, as the kernels walk it.
    pub fn units(&self) -> usize {
        self.cols.div_ceil(UNIT)
    }

    /// GPU memory taken by all parts.
    pub fn gpu_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }

    /// The uniform values for part `i`, writing rows with stride `out_stride`.
    pub(crate) fn part_params(&self, i: usize, out_stride: usize) -> PartParams {
        let p = &self.parts[i];
        PartParams {
            cols: self.cols as u32,
            units: self.units() as u32,
            rows: p.rows as u32,
            row0: p.row0 as u32,
            out_stride: out_stride as u32,
            seg1: p.seg[0],
            seg2: p.seg[1],
            last: u32::from(i + 1 == self.parts.len()),
        }
    }
}
