//! Bounded fuzzing of every file loader (npy, npz, IDX, CIFAR-10, safetensors, images) with proptest:
//! random bytes and mutations of valid files give a value or a data-file error, never a panic, an abort
//! or an allocation a header asks for without the bytes to back it. NumPy files go through the whole
//! reader (sr's header check, then candle's reader) from real files.

use super::files::{cifar_size, decode_image, idx_size, safetensors_size};
use super::npy::npy_header;
use super::open::checked_size;
use super::tests::npz_bytes;
use super::testutil::temp_dir;
use super::{read_idx, read_npy, read_npz, PointsDataset};
use crate::error::RuntimeError;
use proptest::prelude::*;
use std::path::Path;

const P: &str = "fuzz.bin";

fn npy_bytes(shape: &str, body: &[u8]) -> Vec<u8> {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn idx_bytes(dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

fn safetensors_bytes() -> Vec<u8> {
    let t =
        candle_core::Tensor::arange(0f32, 6.0, &candle_core::Device::Cpu).unwrap().reshape((2, 3)).unwrap();
    safetensors::serialize([("x", &t)], None).unwrap()
}

fn png_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Applies `edits` (position, new byte) and a cut to `bytes`.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(at, b) in edits {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] = b;
        }
    }
    let keep = bytes.len().saturating_sub(cut % 8);
    bytes.truncate(keep);
    bytes
}

/// Reads `bytes` as a `.npy` file and as a `.npz` archive, from files named after `tag`; a value or a
/// data-file error, never a panic.
fn load_numpy_files(tag: &str, bytes: &[u8]) {
    let dir = std::env::temp_dir().join(format!("sr-fuzz-numpy-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let npy = dir.join("a.npy");
    std::fs::write(&npy, bytes).unwrap();
    let _ = read_npy(&npy);
    let npz = dir.join("a.npz");
    std::fs::write(&npz, npz_bytes(&[("points", bytes.to_vec())], false)).unwrap();
    let _ = read_npz(&npz, None);
    std::fs::write(&npz, bytes).unwrap();
    let _ = read_npz(&npz, Some("points"));
}

/// Runs every loader on `bytes`; the only acceptable failures are coded errors.
fn load_everything(bytes: &[u8]) {
    let path = Path::new(P);
    let len = bytes.len() as u64;
    let _ = npy_header(bytes, len, path);
    for ndim in 1..4 {
        let _ = idx_size(bytes, len, ndim, path);
    }
    let _ = cifar_size(len, path);
    if safetensors_size(bytes, len, path).is_ok() {
        let _ = safetensors::SafeTensors::deserialize(bytes);
    }
    let _ = decode_image(bytes, 4, path);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_crash_a_loader(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        load_everything(&bytes);
        load_numpy_files("random", &bytes);
    }

    #[test]
    fn mutated_files_never_crash_a_loader(
        which in 0usize..6,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let valid = match which {
            0 => npy_bytes("2, 3,", &[0; 24]),
            1 => idx_bytes(&[2, 3, 4], &[1; 24]),
            2 => safetensors_bytes(),
            3 => png_bytes(),
            4 => npz_bytes(&[("points", npy_bytes("2, 3,", &[0; 24]))], false),
            _ => npz_bytes(&[("a", npy_bytes("2,", &[0; 8])), ("b", npy_bytes("1, 1,", &[0; 4]))], false),
        };
        let bytes = mutate(valid, &edits, cut);
        load_everything(&bytes);
        if which == 0 {
            load_numpy_files("mutated-npy", &bytes);
        }
        if which >= 4 {
            let dir = std::env::temp_dir().join(format!("sr-fuzz-npz-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let npz = dir.join("m.npz");
            std::fs::write(&npz, &bytes).unwrap();
            let _ = read_npz(&npz, None);
            let _ = read_npz(&npz, Some("a"));
        }
    }

    /// Dimensions from a header whose product overflows are refused, not wrapped.
    #[test]
    fn header_sizes_are_checked(dims in prop::collection::vec(any::<u32>(), 1..4)) {
        let dims: Vec<usize> = dims.into_iter().map(|d| d as usize).collect();
        let exact = dims.iter().try_fold(4u128, |a, &d| Some(a * d as u128)).unwrap() + 16;
        match checked_size(Path::new(P), &dims, 4, 16) {
            Ok(n) => prop_assert_eq!(n as u128, exact),
            Err(_) => prop_assert!(exact > u64::MAX as u128),
        }
    }
}

fn is_data_error(r: Result<impl std::fmt::Debug, RuntimeError>, needle: &str) {
    match r {
        Err(RuntimeError::DataFile { what, .. }) => assert!(what.contains(needle), "{what}"),
        other => panic!("expected a data-file error containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn overflowing_headers_are_refused_before_the_body_is_read() {
    let dir = temp_dir("overflow");
    // A shape whose product wraps to a small number in 64 bits.
    let npy = dir.join("wrap.npy");
    std::fs::write(&npy, npy_bytes("4294967296, 4294967296, 1,", &[0; 16])).unwrap();
    is_data_error(read_npy(&npy), "overflow");
    let idx = dir.join("wrap-idx3-ubyte");
    std::fs::write(&idx, idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[0; 16])).unwrap();
    is_data_error(read_idx(&idx, 3), "overflow");
    // A header that claims more than the file holds is refused from the file's length.
    std::fs::write(&npy, npy_bytes("1000000, 1000,", &[0; 16])).unwrap();
    is_data_error(read_npy(&npy), "truncated");
    let st = dir.join("big.safetensors");
    let mut bytes = safetensors_bytes();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&st, &bytes).unwrap();
    is_data_error(PointsDataset::load(&st, None), "header claims");
    // A PNG header claiming 100000 × 100000 pixels is refused by the decoder's limits.
    let mut png = png_bytes();
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    assert!(decode_image(&png, 4, Path::new(P)).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn special_files_are_refused() {
    is_data_error(read_npy(Path::new("/dev/zero")), "not a regular file");
    is_data_error(read_idx(Path::new("/dev/zero"), 1), "not a regular file");
    let dir = temp_dir("fifo");
    let fifo = dir.join("points.npy");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    is_data_error(PointsDataset::load(&fifo, None), "not a regular file");
    std::fs::remove_dir_all(&dir).unwrap();
}
