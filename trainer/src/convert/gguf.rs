//! The GGUF container (versions 2 and 3, little-endian): header, metadata, tensor table, data.
//!
//! Layout (ggml's `docs/gguf.md`): `GGUF` magic, a u32 version, u64 tensor and metadata counts, the
//! metadata key/value pairs, the tensor table (name, dims fastest-moving first, ggml type, offset
//! into the data section), padding to `general.alignment` (default 32), then the tensor data. Every
//! read is bounds-checked, so a cut file is an error naming what was being read, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::ConvertError;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer that fits in a u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// A float as written. An f32 widens exactly, as Python widens it, so `1e-5` stored as f32
    /// becomes `9.999999747378752e-06` in config.json, the value transformers writes too.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor of the table.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// In PyTorch order (slowest-moving first): ggml's dims reversed.
    pub shape: Vec<u64>,
    pub ggml_type: u32,
    /// Absolute position of the first byte in the file.
    pub start: usize,
    pub nbytes: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A GGUF file, memory-mapped.
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    map: Mmap,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf").field("path", &self.path).field("version", &self.version).field("tensors", &self.tensors.len()).finish()
    }
}

/// The ggml tensor types by id: name, elements per block, bytes per block. Ids absent here were
/// removed from ggml (4, 5, 31-33, 36-38).
pub const GGML_TYPES: &[(u32, &str, usize, usize)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

/// `(name, elements per block, bytes per block)` of a ggml type id.
pub fn ggml_type(id: u32) -> Option<(&'static str, usize, usize)> {
    GGML_TYPES.iter().find(|t| t.0 == id).map(|&(_, n, e, b)| (n, e, b))
}

/// The name of a ggml type id, for messages.
pub fn ggml_type_name(id: u32) -> String {
    ggml_type(id).map(|t| t.0.to_string()).unwrap_or_else(|| format!("#{id}"))
}

/// A bounds-checked little-endian reader over the mapped file.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], ConvertError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(ConvertError::Truncated {
                path: self.path.to_path_buf(),
                message: format!("the file ends at byte {} while reading {} ({n} bytes at byte {})", self.buf.len(), what(), self.pos),
            }),
        }
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, ConvertError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// A length that must fit in what is left of the file: a garbage length fails here, before
    /// anything is allocated for it.
    fn len(&mut self, unit: usize, what: &dyn Fn() -> String) -> Result<usize, ConvertError> {
        let n = self.u64(what)?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(unit as u64) > left {
            return Err(ConvertError::Truncated {
                path: self.path.to_path_buf(),
                message: format!("{} claims {n} items but only {left} bytes are left (at byte {})", what(), self.pos),
            });
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, ConvertError> {
        let n = self.len(1, what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ConvertError::Invalid(format!("{}: {} is not UTF-8", self.path.display(), what())))
    }

    fn value(&mut self, ty: u32, what: &dyn Fn() -> String) -> Result<Value, ConvertError> {
        let b = |c: &mut Self, n| c.take(n, what);
        Ok(match ty {
            0 => Value::U8(b(self, 1)?[0]),
            1 => Value::I8(b(self, 1)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(b(self, 2)?.try_into().expect("2"))),
            3 => Value::I16(i16::from_le_bytes(b(self, 2)?.try_into().expect("2"))),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(b(self, 4)?.try_into().expect("4"))),
            6 => Value::F32(f32::from_le_bytes(b(self, 4)?.try_into().expect("4"))),
            7 => Value::Bool(b(self, 1)?[0] != 0),
            8 => Value::String(self.string(what)?),
            9 => {
                let elem = self.u32(what)?;
                if elem == 9 {
                    return Err(ConvertError::Invalid(format!("{}: {} is an array of arrays, which GGUF metadata does not use", self.path.display(), what())));
                }
                // Every element takes at least one byte (a string at least its 8-byte length).
                let n = self.len(if elem == 8 { 8 } else { 1 }, what)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(elem, what)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(b(self, 8)?.try_into().expect("8"))),
            12 => Value::F64(f64::from_le_bytes(b(self, 8)?.try_into().expect("8"))),
            other => {
                return Err(ConvertError::Invalid(format!("{}: {} has unknown value type {other}", self.path.display(), what())));
            }
        })
    }
}

