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
//! | Q2_K | scales qs 80 B · d,dmin 4 B                   | … d dmin (84 B)  |
//! | Q3_K | hmask qs 96 B · scales 12 B · d 2 B           | … d (110 B)      |
//! | IQ4_NL | qs 16 B · d 2 B                             | d qs (18 B)      |
//! | IQ4_XS | qs 128 B · d,scales_h,scales_l 8 B          | d … qs (136 B)   |
//! | IQ2_XXS | qs 64 B · d 2 B                            | d qs (66 B)      |
//! | IQ2_XS | qs 64 B · scales 8 B · d 2 B                | d qs scales (74 B) |
//! | IQ2_S  | qs signs qh scales 80 B · d 2 B             | d … (82 B)       |
//! | IQ3_XXS | qs scales_signs 96 B · d 2 B               | d … (98 B)       |
//! | IQ3_S  | qs qh signs scales 108 B · d 2 B            | d … (110 B)      |
//! | IQ1_S  | qs qh 48 B · d 2 B                          | d qs qh (50 B)   |
//! | IQ1_M  | unchanged (56 B, word-aligned)              |                  |
//! | F32, F16, BF16 | rows zero-padded to a multiple of 32 elements |        |
//!
//! The lattice types (IQ2, IQ3 and IQ1) decode through a table of points: each part's buffer
//! ends with its type's table ([`lattice_table`]), where the kernels find it from the binding's
//! length, so no kernel needs a binding of its own for it (1–8 KiB per part).
//!
//! No other bytes are added except segment and row padding, so a part takes the same memory as
//! the GGUF data (F32/F16 tensors with row lengths that are multiples of 32 — all model tensors —
//! are uploaded byte for byte).

use super::{GpuContext, GpuError};
use crate::quant::GgmlType;

/// Elements per unit: the granularity at which the kernels decode a row.
pub const UNIT: usize = 32;

/// How a type is laid out on the GPU.
#[derive(Clone, Copy)]
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
        F16 | BF16 => Layout::Float { elem: 2 },
        Q4_0 => Layout::Blocks(&[(2, 18), (0, 2)]),
        Q4_1 => Layout::Blocks(&[(4, 20), (0, 4)]),
        Q5_0 => Layout::Blocks(&[(6, 22), (2, 6), (0, 2)]),
        Q5_1 => Layout::Blocks(&[(8, 24), (4, 8), (0, 4)]),
        Q8_0 => Layout::Blocks(&[(2, 34), (0, 2)]),
        Q4_K => Layout::Blocks(&[(0, 144)]),
        Q5_K => Layout::Blocks(&[(0, 176)]),
        Q6_K => Layout::Blocks(&[(0, 208), (208, 210)]),
        Q2_K => Layout::Blocks(&[(0, 80), (80, 84)]),
        Q3_K => Layout::Blocks(&[(0, 96), (96, 108), (108, 110)]),
        IQ4_NL => Layout::Blocks(&[(2, 18), (0, 2)]),
        IQ4_XS => Layout::Blocks(&[(8, 136), (0, 8)]),
        IQ2_XXS => Layout::Blocks(&[(2, 66), (0, 2)]),
        IQ2_XS => Layout::Blocks(&[(2, 66), (66, 74), (0, 2)]),
        IQ2_S => Layout::Blocks(&[(2, 82), (0, 2)]),
        IQ3_XXS => Layout::Blocks(&[(2, 98), (0, 2)]),
        IQ3_S => Layout::Blocks(&[(2, 110), (0, 2)]),
        IQ1_S => Layout::Blocks(&[(2, 50), (0, 2)]),
        IQ1_M => Layout::Blocks(&[(0, 56)]),
        _ => return None,
    })
}

/// Whether the GPU kernels can use weights of type `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    layout(ty).is_some()
}

