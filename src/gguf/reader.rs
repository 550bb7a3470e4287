//! The GGUF header parser. It is incremental: bytes arrive in chunks of any size (a `fetch()`
//! stream in the browser), and the parser reports "need more" until the header is complete.
//!
//! Everything here treats the file as hostile: counts and lengths are checked against the bytes
//! that can still exist before anything is allocated, and every size computation is checked.

use super::value::{Metadata, Value, ValueType};
use super::{GgufError, GgufHeader, TensorInfo};
use crate::quant::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's own limit on tensor rank.
pub const MAX_DIMS: u32 = 4;
/// Deepest array nesting accepted; real files nest at most twice.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Hard ceilings for when the total length is unknown (a stream without Content-Length).
const MAX_KV: u64 = 1 << 20;
const MAX_TENSORS: u64 = 1 << 20;
const MAX_STRING: u64 = 1 << 30;
/// Cap on speculative capacity reservations driven by untrusted counts.
const MAX_PREALLOC: usize = 1 << 16;
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Why a parse step stopped.
enum Stop {
    /// The buffer ends before this item does; `needed` is the absolute file offset that must be
    /// available before retrying.
    NeedMore {
        needed: u64,
    },
    Fatal(GgufError),
}

impl From<GgufError> for Stop {
    fn from(e: GgufError) -> Self {
        Stop::Fatal(e)
    }
}

type PResult<T> = Result<T, Stop>;

/// A cursor over the buffered bytes; `base` is the file offset of `buf[0]`.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    total_len: Option<u64>,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn take(&mut self, n: u64, what: &str) -> PResult<&'a [u8]> {
        let end = self
            .offset()
            .checked_add(n)
            .ok_or_else(|| GgufError::Truncated {
                what: what.into(),
                offset: self.offset(),
                needed: n,
            })?;
        if let Some(total) = self.total_len {
            if end > total {
                return Err(Stop::Fatal(GgufError::Truncated {
                    what: what.into(),
                    offset: self.offset(),
                    needed: n,
                }));
            }
        }
        let avail = (self.buf.len() - self.pos) as u64;
        if n > avail {
            return Err(Stop::NeedMore { needed: end });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> PResult<[u8; N]> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("length checked"))
    }

    fn u32(&mut self, what: &str) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> PResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Bytes that may still follow the cursor, if the total length is known.
    fn remaining_in_file(&self) -> Option<u64> {
        self.total_len.map(|t| t.saturating_sub(self.offset()))
    }

    /// Rejects a count whose minimal encoding cannot fit in the rest of the file (or exceeds a
    /// hard ceiling), before anything is allocated for it.
    fn check_count(&self, what: &str, count: u64, min_size: u64, ceiling: u64) -> PResult<()> {
        let too_big = count > ceiling
            || match self.remaining_in_file() {
                Some(rem) => count.saturating_mul(min_size) > rem,
                None => false,
            };
        if too_big {
            return Err(Stop::Fatal(GgufError::CountTooLarge {
                what: what.into(),
                count,
                offset: self.offset(),
                remaining: self.remaining_in_file(),
            }));
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> PResult<String> {
        let len = self.u64(what)?;
        self.check_count(what, len, 1, MAX_STRING)?;
        let at = self.offset();
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            Stop::Fatal(GgufError::InvalidUtf8 {
                what: what.into(),
                offset: at,
            })
        })
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: u32) -> PResult<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Bool => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(Stop::Fatal(GgufError::InvalidValue {
                        key: key.into(),
                        detail: format!("bool byte {b}"),
                    }))
                }
            },
            ValueType::String => Value::String(self.string(key)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Stop::Fatal(GgufError::InvalidValue {
                        key: key.into(),
                        detail: "arrays nested too deeply".into(),
                    }));
                }
                let elem_id = self.u32(key)?;
                let elem =
                    ValueType::from_id(elem_id).ok_or_else(|| GgufError::InvalidValueType {
                        key: key.into(),
                        type_id: elem_id,
                    })?;
                let count = self.u64(key)?;
                self.check_count(key, count, elem.min_encoded_size(), u64::MAX)?;
                let mut items = Vec::with_capacity((count as usize).min(MAX_PREALLOC));
                for _ in 0..count {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    Preamble,
    Kv { left: u64 },
    Tensors { left: u64 },
    Done,
}

/// Incremental GGUF header parser.
///
/// ```
/// # use llama_webgpu::gguf::{HeaderParser, Progress};
/// let mut p = HeaderParser::new(None);
/// assert!(matches!(p.feed(b"GGUF").unwrap(), Progress::NeedMore));
/// ```
pub struct HeaderParser {
    /// Bytes received but not yet consumed by a completed item.
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Do not retry parsing until the stream reaches this offset.
    needed: u64,
    total_len: Option<u64>,
    state: State,
    version: u32,
    n_tensors: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
}