impl Gguf {
    /// Maps and parses a file: everything but the tensor data, which is read when asked for.
    pub fn open(path: &Path) -> Result<Gguf, ConvertError> {
        let io = |source| ConvertError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: read-only map, alive as long as `Gguf`; the file is not modified while converting.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (version, metadata, tensors) = parse(&map, path)?;
        Ok(Gguf { path: path.to_path_buf(), version, metadata, tensors, map })
    }

    /// The raw bytes of a tensor.
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        &self.map[t.start..t.start + t.nbytes]
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, ConvertError> {
        self.get("general.architecture").and_then(Value::as_str).ok_or_else(|| {
            ConvertError::Invalid(format!("{}: no string `general.architecture` in the metadata", self.path.display()))
        })
    }
}

/// What [`parse`] reads: the version, the metadata and the tensor table.
type Parsed = (u32, HashMap<String, Value>, Vec<TensorInfo>);

fn parse(buf: &[u8], path: &Path) -> Result<Parsed, ConvertError> {
    if buf.len() < 4 || &buf[..4] != b"GGUF" {
        return Err(ConvertError::NotGguf { path: path.to_path_buf() });
    }
    let mut c = Cursor { buf, pos: 4, path };
    let version = c.u32(&|| "the version".into())?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(ConvertError::Invalid(format!(
            "{}: a big-endian GGUF (v{}); only little-endian files are supported (convert it with gguf-convert-endian)",
            path.display(),
            version.swap_bytes()
        )));
    }
    if version != 2 && version != 3 {
        return Err(ConvertError::Invalid(format!("{}: GGUF version {version} is not supported (2 and 3 are)", path.display())));
    }
    let tensor_count = c.u64(&|| "the tensor count".into())?;
    let kv_count = c.u64(&|| "the metadata count".into())?;
    let mut metadata = HashMap::new();
    for i in 0..kv_count {
        let key = c.string(&|| format!("the key of metadata entry {i}"))?;
        let what = || format!("metadata `{key}`");
        let ty = c.u32(&what)?;
        let v = c.value(ty, &what)?;
        metadata.insert(key, v);
    }
    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a as usize,
            _ => return Err(ConvertError::Invalid(format!("{}: general.alignment must be a power of two, found {v:?}", path.display()))),
        },
    };
    // (name, ggml dims, type, offset) as the table states them.
    let mut table = Vec::new();
    for i in 0..tensor_count {
        let name = c.string(&|| format!("the name of tensor {i}"))?;
        let what = || format!("the entry of tensor `{name}`");
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > 4 {
            return Err(ConvertError::Invalid(format!("{}: tensor `{name}` has {n_dims} dimensions (1 to 4 expected)", path.display())));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64(&what)?);
        }
        let ty = c.u32(&what)?;
        let offset = c.u64(&what)?;
        table.push((name, dims, ty, offset));
    }
    let data_start = c.pos.div_ceil(alignment) * alignment;
    let mut tensors = Vec::with_capacity(table.len());
    for (name, dims, ty, offset) in table {
        let numel = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).filter(|&n| n > 0).ok_or_else(|| {
            ConvertError::Invalid(format!("{}: tensor `{name}` has dimensions {dims:?}", path.display()))
        })?;
        let nbytes = match ggml_type(ty) {
            Some((_, per_block, bytes)) => {
                if dims[0] % per_block as u64 != 0 {
                    return Err(ConvertError::Invalid(format!(
                        "{}: tensor `{name}` ({}) has rows of {} values, not a multiple of its block of {per_block}",
                        path.display(),
                        ggml_type_name(ty),
                        dims[0]
                    )));
                }
                numel / per_block as u64 * bytes as u64
            }
            // Sized later if it is ever read: the error then names the tensor and its type.
            None => 0,
        };
        if offset % alignment as u64 != 0 {
            return Err(ConvertError::Invalid(format!("{}: tensor `{name}` starts at offset {offset}, not aligned to {alignment}", path.display())));
        }
        let start = (data_start as u64).checked_add(offset);
        let end = start.and_then(|s| s.checked_add(nbytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= buf.len() as u64 => tensors.push(TensorInfo {
                name,
                shape: dims.into_iter().rev().collect(),
                ggml_type: ty,
                start: s as usize,
                nbytes: nbytes as usize,
            }),
            _ => {
                return Err(ConvertError::Truncated {
                    path: path.to_path_buf(),
                    message: format!(
                        "tensor `{name}` needs bytes {data_start}+{offset}..+{nbytes} but the file has {} bytes",
                        buf.len()
                    ),
                });
            }
        }
    }
    Ok((version, metadata, tensors))
}