/// `defs` with the defines that select `ty`'s decoder in `shaders/quant.wgsl`: its own, `IQ4`
/// for the two formats that share the IQ4 levels, `LATTICE` (the table's length in words) for
/// the lattice types, and `IQ1` for the two that share IQ1's points.
pub(crate) fn with_type(defs: crate::gpu::ShaderDefs, ty: GgmlType) -> crate::gpu::ShaderDefs {
    let mut defs = defs.with(type_define(ty), 1);
    if matches!(ty, GgmlType::IQ4_NL | GgmlType::IQ4_XS) {
        defs.set("IQ4", 1);
    }
    if matches!(ty, GgmlType::IQ1_S | GgmlType::IQ1_M) {
        defs.set("IQ1", 1);
    }
    if let Some(t) = lattice_table(ty) {
        defs.set("LATTICE", t.len());
    }
    defs
}

/// The table of points a lattice type's decoder reads, as the words that end each part's
/// buffer: an IQ2 point's 8 coordinates as bytes in two words, an IQ3 point's 4 in one word, an
/// IQ1 point's 8 (each -1, 0 or 1, stored plus one) as 2-bit fields of a half word (two points
/// per word, the even one low), which keeps IQ1's 2048 points at 4 KiB.
pub(crate) fn lattice_table(ty: GgmlType) -> Option<&'static [u32]> {
    use crate::quant::iq_grids::*;
    use std::sync::OnceLock;
    use GgmlType::*;
    fn bytes8(grid: &[u64]) -> Vec<u32> {
        grid.iter().flat_map(|&e| [e as u32, (e >> 32) as u32]).collect()
    }
    fn crumbs8(grid: &[u64]) -> Vec<u32> {
        let half = |e: u64| (0..8).map(|k| (((e >> (8 * k)) & 3) as u32) << (2 * k)).sum::<u32>();
        grid.chunks_exact(2).map(|p| half(p[0]) | (half(p[1]) << 16)).collect()
    }
    static TABLES: [OnceLock<Vec<u32>>; 6] = [const { OnceLock::new() }; 6];
    let (i, make): (usize, fn() -> Vec<u32>) = match ty {
        IQ2_XXS => (0, || bytes8(&IQ2_XXS_GRID)),
        IQ2_XS => (1, || bytes8(&IQ2_XS_GRID)),
        IQ2_S => (2, || bytes8(&IQ2_S_GRID)),
        IQ3_XXS => (3, || IQ3_XXS_GRID.to_vec()),
        IQ3_S => (4, || IQ3_S_GRID.to_vec()),
        IQ1_S | IQ1_M => (5, || crumbs8(&IQ1_S_GRID)),
        _ => return None,
    };
    Some(TABLES[i].get_or_init(make))
}

/// Bytes of `ty`'s table at the end of each part.
fn table_bytes(ty: GgmlType) -> u64 {
    lattice_table(ty).map_or(0, |t| 4 * t.len() as u64)
}

fn type_define(ty: GgmlType) -> &'static str {
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
        BF16 => "TYPE_BF16",
        Q2_K => "TYPE_Q2_K",
        Q3_K => "TYPE_Q3_K",
        IQ4_NL => "TYPE_IQ4_NL",
        IQ4_XS => "TYPE_IQ4_XS",
        IQ2_XXS => "TYPE_IQ2_XXS",
        IQ2_XS => "TYPE_IQ2_XS",
        IQ2_S => "TYPE_IQ2_S",
        IQ3_XXS => "TYPE_IQ3_XXS",
        IQ3_S => "TYPE_IQ3_S",
        IQ1_S => "TYPE_IQ1_S",
        IQ1_M => "TYPE_IQ1_M",
        _ => unreachable!("checked at upload"),
    }
}

/// One buffer (or, for a member of a joint, a range of one) holding rows `row0 .. row0 + rows`
/// of a weight.
#[derive(Clone)]
pub struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
    /// u32-word offsets of the second and third segments (0 where absent), from `offset`.
    pub(crate) seg: [u32; 2],
    /// The bytes of `buffer` the kernels bind: all of it but for a joint's members.
    offset: u64,
    size: u64,
    /// GPU memory counted for the part: its size, but for a joint's member its own rows (its
    /// binding may reach on to the lattice table at the end of the whole).
    share: u64,
}

impl WeightPart {
    /// The binding the kernels read the part through.
    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.size),
        })
    }
}

