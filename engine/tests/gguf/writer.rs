//! A minimal GGUF writer for the reader's tests: metadata values, tensors, the file's bytes.

/// Metadata values the test writer can emit.
#[derive(Clone)]
pub enum M {
    U32(u32),
    // Written by gguf_families.rs only (the file is included by several test crates).
    #[allow(dead_code)]
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(&'static str),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    // Written by tokenizer_spm.rs only (the file is included by two test crates).
    #[allow(dead_code)]
    F32s(Vec<f32>),
    /// Any value as the reader returns it (a file's metadata copied into another).
    #[allow(dead_code)]
    Value(dlp_engine::loader::gguf::GgufValue),
}

/// GGUF's type number of a metadata value.
fn value_type(v: &dlp_engine::loader::gguf::GgufValue) -> u32 {
    use dlp_engine::loader::gguf::GgufValue as V;
    match v {
        V::U8(_) => 0,
        V::I8(_) => 1,
        V::U16(_) => 2,
        V::I16(_) => 3,
        V::U32(_) => 4,
        V::I32(_) => 5,
        V::F32(_) => 6,
        V::Bool(_) => 7,
        V::Str(_) => 8,
        V::Array(_) => 9,
        V::U64(_) => 10,
        V::I64(_) => 11,
        V::F64(_) => 12,
    }
}

/// A metadata value's bytes after its type number (an array: its elements' type, an empty
/// one's taken as u32, the count, the elements).
fn put_value(b: &mut Vec<u8>, v: &dlp_engine::loader::gguf::GgufValue) {
    use dlp_engine::loader::gguf::GgufValue as V;
    match v {
        V::U8(x) => b.push(*x),
        V::I8(x) => b.extend(x.to_le_bytes()),
        V::U16(x) => b.extend(x.to_le_bytes()),
        V::I16(x) => b.extend(x.to_le_bytes()),
        V::U32(x) => b.extend(x.to_le_bytes()),
        V::I32(x) => b.extend(x.to_le_bytes()),
        V::F32(x) => b.extend(x.to_le_bytes()),
        V::Bool(x) => b.push(*x as u8),
        V::Str(s) => put_str(b, s),
        V::Array(a) => {
            b.extend(a.first().map_or(4, value_type).to_le_bytes());
            b.extend((a.len() as u64).to_le_bytes());
            a.iter().for_each(|e| put_value(b, e));
        }
        V::U64(x) => b.extend(x.to_le_bytes()),
        V::I64(x) => b.extend(x.to_le_bytes()),
        V::F64(x) => b.extend(x.to_le_bytes()),
    }
}

#[derive(Clone)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub data: Vec<u8>,
}

/// A minimal GGUF writer (v2/v3 layout, alignment 32).
#[derive(Clone)]
pub struct Writer {
    pub version: u32,
    pub kv: Vec<(String, M)>,
    pub tensors: Vec<Tensor>,
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

impl Writer {
    /// `g` as it is: its metadata (but `general.alignment`: this writer aligns to 32, GGUF's
    /// default) and its tensors' bytes as stored.
    #[allow(dead_code)]
    pub fn copy_of(g: &dlp_engine::loader::gguf::GgufFile) -> Writer {
        let kv = (g.metadata.iter())
            .filter(|(k, _)| k.as_str() != "general.alignment")
            .map(|(k, v)| (k.clone(), M::Value(v.clone())))
            .collect();
        let tensors = (g.tensors.iter())
            .map(|t| Tensor {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ggml_type,
                data: g.tensor_bytes(t).unwrap().to_vec(),
            })
            .collect();
        Writer {
            version: g.version,
            kv,
            tensors,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_and_header_len().0
    }

    /// The file, and where its tensor data starts.
    pub fn bytes_and_header_len(&self) -> (Vec<u8>, usize) {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut b, k);
            match v {
                M::U32(x) => {
                    b.extend(4u32.to_le_bytes());
                    b.extend(x.to_le_bytes());
                }
                M::U64(x) => {
                    b.extend(10u32.to_le_bytes());
                    b.extend(x.to_le_bytes());
                }
                M::F32(x) => {
                    b.extend(6u32.to_le_bytes());
                    b.extend(x.to_le_bytes());
                }
                M::Bool(x) => {
                    b.extend(7u32.to_le_bytes());
                    b.push(*x as u8);
                }
                M::Str(s) => {
                    b.extend(8u32.to_le_bytes());
                    put_str(&mut b, s);
                }
                M::Strs(v) => {
                    b.extend(9u32.to_le_bytes());
                    b.extend(8u32.to_le_bytes());
                    b.extend((v.len() as u64).to_le_bytes());
                    v.iter().for_each(|s| put_str(&mut b, s));
                }
                M::I32s(v) => {
                    b.extend(9u32.to_le_bytes());
                    b.extend(5u32.to_le_bytes());
                    b.extend((v.len() as u64).to_le_bytes());
                    v.iter().for_each(|x| b.extend(x.to_le_bytes()));
                }
                M::F32s(v) => {
                    b.extend(9u32.to_le_bytes());
                    b.extend(6u32.to_le_bytes());
                    b.extend((v.len() as u64).to_le_bytes());
                    v.iter().for_each(|x| b.extend(x.to_le_bytes()));
                }
                M::Value(v) => {
                    b.extend(value_type(v).to_le_bytes());
                    put_value(&mut b, v);
                }
            }
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend((t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
            b.extend(t.ty.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offset = (offset + t.data.len() as u64).div_ceil(32) * 32;
        }
        let header_len = b.len();
        for (i, t) in self.tensors.iter().enumerate() {
            b.resize(b.len().div_ceil(32) * 32, 0);
            b.extend(&t.data);
            // The last tensor ends the file, so any truncation cuts into data.
            if i + 1 < self.tensors.len() {
                b.resize(b.len().div_ceil(32) * 32, 0);
            }
        }
        (b, header_len)
    }
}