/// What the parser needs next.
#[derive(Debug)]
pub enum Progress {
    /// Feed more bytes.
    NeedMore,
    /// The header is complete. Bytes past `header.data_offset` in the fed chunks are tensor data.
    Done(Box<GgufHeader>),
}

impl HeaderParser {
    /// `total_len` is the file size when known; it lets counts and offsets be checked early.
    pub fn new(total_len: Option<u64>) -> Self {
        HeaderParser {
            buf: Vec::new(),
            base: 0,
            needed: 0,
            total_len,
            state: State::Preamble,
            version: 0,
            n_tensors: 0,
            metadata: Metadata::default(),
            tensors: Vec::new(),
        }
    }

    /// File offset of the first byte not yet fed.
    pub fn position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Feeds the next chunk of the file. After [`Progress::Done`] the parser must not be fed again.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Progress, GgufError> {
        if matches!(self.state, State::Done) {
            return Err(GgufError::InvalidValue {
                key: "<parser>".into(),
                detail: "fed after the header was complete".into(),
            });
        }
        self.buf.extend_from_slice(chunk);
        if self.position() < self.needed {
            return Ok(Progress::NeedMore);
        }
        loop {
            let mut cur = Cursor {
                buf: &self.buf,
                pos: 0,
                base: self.base,
                total_len: self.total_len,
            };
            let step = Self::step(
                &mut cur,
                self.state,
                &mut self.version,
                &mut self.n_tensors,
                &mut self.metadata,
                &mut self.tensors,
            );
            match step {
                Ok(next) => {
                    let used = cur.pos;
                    self.buf.drain(..used);
                    self.base += used as u64;
                    self.state = next;
                    if let State::Done = next {
                        return self.finish_header().map(|h| Progress::Done(Box::new(h)));
                    }
                }
                Err(Stop::NeedMore { needed }) => {
                    // Retrying re-parses the current item from its start. Waiting until the
                    // buffered part has at least doubled keeps that linear overall, even for a
                    // 128k-entry vocabulary fed one byte at a time.
                    self.needed = needed.max(self.base + 2 * self.buf.len() as u64);
                    if let Some(total) = self.total_len {
                        self.needed = self.needed.min(total);
                    }
                    return Ok(Progress::NeedMore);
                }
                Err(Stop::Fatal(e)) => return Err(e),
            }
        }
    }

    /// Call at end of stream. Returns the header if the buffered bytes complete it; otherwise
    /// the file is truncated.
    pub fn finish(&mut self) -> Result<Box<GgufHeader>, GgufError> {
        if matches!(self.state, State::Done) {
            return Err(GgufError::InvalidValue {
                key: "<parser>".into(),
                detail: "finish() after the header was complete".into(),
            });
        }
        // The stream has ended, so no more bytes can be waited for: parse what is buffered
        // with its true length, which turns "need more" into a truncation error.
        let total = self.position();
        self.total_len = Some(self.total_len.map_or(total, |t| t.min(total)));
        self.needed = 0;
        match self.feed(&[])? {
            Progress::Done(h) => Ok(h),
            Progress::NeedMore => Err(GgufError::Truncated {
                what: "header".into(),
                offset: total,
                needed: 1,
            }),
        }
    }

    /// After [`Progress::Done`]: the bytes already fed beyond the header, and the absolute file
    /// offset of the first of them. They belong to the data section and must not be lost.
    pub fn take_remainder(&mut self) -> (u64, Vec<u8>) {
        (self.base, std::mem::take(&mut self.buf))
    }