/// A weight matrix uploaded for the GPU kernels.
pub struct GpuWeight {
    pub ty: GgmlType,
    /// Row length in elements (ggml `dims[0]`).
    pub cols: usize,
    pub rows: usize,
    parts: Vec<WeightPart>,
    /// Where the weight is one of the matrices of a joint (see [`WeightWriter::joint`]).
    joint: Option<JointMember>,
}

/// A joint's member: rows `first_row ..` of the joint's one buffer.
struct JointMember {
    /// The whole joint, as one part.
    whole: WeightPart,
    first_row: usize,
}

impl GpuWeight {
    /// Bytes of the matrix in its GGUF encoding: what one product over every row reads.
    pub fn encoded_bytes(&self) -> u64 {
        self.ty.bytes_for(self.rows as u64 * self.cols as u64).unwrap_or(0)
    }
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

/// Rows are written in groups of this many (at least) bytes of GGUF data, and always in
/// multiples of 4 rows, so every segment write is 4-byte aligned as WebGPU requires.
const FLUSH_BYTES: usize = 1 << 20;

/// Uploads a weight as its GGUF bytes arrive, in order and in pieces of any size, holding back
/// at most about [`FLUSH_BYTES`] plus one row group: the streaming loader never has a whole
/// tensor in memory. Rows are repacked into the GPU layout group by group.
#[derive(Clone)]
pub struct WeightWriter {
    name: String,
    ty: GgmlType,
    cols: usize,
    rows: usize,
    layout: Layout,
    block: usize,
    block_bytes: usize,
    /// GGUF bytes per row.
    row_bytes: usize,
    /// Bytes per row on the GPU, across all segments.
    gpu_row_bytes: usize,
    parts: Vec<WeightPart>,
    /// Byte offset of each segment within each part's buffer (same for all parts but the last).
    seg_starts: Vec<Vec<u64>>,
    /// Bytes per row in each segment.
    seg_widths: Vec<usize>,
    /// Where this tensor's rows start in the buffers: 0 but for a joint's later members.
    row_base: usize,
    /// For a joint's member: the joint's rows.
    joint_rows: Option<usize>,
    /// GGUF bytes of rows `next_row..` not yet written.
    pending: Vec<u8>,
    next_row: usize,
    scratch: Vec<u8>,
}

impl WeightWriter {
    /// Validates the shape, then allocates every part's buffer up front (so a model that does
    /// not fit fails before its bytes are downloaded).
    pub fn new(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        cols: usize,
        rows: usize,
    ) -> Result<WeightWriter, GpuError> {
        Self::allocate(ctx, name, ty, cols, rows)
    }

    /// Writers for matrices of one type and row length that read the same input (a layer's
    /// Q, K and V; gate and up), sharing one buffer: `members` (name, rows) are stacked in
    /// order, each member's rows contiguous in every segment, so each member is still a
    /// weight of its own to the kernels (bound at its offset) and one product can take all
    /// their rows in one dispatch ([`GpuWeight::join`]). `None` where the joint would not be
    /// one part or a member would not start at a bindable offset (WebGPU's
    /// `minStorageBufferOffsetAlignment`, and whole words in the later segments); the
    /// caller then uploads them apart. Takes the same memory as apart, less some padding.
    pub fn joint(
        ctx: &GpuContext,
        ty: GgmlType,
        cols: usize,
        members: &[(&str, usize)],
    ) -> Result<Option<Vec<WeightWriter>>, GpuError> {
        let total: usize = members.iter().map(|m| m.1).sum();
        let Some(layout) = layout(ty) else {
            return Ok(None);
        };
        let (block, _) = ty.block_geometry();
        if members.len() < 2 || members.iter().any(|m| m.1 == 0) || cols == 0 || !cols.is_multiple_of(block) {
            return Ok(None);
        }
        let widths = seg_widths(&layout, ty, cols);
        let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment);
        let mut base = 0usize;
        for &(_, rows) in members {
            let bindable = ((base * widths[0]) as u64).is_multiple_of(align) && widths.iter().all(|w| (base * w).is_multiple_of(4));
            // A member's rows must also end on a word in every segment, or the padding of
            // its last write would land on the next member's first bytes.
            if !bindable || widths.iter().any(|w| !(rows * w).is_multiple_of(4)) {
                return Ok(None);
            }
            base += rows;
        }
        let label = members.iter().map(|m| m.0).collect::<Vec<_>>().join(" + ");
        if rows_per_part(ctx, ty, &widths) < total {
            return Ok(None);
        }
        // Each member writes its rows into the whole's buffer (nothing is written yet).
        let whole = Self::allocate(ctx, &label, ty, cols, total)?;
        let mut base = 0;
        Ok(Some(
            members
                .iter()
                .map(|&(name, rows)| {
                    let w = WeightWriter { name: name.to_string(), rows, row_base: base, joint_rows: Some(total), ..whole.clone() };
                    base += rows;
                    w
                })
                .collect(),
        ))
    }

