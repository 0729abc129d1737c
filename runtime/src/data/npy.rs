//! A small reader of NumPy `.npy` files (format versions 1, 2 and 3): float32 or float64, little
//! endian, C order.

use crate::error::{Result, RuntimeError};
use std::path::Path;

/// A float array read from a `.npy` file, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads a `.npy` file; its header is checked against the file's length before the data is read.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = super::files::read_sized(path, |head, len| Ok(npy_header(head, len, path)?.need))?;
    parse_npy(&bytes, path)
}

fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    let colon = rest.find(':')?;
    Some(rest[colon + 1..].trim_start())
}

/// What a `.npy` header says.
struct Header {
    shape: Vec<usize>,
    /// Bytes per element: 4 or 8.
    elem: usize,
    data_start: usize,
    /// The length the whole file must have.
    need: u64,
}

/// Parses the header at the start of `bytes` (which must hold all of it) of a file of `len` bytes.
fn npy_header(bytes: &[u8], len: u64, path: &Path) -> Result<Header> {
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
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err(format!(
                    "truncated at byte {}: the v{major} preamble needs 12 bytes",
                    bytes.len()
                )));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(err(format!("unsupported .npy format version {v}"))),
    };
    let data_start = start.saturating_add(header_len);
    if bytes.len() < data_start {
        return Err(err(format!("truncated at byte {}: header ends at byte {data_start}", bytes.len())));
    }
    let header = std::str::from_utf8(&bytes[start..data_start])
        .map_err(|_| err("header is not text".into()))?
        .replace('"', "'");
    let descr = header_value(&header, "descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or_else(|| err(format!("header has no 'descr': {header}")))?;
    let elem = match descr {
        "<f4" => 4,
        "<f8" => 8,
        ">f4" | ">f8" => return Err(err(format!("wrong dtype {descr}: big-endian data is not supported"))),
        other => return Err(err(format!("wrong dtype {other} (expected float32 <f4 or float64 <f8)"))),
    };
    let fortran =
        header_value(&header, "fortran_order").ok_or_else(|| err("header has no 'fortran_order'".into()))?;
    if fortran.starts_with("True") {
        return Err(err("Fortran-order arrays are not supported (save in C order)".into()));
    }
    let shape_text = header_value(&header, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| err(format!("header has no 'shape' tuple: {header}")))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| err(format!("bad shape entry {s:?}"))))
        .collect::<Result<Vec<usize>>>()?;
    let need = super::files::checked_size(path, &shape, elem, data_start)?;
    if len < need {
        return Err(err(format!("truncated at byte {len}: shape {shape:?} needs {need} bytes")));
    }
    if len > need {
        return Err(err(format!("{} trailing bytes after the data of shape {shape:?}", len - need)));
    }
    Ok(Header { shape, elem, data_start, need })
}

/// Parses the bytes of a `.npy` file; `path` names the file in errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<NpyArray> {
    let Header { shape, elem, data_start, .. } = npy_header(bytes, bytes.len() as u64, path)?;
    let body = &bytes[data_start..];
    let data = if elem == 4 {
        body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    };
    Ok(NpyArray { shape, data })
}
