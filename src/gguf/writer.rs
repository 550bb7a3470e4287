//! Writing GGUF files: used to make test files, synthetic models and gguf-split shards.

use super::{shard_name, GgufHeader, Value, ValueType, DEFAULT_ALIGNMENT};
use crate::quant::GgmlType;
use std::io::{self, Write};

/// A GGUF file being assembled: metadata in order, then tensors with their data.
pub struct GgufWriter<'a> {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<(String, Vec<u64>, GgmlType, &'a [u8])>,
    pub alignment: u64,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }
}

fn put_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn put_value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[*x as u8]),
        Value::String(s) => put_str(w, s),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Array(t, items) => {
            w.write_all(&(*t as u32).to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|i| put_value(w, i))
        }
    }
}

impl<'a> GgufWriter<'a> {
    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: &'a [u8]) -> &mut Self {
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, data));
        self
    }

    /// Writes the whole file (GGUF v3). Tensor data is padded to the alignment.
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let entries: Vec<TensorEntry> = self
            .tensors
            .iter()
            .map(|(name, dims, ty, data)| TensorEntry {
                name,
                dims,
                ggml_type: *ty,
                size: data.len() as u64,
            })
            .collect();
        let (head, alignment) = header_bytes(&self.metadata, &entries, self.alignment);
        w.write_all(&head)?;
        for (_, _, _, data) in &self.tensors {
            w.write_all(data)?;
            w.write_all(&vec![0u8; padding(data.len() as u64, alignment) as usize])?;
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v).expect("writing to a Vec cannot fail");
        v
    }
}

/// One tensor's entry in a header written ahead of its data (see [`header_bytes`]).
#[derive(Clone, Copy, Debug)]
pub struct TensorEntry<'n> {
    pub name: &'n str,
    /// ggml order: `dims[0]` is the contiguous (row) dimension.
    pub dims: &'n [u64],
    pub ggml_type: GgmlType,
    /// Bytes of data that will follow for this tensor (before padding).
    pub size: u64,
}

/// Zero bytes that pad `len` up to a multiple of `alignment`.
pub fn padding(len: u64, alignment: u64) -> u64 {
    len.div_ceil(alignment) * alignment - len
}

/// The header of a GGUF v3 file whose tensor data is written separately, e.g. streamed tensor
/// by tensor: magic, counts, metadata, tensor infos (offsets laid out from each entry's `size`,
/// each padded to the alignment) and padding up to the data section. Returns the header and the
/// alignment the data must follow: a `general.alignment` key wins over `alignment`, so the file
/// is consistent with what it declares. After it, write each tensor's `size` bytes in entry
/// order, each followed by [`padding`]`(size, alignment)` zero bytes, as [`GgufWriter::write`] does.
pub fn header_bytes(
    metadata: &[(String, Value)],
    tensors: &[TensorEntry],
    alignment: u64,
) -> (Vec<u8>, u64) {
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    let vec_ok = "writing to a Vec cannot fail";
    for (k, v) in metadata {
        put_str(&mut head, k).expect(vec_ok);
        head.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        put_value(&mut head, v).expect(vec_ok);
    }
    let alignment = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_int())
        .map_or(alignment, |a| a as u64);
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut head, t.name).expect(vec_ok);
        head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in t.dims {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&t.ggml_type.id().to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offset += t.size + padding(t.size, alignment);
    }
    let pad = padding(head.len() as u64, alignment);
    head.resize(head.len() + pad as usize, 0);
    (head, alignment)
}

/// Splits one GGUF (header plus a tensor-data lookup) into gguf-split shards of at most
/// `max_bytes` of tensor data each (a tensor is never split). Shard 0 carries all metadata;
/// every shard carries the `split.*` keys. Returns (file name, bytes) per shard.
pub fn split_into_shards<'a>(
    header: &GgufHeader,
    data: impl Fn(&str) -> &'a [u8],
    prefix: &str,
    max_bytes: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, t) in header.tensors.iter().enumerate() {
        if size > 0 && size + t.size > max_bytes {
            groups.push(Vec::new());
            size = 0;
        }
        groups.last_mut().expect("non-empty").push(i);
        size += t.size;
    }
    let count = groups.len() as u32;
    groups
        .iter()
        .enumerate()
        .map(|(no, idx)| {
            let mut w = GgufWriter {
                alignment: header.alignment,
                ..Default::default()
            };
            if no == 0 {
                for (k, v) in header.metadata.iter() {
                    if !k.starts_with("split.") {
                        w.kv(k, v.clone());
                    }
                }
            }
            w.kv("split.no", Value::U16(no as u16));
            w.kv("split.count", Value::U16(count as u16));
            w.kv(
                "split.tensors.count",
                Value::I32(header.tensors.len() as i32),
            );
            for &i in idx {
                let t = &header.tensors[i];
                w.tensor(&t.name, &t.dims, t.ggml_type, data(&t.name));
            }
            (shard_name(prefix, no as u32, count), w.to_bytes())
        })
        .collect()
}

/// A string-array value (e.g. for `tokenizer.ggml.tokens`).
pub fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(
        ValueType::String,
        items
            .iter()
            .map(|s| Value::String(s.as_ref().to_string()))
            .collect(),
    )
}