    fn allocate(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        cols: usize,
        rows: usize,
    ) -> Result<WeightWriter, GpuError> {
        let layout = layout(ty).ok_or_else(|| GpuError::UnsupportedType {
            tensor: name.to_string(),
            ty,
        })?;
        let (block, block_bytes) = ty.block_geometry();
        if cols == 0 || rows == 0 || !cols.is_multiple_of(block) {
            return Err(GpuError::Validation {
                what: format!("weight '{name}'"),
                message: format!("{rows} rows of {cols} elements are not whole {ty} blocks of {block}"),
            });
        }
        let row_bytes = cols / block * block_bytes;
        let seg_widths = seg_widths(&layout, ty, cols);
        let gpu_row_bytes: usize = seg_widths.iter().sum();
        let rows_per_part = rows_per_part(ctx, ty, &seg_widths).min(rows);
        if rows_per_part == 0 {
            let limit = ctx.memory_limits().binding_limit();
            let which = if limit == ctx.limits.max_buffer_size { "maxBufferSize" } else { "maxStorageBufferBindingSize" };
            let need = gpu_row_bytes as u64 + 16 * seg_widths.len() as u64 + table_bytes(ty);
            return Err(ctx.over_limit(&format!("one row of '{name}'"), need, which));
        }
        let mut parts = Vec::with_capacity(rows.div_ceil(rows_per_part));
        let mut seg_starts = Vec::with_capacity(parts.capacity());
        for row0 in (0..rows).step_by(rows_per_part) {
            let n = rows_per_part.min(rows - row0);
            let mut starts = Vec::with_capacity(seg_widths.len());
            let mut at = 0u64;
            for w in &seg_widths {
                starts.push(at);
                at = (at + (n * w) as u64).next_multiple_of(16);
            }
            let mut seg = [0u32; 2];
            for (i, s) in starts.iter().enumerate().skip(1) {
                seg[i - 1] = (s / 4) as u32;
            }
            let buffer = ctx.storage(
                &format!("{name}[{row0}..{}]", row0 + n),
                at + table_bytes(ty),
                wgpu::BufferUsages::empty(),
            )?;
            if let Some(table) = lattice_table(ty) {
                ctx.write(&buffer, at, bytemuck::cast_slice(table));
            }
            parts.push(WeightPart {
                size: buffer.size(),
                share: buffer.size(),
                buffer,
                row0,
                rows: n,
                seg,
                offset: 0,
            });
            seg_starts.push(starts);
        }
        Ok(WeightWriter {
            name: name.to_string(),
            ty,
            cols,
            rows,
            layout,
            block,
            block_bytes,
            row_bytes,
            gpu_row_bytes,
            parts,
            seg_starts,
            seg_widths,
            row_base: 0,
            joint_rows: None,
            pending: Vec::new(),
            next_row: 0,
            scratch: Vec::new(),
        })
    }

    /// GGUF bytes the whole tensor takes.
    pub fn expected_bytes(&self) -> u64 {
        self.row_bytes as u64 * self.rows as u64
    }

    /// Bytes received so far.
    pub fn received_bytes(&self) -> u64 {
        (self.next_row * self.row_bytes + self.pending.len()) as u64
    }

