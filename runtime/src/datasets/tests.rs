//! Tests of the loaders (small files written here in each format, then corrupted) and the generators.

use super::testutil::temp_dir;
use super::*;
use crate::error::RuntimeError;
use crate::registry::build_dataset;
use sr_compiler::plan::PValue;
use std::collections::BTreeMap;
use std::path::Path;

/// The plan parameters of dataset `name`: the catalogue defaults with `kv` on top.
fn params(name: &str, kv: &[(&str, PValue)]) -> BTreeMap<String, PValue> {
    crate::pvalue::plan_params(sr_compiler::catalogue::Kind::Dataset, name, kv)
}

/// The plan parameters of `points` reading `file`, with `kv` on top. The model checks the file's shape
/// against `points` and `dim`, the dataset does not.
fn points_params(file: &Path, kv: &[(&str, PValue)]) -> BTreeMap<String, PValue> {
    let mut p =
        params("points", &[("path", path_param(file)), ("points", PValue::Int(1)), ("dim", PValue::Int(1))]);
    p.extend(kv.iter().map(|(k, v)| (k.to_string(), v.clone())));
    p
}

fn path_param(p: &Path) -> PValue {
    PValue::Str(p.to_string_lossy().into_owned())
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn write_mnist(dir: &Path, prefix: &str, n: usize) {
    let images: Vec<u8> = (0..n * 784).map(|i| (i % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), idx_bytes(&[n as u32, 28, 28], &images))
        .unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx_bytes(&[n as u32], &labels)).unwrap();
}

fn data_file_error(r: Result<Box<dyn Dataset>>) -> (String, String) {
    match r {
        Err(RuntimeError::DataFile { path, what }) => (path.display().to_string(), what),
        Err(e) => panic!("expected a data-file error, got {e}"),
        Ok(_) => panic!("expected a data-file error, got a dataset"),
    }
}

