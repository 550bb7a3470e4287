//! GGUF: the file format of llama.cpp models. Header parsing (incremental, for streams), typed
//! metadata, tensor byte ranges, and llama.cpp's gguf-split shard layout.
//!
//! The data path starts here: bytes → [`HeaderParser`] → [`GgufHeader`] (metadata + tensor
//! ranges) → [`TensorRouter`] hands each tensor's bytes to whoever uploads or dequantizes them.

#[cfg(not(target_arch = "wasm32"))]
mod file;
mod reader;
mod route;
mod split;
mod value;
mod writer;

#[cfg(not(target_arch = "wasm32"))]
pub use file::{GgufFile, TensorRef};
pub use reader::{parse_header, HeaderParser, Progress, DEFAULT_ALIGNMENT, MAX_DIMS};
pub use route::{TensorChunk, TensorRouter};
pub use split::{shard_name, split_name_parts, SplitInfo};
pub use value::{Metadata, MetadataError, Value, ValueType};
pub use writer::{header_bytes, padding, split_into_shards, str_array, GgufWriter, TensorEntry};

use crate::quant::GgmlType;

/// Everything that can be wrong with a GGUF file or shard set.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: magic bytes are {0:02x?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (versions 2 and 3 are supported)")]
    UnsupportedVersion(u32),
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("GGUF file is truncated: {what} at byte {offset} needs {needed} more bytes")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
    },
    #[error("GGUF {what} of {count} at byte {offset} is impossible: {}", match remaining { Some(r) => format!("only {r} bytes remain in the file"), None => "it exceeds the format's sane limits".to_string() })]
    CountTooLarge {
        what: String,
        count: u64,
        offset: u64,
        remaining: Option<u64>,
    },
    #[error("GGUF {what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },
    #[error("GGUF metadata key '{key}' has unknown value type {type_id}")]
    InvalidValueType { key: String, type_id: u32 },
    #[error("GGUF metadata key '{key}': {detail}")]
    InvalidValue { key: String, detail: String },
    #[error("GGUF metadata key '{0}' appears twice")]
    DuplicateKey(String),
    #[error("GGUF tensor '{0}' appears twice")]
    DuplicateTensor(String),
    #[error("tensor '{tensor}' has unknown ggml type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error("tensor '{tensor}': {detail}")]
    BadTensor { tensor: String, detail: String },
    #[error("general.alignment must be a power of two, got {0}")]
    BadAlignment(String),
    #[error("tensor '{tensor}' data [{start}, {end}) lies outside the file's {file_len} bytes")]
    TensorOutOfRange {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error(
        "tensor '{tensor}' data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    TensorMisaligned {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensors '{a}' and '{b}' overlap in the file")]
    TensorOverlap { a: String, b: String },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("split GGUF: {0}")]
    Split(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl GgufError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            GgufError::Io { .. } => "IO_ERROR",
            GgufError::Split(_) => "BAD_SPLIT",
            GgufError::UnknownTensorType { .. } => "UNSUPPORTED_TENSOR_TYPE",
            _ => "BAD_GGUF",
        }
    }
}

/// One tensor as described by the header. `offset` is relative to the data section.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (row) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    pub offset: u64,
    /// Bytes of data, derived from dims and type.
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header: metadata, tensor infos and where the data section starts.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the tensor data section.
    pub data_offset: u64,
}

impl GgufHeader {
    /// Absolute byte range of a tensor in its file.
    pub fn tensor_range(&self, t: &TensorInfo) -> std::ops::Range<u64> {
        let start = self.data_offset + t.offset;
        start..start + t.size
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Bytes the whole file should have: the end of the last tensor (or of the header).
    pub fn expected_file_len(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| self.tensor_range(t).end)
            .max()
            .unwrap_or(self.data_offset)
    }

    /// Split-layout keys, if this file is one shard of a split model.
    pub fn split(&self) -> Result<Option<SplitInfo>, GgufError> {
        SplitInfo::from_metadata(&self.metadata)
    }

    /// Checks alignment, overlap and (when the file length is known) bounds of every tensor.
    pub fn validate_layout(&self, file_len: Option<u64>) -> Result<(), GgufError> {
        let mut order: Vec<&TensorInfo> = self.tensors.iter().collect();
        order.sort_by_key(|t| t.offset);
        for t in &order {
            if t.offset % self.alignment != 0 {
                return Err(GgufError::TensorMisaligned {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    alignment: self.alignment,
                });
            }
            let end = self
                .data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.size));
            match (end, file_len) {
                (None, _) => {
                    return Err(GgufError::TensorOutOfRange {
                        tensor: t.name.clone(),
                        start: t.offset,
                        end: u64::MAX,
                        file_len: file_len.unwrap_or(0),
                    })
                }
                (Some(end), Some(len)) if end > len => {
                    return Err(GgufError::TensorOutOfRange {
                        tensor: t.name.clone(),
                        start: self.data_offset + t.offset,
                        end,
                        file_len: len,
                    })
                }
                _ => {}
            }
        }
        // Empty tensors occupy nothing; left in, one between two overlapping tensors hid the
        // overlap from this pairwise check.
        order.retain(|t| t.size > 0);
        for w in order.windows(2) {
            if w[0].offset + w[0].size > w[1].offset {
                return Err(GgufError::TensorOverlap {
                    a: w[0].name.clone(),
                    b: w[1].name.clone(),
                });
            }
        }
        Ok(())
    }
}
