//! GGUF metadata values and typed access to them.

use std::collections::HashMap;
use std::fmt;

/// The value type tags of GGUF metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The fewest bytes one value of this type can occupy in a file; bounds untrusted counts.
    pub(crate) fn min_encoded_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// One GGUF metadata value. Arrays may nest.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type and elements (all of that type).
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer type (writers disagree on u32 vs i32 vs u64), as i128 so nothing is lost.
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v as i128,
            Value::I8(v) => v as i128,
            Value::U16(v) => v as i128,
            Value::I16(v) => v as i128,
            Value::U32(v) => v as i128,
            Value::I32(v) => v as i128,
            Value::U64(v) => v as i128,
            Value::I64(v) => v as i128,
            Value::Bool(v) => v as i128,
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, items) => Some(items),
            _ => None,
        }
    }

    /// A short human-readable rendering; long arrays are summarized.
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) if s.chars().count() > 80 => {
                format!(
                    "{:?}… ({} bytes)",
                    s.chars().take(60).collect::<String>(),
                    s.len()
                )
            }
            Value::String(s) => format!("{s:?}"),
            Value::Array(t, items) if items.len() > 8 => format!("[{:?}; {}]", t, items.len()),
            Value::Array(_, items) => {
                let parts: Vec<String> = items.iter().map(|v| v.summary()).collect();
                format!("[{}]", parts.join(", "))
            }
            other => format!("{other}"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Array(..) => f.write_str(&self.summary()),
        }
    }
}

/// A metadata key that is missing or has the wrong type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    #[error("GGUF metadata key '{0}' is missing")]
    Missing(String),
    #[error("GGUF metadata key '{key}' should be {expected}, found {found:?}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: ValueType,
    },
}

impl MetadataError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        "BAD_GGUF"
    }
}

/// The key/value section of a GGUF header, in file order.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// Inserts a pair; returns false (and keeps the first value) if the key is already present.
    pub fn insert(&mut self, key: String, value: Value) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        true
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn require(&self, key: &str) -> Result<&Value, MetadataError> {
        self.get(key)
            .ok_or_else(|| MetadataError::Missing(key.to_string()))
    }

    fn wrong(key: &str, expected: &'static str, v: &Value) -> MetadataError {
        MetadataError::WrongType {
            key: key.to_string(),
            expected,
            found: v.value_type(),
        }
    }

    /// An integer value that must fit in u64.
    pub fn u64(&self, key: &str) -> Result<u64, MetadataError> {
        let v = self.require(key)?;
        v.as_int()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| Self::wrong(key, "a non-negative integer", v))
    }

    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>, MetadataError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        self.u64(key).map(Some)
    }

    pub fn f32(&self, key: &str) -> Result<f32, MetadataError> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| Self::wrong(key, "a number", v))
    }

    pub fn f32_opt(&self, key: &str) -> Result<Option<f32>, MetadataError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        self.f32(key).map(Some)
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>, MetadataError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| Self::wrong(key, "a bool", v)),
        }
    }

    pub fn str(&self, key: &str) -> Result<&str, MetadataError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "a string", v))
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&str>, MetadataError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        self.str(key).map(Some)
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>, MetadataError> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| Self::wrong(key, "an array of strings", v))?;
        items
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| Self::wrong(key, "an array of strings", v))
            })
            .collect()
    }

    /// An array of numbers, converted to f32.
    pub fn f32_array(&self, key: &str) -> Result<Vec<f32>, MetadataError> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| Self::wrong(key, "an array of numbers", v))?;
        items
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| Self::wrong(key, "an array of numbers", v))
            })
            .collect()
    }

    /// An array of integers, converted to i64.
    pub fn i64_array(&self, key: &str) -> Result<Vec<i64>, MetadataError> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| Self::wrong(key, "an array of integers", v))?;
        items
            .iter()
            .map(|x| {
                x.as_int()
                    .and_then(|i| i64::try_from(i).ok())
                    .ok_or_else(|| Self::wrong(key, "an array of integers", v))
            })
            .collect()
    }
}