#[test]
fn mnist_round_trip_and_errors() {
    let dir = temp_dir("mnist");
    write_mnist(&dir, "train", 12);
    write_mnist(&dir, "t10k", 3);
    let p = params("mnist", &[("path", path_param(&dir))]);
    let d = build_dataset("mnist", &p, 0).unwrap();
    assert_eq!(d.raw_shape(), vec![1, 28, 28]);
    assert_eq!(d.len(), Some(12));
    let s = d.get(11).unwrap();
    assert_eq!(s.label, Some(Label::Class(1)));
    let first = (11 * 784 % 256) as f32;
    assert!((s.data[0] - (first / 127.5 - 1.0)).abs() < 1e-6);
    let t = build_dataset(
        "mnist",
        &params("mnist", &[("path", path_param(&dir)), ("split", PValue::Str("test".into()))]),
        0,
    )
    .unwrap();
    assert_eq!(t.len(), Some(3));
    assert!(matches!(d.get(12), Err(RuntimeError::IndexOutOfRange { .. })));

    let images = dir.join("train-images-idx3-ubyte");
    let good = std::fs::read(&images).unwrap();
    let mut bad = good.clone();
    bad[0] = 0x1f;
    std::fs::write(&images, &bad).unwrap();
    let (path, what) = data_file_error(build_dataset("mnist", &p, 0));
    assert!(path.ends_with("train-images-idx3-ubyte") && what.contains("bad magic number"), "{what}");
    let mut bad = good.clone();
    bad[2] = 0x0d;
    std::fs::write(&images, &bad).unwrap();
    assert!(data_file_error(build_dataset("mnist", &p, 0)).1.contains("wrong dtype"));
    std::fs::write(&images, &good[..good.len() - 100]).unwrap();
    let (_, what) = data_file_error(build_dataset("mnist", &p, 0));
    assert!(what.contains(&format!("truncated at byte {}", good.len() - 100)), "{what}");
    std::fs::remove_file(&images).unwrap();
    let (path, what) = data_file_error(build_dataset("mnist", &p, 0));
    assert!(path.ends_with("train-images-idx3-ubyte") && what.contains("missing"), "{what}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sudoku_image_from_mnist() {
    let dir = temp_dir("sudoku-mnist");
    write_mnist(&dir, "train", 20);
    let p = params("sudoku_image", &[("mnist", path_param(&dir))]);
    let d = build_dataset("sudoku_image", &p, 0).unwrap();
    let s = d.get(0).unwrap();
    assert_eq!(s.data.len(), 252 * 252);
    // Too few digits: a labels file without any 7.
    let labels: Vec<u8> = (0..20).map(|i| if i % 10 == 7 { 1 } else { (i % 10) as u8 }).collect();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx_bytes(&[20], &labels)).unwrap();
    let (_, what) = data_file_error(build_dataset("sudoku_image", &p, 0));
    assert!(what.contains("digit 7"), "{what}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cifar_round_trip_and_errors() {
    let dir = temp_dir("cifar");
    let record = |label: u8, fill: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, 3072));
        r
    };
    let mut batch1 = record(3, 0);
    batch1.extend(record(9, 255));
    std::fs::write(dir.join("data_batch_1.bin"), &batch1).unwrap();
    std::fs::write(dir.join("data_batch_2.bin"), record(5, 51)).unwrap();
    std::fs::write(dir.join("test_batch.bin"), record(1, 10)).unwrap();
    let p = params("cifar10", &[("path", path_param(&dir))]);
    let d = build_dataset("cifar10", &p, 0).unwrap();
    assert_eq!(d.len(), Some(3));
    assert_eq!(d.raw_shape(), vec![3, 32, 32]);
    let s = d.get(1).unwrap();
    assert_eq!(s.label, Some(Label::Class(9)));
    assert!(s.data.iter().all(|&v| v == 1.0));
    assert_eq!(d.get(0).unwrap().data[0], -1.0);
    assert_eq!(d.get(2).unwrap().label, Some(Label::Class(5)));

    std::fs::write(dir.join("data_batch_2.bin"), &record(5, 51)[..3000]).unwrap();
    let (path, what) = data_file_error(build_dataset("cifar10", &p, 0));
    assert!(path.ends_with("data_batch_2.bin") && what.contains("truncated at byte 3000"), "{what}");
    std::fs::write(dir.join("data_batch_2.bin"), record(12, 0)).unwrap();
    assert!(data_file_error(build_dataset("cifar10", &p, 0)).1.contains("bad label 12"));
    std::fs::remove_file(dir.join("test_batch.bin")).unwrap();
    let test = params("cifar10", &[("path", path_param(&dir)), ("split", PValue::Str("test".into()))]);
    assert!(matches!(build_dataset("cifar10", &test, 0), Err(RuntimeError::Io { .. })));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn image_folder_round_trip_and_errors() {
    let dir = temp_dir("folder");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let red = image::RgbImage::from_pixel(40, 20, image::Rgb([255, 0, 0]));
    red.save(dir.join("a.png")).unwrap();
    let blue = image::RgbImage::from_pixel(16, 16, image::Rgb([0, 0, 255]));
    blue.save(dir.join("sub").join("b.jpg")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let p = params("image_folder", &[("path", path_param(&dir)), ("size", PValue::Int(8))]);
    let d = build_dataset("image_folder", &p, 0).unwrap();
    assert_eq!(d.len(), Some(2));
    assert_eq!(d.raw_shape(), vec![3, 8, 8]);
    let a = d.get(0).unwrap();
    assert_eq!(a.data.len(), 3 * 64);
    assert!(a.data[..64].iter().all(|&v| v > 0.99) && a.data[64..].iter().all(|&v| v < -0.99));
    let b = d.get(1).unwrap();
    assert!(b.data[128..].iter().all(|&v| v > 0.9), "jpeg blue channel");

    std::fs::write(dir.join("a.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    match d.get(0) {
        Err(RuntimeError::Image { path, .. }) => assert!(path.ends_with("a.png")),
        other => panic!("expected an image error, got {other:?}"),
    }
    let empty = temp_dir("folder-empty");
    let (_, what) = data_file_error(build_dataset(
        "image_folder",
        &params("image_folder", &[("path", path_param(&empty))]),
        0,
    ));
    assert!(what.contains("no PNG"), "{what}");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&empty).ok();
}

fn npy_bytes(major: u8, descr: &str, shape: &[usize], body: &[u8]) -> Vec<u8> {
    let shape_text = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let pre = if major == 1 { 10 } else { 12 };
    while (pre + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([major, 0]);
    if major == 1 {
        out.extend((header.len() as u16).to_le_bytes());
    } else {
        out.extend((header.len() as u32).to_le_bytes());
    }
    out.extend(header.as_bytes());
    out.extend(body);
    out
}

#[test]
fn npy_points_round_trip_and_errors() {
    let dir = temp_dir("npy");
    let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    let f32_body: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f64_body: Vec<u8> = values.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect();
    let file = dir.join("p.npy");
    std::fs::write(&file, npy_bytes(1, "<f4", &[2, 4, 3], &f32_body)).unwrap();
    let p = points_params(&file, &[]);
    let d = build_dataset("points", &p, 0).unwrap();
    assert_eq!((d.len(), d.raw_shape()), (Some(2), vec![4, 3]));
    assert_eq!(d.get(1).unwrap().data, values[12..]);
    std::fs::write(&file, npy_bytes(2, "<f8", &[4, 6], &f64_body)).unwrap();
    let d = build_dataset("points", &p, 0).unwrap();
    assert_eq!((d.len(), d.raw_shape()), (Some(1), vec![4, 6]));
    assert_eq!(d.get(0).unwrap().data, values);

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"NUMPY!\x01\x00\x10\x00".to_vec(), "bad magic number"),
        (npy_bytes(1, "<c8", &[4, 6], &f64_body), "wrong dtype <c8"),
        (npy_bytes(1, ">f4", &[4, 6], &f32_body), "big-endian"),
        (npy_bytes(1, "<f4", &[4, 6], &f32_body[..50]), "truncated at byte"),
        (npy_bytes(1, "<f4", &[24], &f32_body), "expected [N, D]"),
        (b"\x93NUMPY\x01".to_vec(), "truncated at byte 7"),
    ];
    for (bytes, expected) in cases {
        std::fs::write(&file, bytes).unwrap();
        let (path, what) = data_file_error(build_dataset("points", &p, 0));
        assert!(path.ends_with("p.npy") && what.contains(expected), "{what} !~ {expected}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A stored `.npz` of `members`, as `np.savez` writes it; `deflate` marks every member compressed
/// (its bytes are left as they are: the reader must refuse before reading them).
pub(super) fn npz_bytes(members: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members {
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    let mut bytes = out.into_inner();
    if deflate {
        // Compression method 8 (deflate) in every local and central header.
        for sig in [&b"PK\x03\x04"[..], &b"PK\x01\x02"[..]] {
            let at: Vec<usize> =
                bytes.windows(4).enumerate().filter(|(_, w)| *w == sig).map(|(i, _)| i).collect();
            for i in at {
                let off = if sig[2] == 3 { 8 } else { 10 };
                bytes[i + off] = 8;
            }
        }
    }
    bytes
}

/// candle's reader behind sr's header check: int64, float16 and bool arrays, `.npz` archives with and
/// without `key`, and the refusals (compressed members, a repeated header key, an unknown member).
#[test]
fn numpy_dtypes_and_npz_archives() {
    let dir = temp_dir("npz");
    let values: Vec<f32> = (0..6).map(|i| i as f32 - 2.0).collect();
    let i64_body: Vec<u8> = values.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
    let npy = dir.join("p.npy");
    std::fs::write(&npy, npy_bytes(1, "<i8", &[2, 3], &i64_body)).unwrap();
    let a = read_npy(&npy).unwrap();
    assert_eq!((a.shape.as_slice(), a.data.as_slice()), (&[2, 3][..], values.as_slice()));
    // float16, as candle writes it.
    let t = candle_core::Tensor::from_slice(&values, (2, 3), &candle_core::Device::Cpu).unwrap();
    t.to_dtype(candle_core::DType::F16).unwrap().write_npy(&npy).unwrap();
    assert_eq!(read_npy(&npy).unwrap().data, values);
    let f16_npy = std::fs::read(&npy).unwrap();
    std::fs::write(&npy, npy_bytes(1, "|b1", &[2, 3], &[1, 0, 1, 1, 0, 0])).unwrap();
    assert_eq!(read_npy(&npy).unwrap().data, [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]);

    let npz = dir.join("p.npz");
    let points = npy_bytes(1, "<i8", &[2, 3], &i64_body);
    std::fs::write(&npz, npz_bytes(&[("points", points.clone())], false)).unwrap();
    assert_eq!(read_npz(&npz, None).unwrap().data, values);
    let p = points_params(&npz, &[]);
    let d = build_dataset("points", &p, 0).unwrap();
    assert_eq!((d.len(), d.raw_shape()), (Some(1), vec![2, 3]));
    let two = npz_bytes(&[("points", points.clone()), ("labels", f16_npy)], false);
    std::fs::write(&npz, two).unwrap();
    assert_eq!(read_npz(&npz, Some("labels")).unwrap().data, values);
    let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
        (npz_bytes(&[("a", points.clone()), ("b", points.clone())], false), None, "set `key`"),
        (npz_bytes(&[("a", points.clone())], false), Some("b"), "no array `b`"),
        (npz_bytes(&[("points", points.clone())], true), None, "np.savez_compressed"),
        (npz_bytes(&[("points", points[..points.len() - 8].to_vec())], false), None, "truncated"),
        (b"PK\x05\x06 not a zip".to_vec(), None, "not a .npz"),
    ];
    for (bytes, key, expected) in cases {
        std::fs::write(&npz, bytes).unwrap();
        match read_npz(&npz, key) {
            Err(RuntimeError::DataFile { what, .. }) => {
                assert!(what.contains(expected), "{what} !~ {expected}")
            }
            other => panic!("expected an error containing {expected:?}, got {other:?}"),
        }
    }

    // A header that candle would read differently from sr (its last `shape` wins) is refused.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'shape': (4000000000,), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend([0; 4]);
    std::fs::write(&npy, bytes).unwrap();
    match read_npy(&npy) {
        Err(RuntimeError::DataFile { what, .. }) => assert!(what.contains("appears twice"), "{what}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn safetensors_points_round_trip_and_errors() {
    use safetensors::tensor::TensorView;
    let dir = temp_dir("safetensors");
    let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let body: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let ints: Vec<u8> = (0..12i32).flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![
        ("pts", TensorView::new(safetensors::Dtype::F32, vec![3, 2, 2], &body).unwrap()),
        ("ids", TensorView::new(safetensors::Dtype::I32, vec![12], &ints).unwrap()),
    ];
    let file = dir.join("p.safetensors");
    std::fs::write(&file, safetensors::tensor::serialize(tensors, None).unwrap()).unwrap();
    let with_key = |k: &str| points_params(&file, &[("key", PValue::Str(k.into()))]);
    let d = build_dataset("points", &with_key("pts"), 0).unwrap();
    assert_eq!((d.len(), d.raw_shape()), (Some(3), vec![2, 2]));
    assert_eq!(d.get(2).unwrap().data, values[8..]);
    assert!(data_file_error(build_dataset("points", &with_key("nope"), 0)).1.contains("no tensor `nope`"));
    assert!(data_file_error(build_dataset("points", &with_key("ids"), 0)).1.contains("wrong dtype"));
    assert!(data_file_error(PointsDataset::load(&file, None).map(|d| Box::new(d) as Box<dyn Dataset>))
        .1
        .contains("set `key`"));
    std::fs::write(&file, b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage").unwrap();
    assert!(data_file_error(build_dataset("points", &with_key("pts"), 0))
        .1
        .contains("not a safetensors file"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn even_pixels_exactly_half_each_hue() {
    let d = build_dataset("even_pixels", &params("even_pixels", &[]), 5).unwrap();
    assert_eq!(d.raw_shape(), vec![3, 32, 32]);
    for i in 0..10 {
        let s = d.get(i).unwrap();
        let n = 1024;
        let mut colours: Vec<[i32; 3]> = (0..n)
            .map(|p| std::array::from_fn(|c| ((s.data[c * n + p] + 1.0) * 500.0).round() as i32))
            .collect();
        colours.sort();
        colours.dedup();
        assert_eq!(colours.len(), 2);
        let count_first = (0..n)
            .filter(|&p| (0..3).all(|c| ((s.data[c * n + p] + 1.0) * 500.0).round() as i32 == colours[0][c]))
            .count();
        assert_eq!(count_first, 512);
        let hues: Vec<f32> =
            colours.iter().map(|c| rgb_to_hsv(std::array::from_fn(|k| c[k] as f32 / 1000.0))[0]).collect();
        let diff = (hues[0] - hues[1]).rem_euclid(1.0);
        assert!((diff - 0.5).abs() < 0.01, "{hues:?}");
    }
}

#[test]
fn counting_labels_within_ranges() {
    for name in ["counting_polygons", "counting_stars"] {
        let p = params(name, &[("min_count", PValue::Int(2)), ("max_count", PValue::Int(5))]);
        let d = build_dataset(name, &p, 1).unwrap();
        assert_eq!(d.raw_shape(), vec![3, 64, 64]);
        for i in 0..20 {
            let s = d.get(i).unwrap();
            match s.label {
                Some(Label::Counting { count, vertices }) => {
                    assert!((2..=5).contains(&count) && (3..=7).contains(&vertices));
                }
                other => panic!("{other:?}"),
            }
            assert!(s.data.iter().all(|v| (-1.0..=1.0).contains(v)));
        }
    }
    // Crowded small images place as many shapes as fit and label the number drawn.
    let crowded = params(
        "counting_stars",
        &[("size", PValue::Int(16)), ("min_count", PValue::Int(64)), ("max_count", PValue::Int(64))],
    );
    let d = build_dataset("counting_stars", &crowded, 0).unwrap();
    match d.get(0).unwrap().label {
        Some(Label::Counting { count, .. }) => assert!((1..64).contains(&count), "{count}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn moving_shapes_move_and_stay_inside() {
    let d = build_dataset("moving_shapes", &params("moving_shapes", &[]), 2).unwrap();
    assert_eq!(d.raw_shape(), vec![8, 1, 32, 32]);
    for i in 0..10 {
        let s = d.get(i).unwrap();
        let frames: Vec<&[f32]> = s.data.chunks(1024).collect();
        assert_eq!(frames.len(), 8);
        for f in &frames {
            let ink: f32 = f.iter().map(|v| (v + 1.0) / 2.0).sum();
            assert!(ink > 10.0, "every frame shows shapes");
        }
        let change: f32 = frames[0].iter().zip(frames[7]).map(|(a, b)| (a - b).abs()).sum();
        assert!(change > 1.0, "shapes move");
    }
}

#[test]
fn batcher_shapes_determinism_and_epochs() {
    let dev = candle_core::Device::Cpu;
    let d = build_dataset("sudoku", &params("sudoku", &[("count", PValue::Int(10))]), 0).unwrap();
    let batcher = Batcher::new(d, 42);
    let mut seen: Vec<u64> = (0..5).flat_map(|s| batcher.indices(s, 2)).collect();
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>(), "one epoch visits every sample once");
    assert_eq!(batcher.indices(7, 4), batcher.indices(7, 4));
    let b = batcher.batch(3, 4, &dev).unwrap();
    assert_eq!(b.data.dims(), &[4, 9, 9]);
    let again = make_batch(batcher.dataset(), &b.indices, &dev).unwrap();
    let (x, y) = (b.data.flatten_all().unwrap().to_vec1::<f32>().unwrap(), again.data.flatten_all().unwrap());
    assert_eq!(x, y.to_vec1::<f32>().unwrap());

    let endless = Batcher::new(build_dataset("even_pixels", &params("even_pixels", &[]), 0).unwrap(), 0);
    assert_eq!(endless.indices(2, 3), vec![6, 7, 8]);
    let t = std::time::Instant::now();
    let b = endless.batch(0, 64, &dev).unwrap();
    let el = t.elapsed();
    assert_eq!(b.data.dims(), &[64, 3, 32, 32]);
    assert!(b.mask.is_none());
    assert!(el.as_millis() < 100, "{el:?}");
    for name in ["counting_polygons", "moving_shapes", "sudoku_image"] {
        let d = build_dataset(name, &params(name, &[]), 0).unwrap();
        let t = std::time::Instant::now();
        make_batch(d.as_ref(), &(0..64).collect::<Vec<_>>(), &dev).unwrap();
        let el = t.elapsed();
        eprintln!("{name}: batch of 64 in {el:?}");
        assert!(el.as_millis() < 200, "{name}: {el:?}");
    }
}

#[test]
fn unknown_dataset_and_bad_params() {
    assert!(matches!(build_dataset("nope", &BTreeMap::new(), 0), Err(RuntimeError::UnknownComponent { .. })));
    let bad = params("even_pixels", &[("size", PValue::Str("big".into()))]);
    assert!(matches!(build_dataset("even_pixels", &bad, 0), Err(RuntimeError::PlanParams { .. })));
    assert!(matches!(build_dataset("mnist", &BTreeMap::new(), 0), Err(RuntimeError::PlanParams { .. })));
}
