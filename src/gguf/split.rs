//! llama.cpp's gguf-split layout: `name-00001-of-00003.gguf`, each shard a full GGUF with its own
//! tensors, and `split.*` keys saying which shard it is.

use super::{GgufError, Metadata};

/// The `split.*` keys of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitInfo {
    /// 0-based shard index (`split.no`).
    pub index: u32,
    /// Number of shards (`split.count`).
    pub count: u32,
    /// Tensors across all shards (`split.tensors.count`).
    pub tensors_total: u64,
}

impl SplitInfo {
    pub fn from_metadata(m: &Metadata) -> Result<Option<SplitInfo>, GgufError> {
        let Some(count) = m.u64_opt("split.count")? else {
            return Ok(None);
        };
        let index = m.u64("split.no")?;
        let tensors_total = m.u64_opt("split.tensors.count")?.unwrap_or(0);
        if count == 0 || count > 99_999 || index >= count {
            return Err(GgufError::Split(format!(
                "split.no {index} / split.count {count} is inconsistent"
            )));
        }
        Ok(Some(SplitInfo {
            index: index as u32,
            count: count as u32,
            tensors_total,
        }))
    }
}

/// The name of shard `index` (0-based) of `count` for a prefix, as gguf-split writes it.
pub fn shard_name(prefix: &str, index: u32, count: u32) -> String {
    format!("{prefix}-{:05}-of-{:05}.gguf", index + 1, count)
}

/// Splits `prefix-0000k-of-0000n.gguf` (a path or URL, optionally with `?query`) into
/// (prefix, 0-based index, count, suffix after `.gguf`).
pub fn split_name_parts(name: &str) -> Option<(String, u32, u32, String)> {
    let (path, query) = match name.find(['?', '#']) {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    let stem = path.strip_suffix(".gguf")?;
    // "-00001-of-00003" is 15 characters.
    if stem.len() < 15 || !stem.is_char_boundary(stem.len() - 15) {
        return None;
    }
    let (prefix, tail) = stem.split_at(stem.len() - 15);
    let b = tail.as_bytes();
    if b[0] != b'-' || &tail[6..10] != "-of-" {
        return None;
    }
    let no: u32 = tail[1..6].parse().ok()?;
    let count: u32 = tail[10..15].parse().ok()?;
    if no == 0
        || no > count
        || !tail[1..6].bytes().all(|c| c.is_ascii_digit())
        || !tail[10..15].bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some((prefix.to_string(), no - 1, count, query.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(shard_name("m/Llama", 0, 3), "m/Llama-00001-of-00003.gguf");
        let (p, i, n, q) =
            split_name_parts("https://x/y/Llama-00002-of-00003.gguf?download=1").unwrap();
        assert_eq!(
            (p.as_str(), i, n, q.as_str()),
            ("https://x/y/Llama", 1, 3, "?download=1")
        );
        assert!(split_name_parts("model.gguf").is_none());
        assert!(split_name_parts("a-00004-of-00003.gguf").is_none());
        assert!(split_name_parts("a-0000x-of-00003.gguf").is_none());
    }
}
