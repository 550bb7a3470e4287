//! Native access to GGUF files on disk: header parsed through the same incremental parser the
//! browser uses, tensor data memory-mapped, split shards discovered from the first one.

use super::{
    shard_name, split_name_parts, GgufError, GgufHeader, HeaderParser, Progress, TensorInfo,
};
use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

struct Shard {
    path: PathBuf,
    header: GgufHeader,
    map: Mmap,
}

/// A GGUF file opened from disk, with the other shards of a split model: its headers, and its
/// tensors memory-mapped (what the model is, `crate::model` reads from it).
pub struct GgufFile {
    shards: Vec<Shard>,
    /// Tensor name → (shard, index in that shard's header).
    index: HashMap<String, (usize, usize)>,
    /// Tensor names in file order across shards.
    order: Vec<String>,
}

/// A tensor's info and its bytes in the mapped file.
pub struct TensorRef<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

fn io_err(path: &Path, source: std::io::Error) -> GgufError {
    GgufError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_header(path: &Path) -> Result<(GgufHeader, Mmap), GgufError> {
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let len = f.metadata().map_err(|e| io_err(path, e))?.len();
    let mut parser = HeaderParser::new(Some(len));
    let mut buf = vec![0u8; 1 << 20];
    let header = loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break *parser.finish()?;
        }
        if let Progress::Done(h) = parser.feed(&buf[..n])? {
            break *h;
        }
    };
    // SAFETY: the file is opened read-only; like llama.cpp we assume it is not truncated while mapped.
    let map = unsafe { Mmap::map(&f) }.map_err(|e| io_err(path, e))?;
    Ok((header, map))
}

impl GgufFile {
    /// Opens a GGUF file. If it is the first shard of a gguf-split set, the siblings next to it
    /// are opened too and checked for consistency.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let (header, map) = read_header(path)?;
        let mut shards = vec![Shard {
            path: path.to_path_buf(),
            header,
            map,
        }];
        if let Some(split) = shards[0].header.split()? {
            if split.index != 0 {
                return Err(GgufError::Split(format!(
                    "{} is shard {} of {}; open the first shard",
                    path.display(),
                    split.index + 1,
                    split.count
                )));
            }
            let name = path.to_string_lossy();
            let (prefix, _, count, _) = split_name_parts(&name).ok_or_else(|| {
                GgufError::Split(format!("{} has split.count {} but its name is not in the NAME-00001-of-0000N.gguf form", path.display(), split.count))
            })?;
            if count != split.count {
                return Err(GgufError::Split(format!(
                    "file name says {count} shards but split.count is {}",
                    split.count
                )));
            }
            for i in 1..split.count {
                let p = PathBuf::from(shard_name(&prefix, i, split.count));
                if !p.exists() {
                    return Err(GgufError::Split(format!(
                        "missing shard {} of {}: {}",
                        i + 1,
                        split.count,
                        p.display()
                    )));
                }
                let (header, map) = read_header(&p)?;
                match header.split()? {
                    Some(s) if s.index == i && s.count == split.count => {}
                    other => {
                        return Err(GgufError::Split(format!(
                            "{} should be shard {} of {}, but its split keys say {:?}",
                            p.display(),
                            i + 1,
                            split.count,
                            other.map(|s| (s.index + 1, s.count))
                        )))
                    }
                }
                shards.push(Shard {
                    path: p,
                    header,
                    map,
                });
            }
            let total: usize = shards.iter().map(|s| s.header.tensors.len()).sum();
            if split.tensors_total != 0 && split.tensors_total != total as u64 {
                return Err(GgufError::Split(format!(
                    "split.tensors.count is {} but the shards hold {total} tensors",
                    split.tensors_total
                )));
            }
        }
        let mut index = HashMap::new();
        let mut order = Vec::new();
        for (si, s) in shards.iter().enumerate() {
            s.header.validate_layout(Some(s.map.len() as u64))?;
            for (ti, t) in s.header.tensors.iter().enumerate() {
                match index.insert(t.name.clone(), (si, ti)) {
                    // The parser rejects repeats inside one shard; across shards it is a mixed-up set.
                    Some((earlier, _)) if earlier != si => {
                        return Err(GgufError::Split(format!(
                            "tensor '{}' is in shard {} and again in shard {}: the shards are mixed up",
                            t.name,
                            earlier + 1,
                            si + 1
                        )))
                    }
                    Some(_) => return Err(GgufError::DuplicateTensor(t.name.clone())),
                    None => {}
                }
                order.push(t.name.clone());
            }
        }
        Ok(GgufFile {
            shards,
            index,
            order,
        })
    }

    /// The first shard's header; it holds all model metadata.
    pub fn header(&self) -> &GgufHeader {
        &self.shards[0].header
    }

    pub fn metadata(&self) -> &super::Metadata {
        &self.shards[0].header.metadata
    }

    pub fn shard_paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// Total bytes across all shard files.
    pub fn file_size(&self) -> u64 {
        self.shards.iter().map(|s| s.map.len() as u64).sum()
    }

    /// All tensors, in file order across shards.
    pub fn tensors(&self) -> impl Iterator<Item = TensorRef<'_>> {
        self.order.iter().map(|n| self.tensor(n).expect("indexed"))
    }

    pub fn tensor(&self, name: &str) -> Option<TensorRef<'_>> {
        let &(si, ti) = self.index.get(name)?;
        let s = &self.shards[si];
        let info = &s.header.tensors[ti];
        let r = s.header.tensor_range(info);
        Some(TensorRef {
            info,
            data: &s.map[r.start as usize..r.end as usize],
        })
    }
}
