//! Routes a byte stream's data section to tensors, so a loader can upload each tensor as its
//! bytes arrive without ever holding the whole file.

use super::GgufHeader;

/// A piece of one tensor's data.
#[derive(Debug, PartialEq)]
pub struct TensorChunk<'a> {
    /// Index into `GgufHeader::tensors`.
    pub tensor: usize,
    /// Offset of `bytes` within the tensor's data.
    pub offset: u64,
    pub bytes: &'a [u8],
    /// Whether this chunk completes the tensor.
    pub last: bool,
}

/// Maps absolute file offsets to tensor pieces. Padding between tensors is skipped.
pub struct TensorRouter {
    /// (absolute start, absolute end, tensor index) of the non-empty tensors, sorted by start.
    /// The header parser rejects overlapping non-empty tensors, so the ends are sorted too, which
    /// `route`'s binary search relies on. Empty tensors get no bytes and may sit anywhere (even
    /// inside another tensor), so they are left out rather than break that order.
    spans: Vec<(u64, u64, usize)>,
}

impl TensorRouter {
    pub fn new(header: &GgufHeader) -> Self {
        let mut spans: Vec<(u64, u64, usize)> = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let r = header.tensor_range(t);
                (r.start, r.end, i)
            })
            .filter(|&(s, e, _)| s < e)
            .collect();
        spans.sort_unstable();
        TensorRouter { spans }
    }

    /// Splits a chunk that starts at absolute file offset `at` into tensor pieces, in order.
    pub fn route<'a>(&self, at: u64, chunk: &'a [u8]) -> Vec<TensorChunk<'a>> {
        let end = at + chunk.len() as u64;
        // First span that ends after `at`.
        let first = self.spans.partition_point(|&(_, e, _)| e <= at);
        let mut out = Vec::new();
        for &(s, e, idx) in &self.spans[first..] {
            if s >= end {
                break;
            }
            let lo = s.max(at);
            let hi = e.min(end);
            if lo < hi {
                out.push(TensorChunk {
                    tensor: idx,
                    offset: lo - s,
                    bytes: &chunk[(lo - at) as usize..(hi - at) as usize],
                    last: hi == e,
                });
            }
        }
        out
    }
}