    /// Appends the next bytes of the tensor's GGUF data.
    pub fn push(&mut self, ctx: &GpuContext, mut bytes: &[u8]) -> Result<(), GpuError> {
        if self.received_bytes() + bytes.len() as u64 > self.expected_bytes() {
            return Err(self.size_error(self.received_bytes() + bytes.len() as u64));
        }
        while !bytes.is_empty() {
            // Take only what completes the current group, so `pending` stays bounded.
            let group = self.group_rows();
            let want = group * self.row_bytes - self.pending.len();
            let take = want.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == group * self.row_bytes {
                self.flush(ctx, group);
            }
        }
        Ok(())
    }

    /// Checks that every byte arrived and returns the uploaded weight.
    pub fn finish(self) -> Result<GpuWeight, GpuError> {
        if self.next_row != self.rows {
            return Err(self.size_error(self.received_bytes()));
        }
        let Some(total) = self.joint_rows else {
            return Ok(GpuWeight { ty: self.ty, cols: self.cols, rows: self.rows, parts: self.parts, joint: None });
        };
        // A member: its rows of each segment, bound from the first segment's.
        let whole = self.parts.into_iter().next().expect("a joint is one part");
        let at = |i: usize| self.seg_starts[0][i] + (self.row_base * self.seg_widths[i]) as u64;
        let offset = at(0);
        let mut seg = [0u32; 2];
        for i in 1..self.seg_widths.len() {
            seg[i - 1] = ((at(i) - offset) / 4) as u32;
        }
        let last = self.seg_widths.len() - 1;
        let end = at(last) + (self.rows * self.seg_widths[last]) as u64;
        let share = (end - offset).next_multiple_of(4);
        let view = WeightPart {
            buffer: whole.buffer.clone(),
            row0: 0,
            rows: self.rows,
            seg,
            offset,
            // The kernels find a lattice table at the binding's end: the member's binding
            // reaches on to the whole's (the later members' rows it spans go unread).
            size: if table_bytes(self.ty) > 0 { whole.size - offset } else { share },
            share,
        };
        debug_assert_eq!(whole.rows, total);
        Ok(GpuWeight {
            ty: self.ty,
            cols: self.cols,
            rows: self.rows,
            parts: vec![view],
            joint: Some(JointMember { whole, first_row: self.row_base }),
        })
    }

    fn size_error(&self, got: u64) -> GpuError {
        GpuError::Validation {
            what: format!("weight '{}'", self.name),
            message: format!(
                "{got} bytes of {} data, but {} rows of {} elements need {}",
                self.ty,
                self.rows,
                self.cols,
                self.expected_bytes()
            ),
        }
    }

    /// Rows in the group starting at `next_row`: about FLUSH_BYTES, a multiple of 4, and never
    /// past the end of the current part.
    fn group_rows(&self) -> usize {
        let row = self.row_base + self.next_row;
        let part = self.part_of(row);
        let part_end = self.parts[part].row0 + self.parts[part].rows;
        let want = (FLUSH_BYTES / self.row_bytes).max(1).next_multiple_of(4);
        want.min(part_end - row).min(self.rows - self.next_row)
    }

    fn part_of(&self, row: usize) -> usize {
        self.parts.partition_point(|p| p.row0 + p.rows <= row)
    }

    /// Repacks `n` pending rows and writes them into their part.
    fn flush(&mut self, ctx: &GpuContext, n: usize) {
        let p = self.part_of(self.row_base + self.next_row);
        let local = self.row_base + self.next_row - self.parts[p].row0;
        let buffer = &self.parts[p].buffer;
        let src = &self.pending[..n * self.row_bytes];
        let blocks_per_row = self.cols / self.block;
        match self.layout {
            // Already aligned: upload as is.
            Layout::Blocks(&[(0, b)]) if b == self.block_bytes => {
                ctx.write(buffer, (local * self.row_bytes) as u64, src);
            }
            Layout::Blocks(segs) => {
                for (i, &(a, b)) in segs.iter().enumerate() {
                    let w = b - a;
                    self.scratch.clear();
                    for blk in src.chunks_exact(self.block_bytes) {
                        self.scratch.extend_from_slice(&blk[a..b]);
                    }
                    // Groups other than a part's last are multiples of 4 rows, so only the
                    // last one can need padding, which then lands in the segment's padding.
                    let at = self.seg_starts[p][i] + (local * blocks_per_row * w) as u64;
                    ctx.write(buffer, at, &self.scratch);
                }
            }
            Layout::Float { elem } => {
                self.scratch.clear();
                self.scratch.resize(n * self.gpu_row_bytes, 0);
                for (dst, row) in self
                    .scratch
                    .chunks_exact_mut(self.gpu_row_bytes)
                    .zip(src.chunks_exact(self.cols * elem))
                {
                    dst[..row.len()].copy_from_slice(row);
                }
                ctx.write(buffer, (local * self.gpu_row_bytes) as u64, &self.scratch);
            }
        }
        self.pending.clear();
        self.next_row += n;
    }
}

