//! Opening data files safely: regular files only, and a body read only after its header said how long
//! the file must be (shared by the format loaders in `files` and the NumPy reader in `npy`).

use crate::error::{Result, RuntimeError};
use std::io::Read;
use std::path::Path;

/// Largest header read before a data file's body: its sizes are checked against the file's length first.
pub(crate) const MAX_HEADER: u64 = 1 << 20;

/// Opens `path` for reading when it is a regular file (not a folder, pipe or device) and returns it
/// with its length.
pub(crate) fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| RuntimeError::io(path, e))?;
    if !meta.is_file() {
        return Err(RuntimeError::data_file(path, "not a regular file (a folder, pipe or device)"));
    }
    let file = std::fs::File::open(path).map_err(|e| RuntimeError::io(path, e))?;
    let len = file.metadata().map_err(|e| RuntimeError::io(path, e))?.len();
    Ok((file, len))
}

/// Reads a data file whose header says how long it is: first at most [`MAX_HEADER`] bytes, which
/// `expected` turns into the exact length the file must have (or an error), then the body, never more
/// than that length. A file whose header is wrong is refused before its body is read.
pub(crate) fn read_sized(path: &Path, expected: impl FnOnce(&[u8], u64) -> Result<u64>) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    let mut bytes = Vec::new();
    let mut reader = file.take(len);
    (&mut reader).take(len.min(MAX_HEADER)).read_to_end(&mut bytes).map_err(|e| RuntimeError::io(path, e))?;
    let need = expected(&bytes, len)?;
    if need != len {
        return Err(RuntimeError::data_file(path, format!("{len} bytes, but its header says {need}")));
    }
    let rest = usize::try_from(need - bytes.len() as u64)
        .map_err(|_| RuntimeError::data_file(path, format!("{need} bytes do not fit in memory")))?;
    bytes
        .try_reserve_exact(rest)
        .map_err(|_| RuntimeError::data_file(path, format!("{need} bytes do not fit in memory")))?;
    reader.read_to_end(&mut bytes).map_err(|e| RuntimeError::io(path, e))?;
    if bytes.len() as u64 != need {
        return Err(RuntimeError::data_file(
            path,
            format!("truncated at byte {} while reading", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// The product of `dims` times `elem` plus `head`, or an error naming the dimensions when it overflows.
pub(crate) fn checked_size(path: &Path, dims: &[usize], elem: usize, head: usize) -> Result<u64> {
    dims.iter()
        .try_fold(elem as u64, |acc, &d| acc.checked_mul(d as u64))
        .and_then(|n| n.checked_add(head as u64))
        .ok_or_else(|| RuntimeError::data_file(path, format!("dimensions {dims:?} overflow a 64-bit size")))
}