    /// Parses one item (preamble, one key/value pair or one tensor info) and says what follows.
    fn step(
        cur: &mut Cursor,
        state: State,
        version: &mut u32,
        n_tensors: &mut u64,
        metadata: &mut Metadata,
        tensors: &mut Vec<TensorInfo>,
    ) -> PResult<State> {
        match state {
            State::Preamble => {
                let magic = cur.array::<4>("magic")?;
                if &magic != MAGIC {
                    return Err(Stop::Fatal(GgufError::BadMagic(magic)));
                }
                let v = cur.u32("version")?;
                if v.swap_bytes() == 2 || v.swap_bytes() == 3 {
                    return Err(Stop::Fatal(GgufError::BigEndian));
                }
                if v != 2 && v != 3 {
                    return Err(Stop::Fatal(GgufError::UnsupportedVersion(v)));
                }
                *version = v;
                let nt = cur.u64("tensor count")?;
                let nkv = cur.u64("metadata count")?;
                // A tensor info is at least name length (8) + n_dims (4) + type (4) + offset (8).
                cur.check_count("tensor count", nt, 24, MAX_TENSORS)?;
                // A key/value pair is at least key length (8) + type (4) + one byte.
                cur.check_count("metadata count", nkv, 13, MAX_KV)?;
                *n_tensors = nt;
                Ok(if nkv > 0 {
                    State::Kv { left: nkv }
                } else if nt > 0 {
                    State::Tensors { left: nt }
                } else {
                    State::Done
                })
            }
            State::Kv { left } => {
                let key = cur.string("metadata key")?;
                let ty_id = cur.u32(&key)?;
                let ty = ValueType::from_id(ty_id).ok_or_else(|| GgufError::InvalidValueType {
                    key: key.clone(),
                    type_id: ty_id,
                })?;
                let value = cur.value(ty, &key, 0)?;
                if !metadata.insert(key.clone(), value) {
                    return Err(Stop::Fatal(GgufError::DuplicateKey(key)));
                }
                Ok(if left > 1 {
                    State::Kv { left: left - 1 }
                } else if *n_tensors > 0 {
                    State::Tensors { left: *n_tensors }
                } else {
                    State::Done
                })
            }
            State::Tensors { left } => {
                let name = cur.string("tensor name")?;
                let n_dims = cur.u32(&name)?;
                if n_dims == 0 || n_dims > MAX_DIMS {
                    return Err(Stop::Fatal(GgufError::BadTensor {
                        tensor: name,
                        detail: format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
                    }));
                }
                let mut dims = Vec::with_capacity(n_dims as usize);
                for _ in 0..n_dims {
                    dims.push(cur.u64(&name)?);
                }
                let type_id = cur.u32(&name)?;
                let offset = cur.u64(&name)?;
                let ggml_type =
                    GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
                        tensor: name.clone(),
                        type_id,
                    })?;
                let n_elements = dims
                    .iter()
                    .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                    .filter(|&n| n <= i64::MAX as u64);
                let Some(n_elements) = n_elements else {
                    return Err(Stop::Fatal(GgufError::BadTensor {
                        tensor: name,
                        detail: format!("dimensions {dims:?} overflow"),
                    }));
                };
                if dims[0] % ggml_type.block_size() as u64 != 0 {
                    return Err(Stop::Fatal(GgufError::BadTensor {
                        tensor: name,
                        detail: format!(
                            "row length {} is not a multiple of the {} block size {}",
                            dims[0],
                            ggml_type,
                            ggml_type.block_size()
                        ),
                    }));
                }
                let size = ggml_type
                    .bytes_for(n_elements)
                    .ok_or_else(|| GgufError::BadTensor {
                        tensor: name.clone(),
                        detail: "byte size overflows".into(),
                    })?;
                if tensors.iter().any(|t| t.name == name) {
                    return Err(Stop::Fatal(GgufError::DuplicateTensor(name)));
                }
                tensors.push(TensorInfo {
                    name,
                    dims,
                    ggml_type,
                    offset,
                    size,
                });
                Ok(if left > 1 {
                    State::Tensors { left: left - 1 }
                } else {
                    State::Done
                })
            }
            State::Done => Ok(State::Done),
        }
    }

    fn finish_header(&mut self) -> Result<GgufHeader, GgufError> {
        let alignment = match self.metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_int() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() && a <= 1 << 20 => a as u64,
                _ => return Err(GgufError::BadAlignment(v.to_string())),
            },
        };
        let header_end = self.base;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let header = GgufHeader {
            version: self.version,
            metadata: std::mem::take(&mut self.metadata),
            tensors: std::mem::take(&mut self.tensors),
            alignment,
            data_offset,
        };
        header.validate_layout(self.total_len)?;
        Ok(header)
    }
}

/// Parses the header of a complete in-memory GGUF file (or at least its header bytes, if
/// `total_len` is given separately).
pub fn parse_header(bytes: &[u8], total_len: Option<u64>) -> Result<GgufHeader, GgufError> {
    let total = total_len.unwrap_or(bytes.len() as u64);
    let mut p = HeaderParser::new(Some(total));
    match p.feed(bytes)? {
        Progress::Done(h) => Ok(*h),
        Progress::NeedMore => Err(GgufError::Truncated {
            what: "header".into(),
            offset: bytes.len() as u64,
            needed: p.needed.saturating_sub(bytes.len() as u64).max(1),
        }),
    }
}
