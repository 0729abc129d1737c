//! NumPy `.npy` and `.npz` files, read by candle's own reader (`candle_core::npy`): every dtype candle
//! reads (float16/32/64, int16/32/64, uint8/32, bool), converted to f32; `.npz` archives as `np.savez`
//! writes them (stored, not compressed).
//!
//! candle trusts a header: it allocates what the shape asks for before reading, and an overflowing shape
//! panics. So sr reads every header first and refuses it unless it parses, under candle's own rules, to a
//! shape whose size (checked arithmetic) is exactly the bytes that follow; only then does candle read.

use super::open::{checked_size, open_regular, MAX_HEADER};
use crate::error::{Result, RuntimeError};
use candle_core::{DType, Tensor};
use std::io::Read;
use std::path::Path;

/// A numeric array read from a `.npy` file or a `.npz` member, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads a `.npy` file; its header is checked against the file's length before candle reads the data.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let (file, len) = open_regular(path)?;
    let head = read_head(file, len, path)?;
    let header = npy_header(&head, len, path)?;
    let tensor = Tensor::read_npy(path).map_err(|e| candle_error(path, e))?;
    to_array(tensor, &header, path)
}

/// Reads the array `key` (the member `key.npy`) of a `.npz` archive, or its only array when `key` is
/// `None`; the member's header is checked against the member's size before candle reads it.
pub fn read_npz(path: &Path, key: Option<&str>) -> Result<NpyArray> {
    let err = |what: String| RuntimeError::data_file(path, what);
    let (file, len) = open_regular(path)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| err(format!("not a .npz (zip) archive: {e}")))?;
    let mut names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().and_then(|n| n.strip_suffix(".npy").map(str::to_string)))
        .collect();
    names.sort();
    let key = match key {
        Some(k) => k.to_string(),
        None if names.len() == 1 => names[0].clone(),
        None => return Err(err(format!("holds arrays {names:?}: set `key` to choose one"))),
    };
    let index = zip
        .index_for_name(&format!("{key}.npy"))
        .ok_or_else(|| err(format!("no array `{key}` (arrays: {names:?})")))?;
    // Read raw first: a compressed member cannot be opened for reading without the codecs.
    let raw = zip.by_index_raw(index).map_err(|e| err(format!("array `{key}`: {e}")))?;
    if raw.compression() != zip::CompressionMethod::Stored {
        return Err(err(format!(
            "array `{key}` is compressed ({:?}): save with np.savez, not np.savez_compressed",
            raw.compression()
        )));
    }
    let size = raw.size();
    if size > len || raw.compressed_size() != size {
        return Err(err(format!("array `{key}` claims {size} bytes, the archive has {len}")));
    }
    drop(raw);
    let member = zip.by_index(index).map_err(|e| err(format!("array `{key}`: {e}")))?;
    let head = read_head(member, size, path)?;
    let header = npy_header(&head, size, path).map_err(|e| match e {
        RuntimeError::DataFile { path, what } => {
            RuntimeError::DataFile { path, what: format!("array `{key}`: {what}") }
        }
        other => other,
    })?;
    let mut tensors = Tensor::read_npz_by_name(path, &[key.as_str()]).map_err(|e| candle_error(path, e))?;
    let tensor = tensors.pop().ok_or_else(|| err(format!("no array `{key}`")))?;
    to_array(tensor, &header, path)
}

/// The first bytes of a file or member of `len` bytes: enough for any header sr accepts.
fn read_head(reader: impl Read, len: u64, path: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    reader.take(len.min(MAX_HEADER)).read_to_end(&mut head).map_err(|e| RuntimeError::io(path, e))?;
    Ok(head)
}

fn candle_error(path: &Path, e: candle_core::Error) -> RuntimeError {
    RuntimeError::data_file(path, format!("numpy reader: {e}"))
}

/// The array candle read, as f32, after checking it has the shape sr validated.
fn to_array(tensor: Tensor, header: &Header, path: &Path) -> Result<NpyArray> {
    if tensor.dims() != header.shape.as_slice() || tensor.dtype() != header.dtype {
        return Err(RuntimeError::data_file(
            path,
            format!(
                "changed while being read: {:?} {:?} instead of {:?} {:?}",
                tensor.dtype(),
                tensor.dims(),
                header.dtype,
                header.shape
            ),
        ));
    }
    let data = tensor
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| candle_error(path, e))?;
    Ok(NpyArray { shape: header.shape.clone(), data })
}

/// What a `.npy` header says.
#[derive(Debug)]
pub(crate) struct Header {
    shape: Vec<usize>,
    dtype: DType,
}