/// Bytes per row of each GPU segment of a `ty` matrix with rows of `cols` elements.
fn seg_widths(layout: &Layout, ty: GgmlType, cols: usize) -> Vec<usize> {
    let (block, _) = ty.block_geometry();
    match layout {
        Layout::Blocks(segs) => segs.iter().map(|(a, b)| (b - a) * (cols / block)).collect(),
        Layout::Float { elem } => vec![cols.div_ceil(UNIT) * UNIT * elem],
    }
}

/// Rows of a `ty` matrix with segments of `widths` bytes per row that fit one part: one storage
/// binding, with room for the segments' padding and the lattice table.
fn rows_per_part(ctx: &GpuContext, ty: GgmlType, widths: &[usize]) -> usize {
    let limit = ctx.memory_limits().binding_limit();
    let row_bytes: usize = widths.iter().sum();
    (limit.saturating_sub(16 * widths.len() as u64 + table_bytes(ty)) / row_bytes as u64) as usize
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
        let mut w = WeightWriter::new(ctx, name, ty, cols, rows)?;
        if data.len() as u64 != w.expected_bytes() {
            return Err(w.size_error(data.len() as u64));
        }
        w.push(ctx, data)?;
        w.finish()
    }

    /// The buffers, in row order.
    pub fn parts(&self) -> &[WeightPart] {
        &self.parts
    }

    /// 32-element units per row, as the kernels walk it.
    pub fn units(&self) -> usize {
        self.cols.div_ceil(UNIT)
    }

    /// GPU memory taken by all parts (a joint's member: its share).
    pub fn gpu_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.share).sum()
    }

    /// Uploads matrices as one joint ([`WeightWriter::joint`]): `members` are (name, rows,
    /// GGUF bytes). `None` where they cannot share a buffer.
    pub fn upload_joint(ctx: &GpuContext, ty: GgmlType, cols: usize, members: &[(&str, usize, &[u8])]) -> Result<Option<Vec<GpuWeight>>, GpuError> {
        let shapes: Vec<(&str, usize)> = members.iter().map(|m| (m.0, m.1)).collect();
        let Some(writers) = WeightWriter::joint(ctx, ty, cols, &shapes)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(members.len());
        for (mut w, m) in writers.into_iter().zip(members) {
            if m.2.len() as u64 != w.expected_bytes() {
                return Err(w.size_error(m.2.len() as u64));
            }
            w.push(ctx, m.2)?;
            out.push(w.finish()?);
        }
        Ok(Some(out))
    }

    /// All the rows of `members` as one weight, where they are a whole joint's members in
    /// order (as [`WeightWriter::joint`] made them): one product over it computes theirs in
    /// one dispatch, row for row as each would ([`crate::gpu::ops::MatmulOp::for_decode_into`]).
    pub fn join(members: &[&GpuWeight]) -> Option<GpuWeight> {
        let whole = &members.first()?.joint.as_ref()?.whole;
        let mut next = 0;
        for m in members {
            let j = m.joint.as_ref()?;
            if j.whole.buffer != whole.buffer || j.first_row != next {
                return None;
            }
            next += m.rows;
        }
        (next == whole.rows).then(|| GpuWeight {
            ty: members[0].ty,
            cols: members[0].cols,
            rows: next,
            parts: vec![whole.clone()],
            joint: None,
        })
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