/// The dtype of a header's `descr`, by the rules of candle's reader.
fn dtype_of(descr: &str) -> std::result::Result<DType, String> {
    if descr.starts_with('>') {
        return Err(format!("wrong dtype {descr}: big-endian data is not supported"));
    }
    Ok(match descr.trim_matches(|c: char| c == '=' || c == '<' || c == '|') {
        "e" | "f2" => DType::F16,
        "f" | "f4" => DType::F32,
        "d" | "f8" => DType::F64,
        "h" | "i2" => DType::I16,
        "i" | "i4" => DType::I32,
        "q" | "i8" => DType::I64,
        "B" | "u1" | "?" | "b1" => DType::U8,
        "I" | "u4" => DType::U32,
        _ => {
            return Err(format!(
                "wrong dtype {descr} (expected float16/32/64, int16/32/64, uint8/32 or bool)"
            ))
        }
    })
}

/// Splits a header dictionary into its entries the way candle's reader does (commas outside
/// parentheses, then one colon), but refuses what candle would read differently from sr: a repeated
/// key (candle keeps the last), an entry without exactly one colon, unbalanced parentheses.
fn entries(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let body = text.trim_matches(|c: char| c == '{' || c == '}' || c == ',' || c.is_whitespace());
    let mut parts = Vec::new();
    let (mut start, mut depth) = (0usize, 0i64);
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err("unbalanced parentheses".into());
        }
    }
    parts.push(&body[start..]);
    let mut out: Vec<(String, String)> = Vec::new();
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let [key, value] = part.split(':').collect::<Vec<_>>()[..] else {
            return Err(format!("cannot read the entry {part:?}"));
        };
        let quote = |c: char| c == '\'' || c.is_whitespace();
        let (key, value) = (key.trim_matches(quote), value.trim_matches(quote));
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("the key '{key}' appears twice"));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Parses the header at the start of `bytes` (which must hold all of it) of a file or member of `len`
/// bytes, and checks that the data after it has exactly the size its shape and dtype need.
pub(crate) fn npy_header(bytes: &[u8], len: u64, path: &Path) -> Result<Header> {
    let err = |what: String| RuntimeError::data_file(path, what);
    if bytes.len() < 10 {
        return Err(err(format!("truncated at byte {}: the .npy preamble needs 10 bytes", bytes.len())));
    }
    if &bytes[..6] != b"\x93NUMPY" {
        return Err(err(format!("bad magic number {:02x?} (expected \\x93NUMPY)", &bytes[..6])));
    }
    let major = bytes[6];
    let (header_len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 => {
            if bytes.len() < 12 {
                return Err(err(format!(
                    "truncated at byte {}: the v2 preamble needs 12 bytes",
                    bytes.len()
                )));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(err(format!("unsupported .npy format version {v} (expected 1 or 2)"))),
    };
    let data_start = start.saturating_add(header_len);
    if data_start as u64 > MAX_HEADER {
        return Err(err(format!("a header of {header_len} bytes: at most {MAX_HEADER} are read")));
    }
    if bytes.len() < data_start {
        return Err(err(format!("truncated at byte {}: header ends at byte {data_start}", bytes.len())));
    }
    let text =
        std::str::from_utf8(&bytes[start..data_start]).map_err(|_| err("header is not text".into()))?;
    let entries = entries(text).map_err(|e| err(format!("bad header ({e}): {text}")))?;
    let get = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let descr = get("descr").ok_or_else(|| err(format!("header has no 'descr': {text}")))?;
    let dtype = dtype_of(descr).map_err(err)?;
    match get("fortran_order") {
        None | Some("False") => {}
        Some("True") => return Err(err("Fortran-order arrays are not supported (save in C order)".into())),
        Some(other) => return Err(err(format!("bad fortran_order {other:?}"))),
    }
    let shape_text = get("shape").ok_or_else(|| err(format!("header has no 'shape': {text}")))?;
    let shape_text = shape_text.trim_matches(|c: char| c == '(' || c == ')' || c == ',');
    let shape = if shape_text.is_empty() {
        Vec::new()
    } else {
        shape_text
            .split(',')
            .map(|s| s.trim().parse::<usize>().map_err(|_| err(format!("bad shape entry {s:?}"))))
            .collect::<Result<Vec<usize>>>()?
    };
    let need = checked_size(path, &shape, dtype.size_in_bytes(), data_start)?;
    if len < need {
        return Err(err(format!("truncated at byte {len}: shape {shape:?} needs {need} bytes")));
    }
    if len > need {
        return Err(err(format!("{} trailing bytes after the data of shape {shape:?}", len - need)));
    }
    Ok(Header { shape, dtype })
}
