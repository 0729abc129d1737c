//! The whole pipeline on a tiny model: `sr run` trains, samples with a fixed and an adaptive-sequential
//! schedule and writes the result table; `sr sample` writes a picture, an animation and a trace.

mod common;

use std::path::Path;

use candle_core::Device;
use common::*;
use image::AnimationDecoder;
use sr_runtime::outputs::image_io::SUDOKU_SIDE;

const SAMPLES: usize = 4;

/// Pixel size of a grid of `n` Sudoku pictures, as `sr sample` lays them out (⌈√n⌉ columns).
fn grid_side(n: usize, scale: usize, padding: usize) -> (u32, u32) {
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let side = SUDOKU_SIDE * scale;
    ((cols * side + (cols + 1) * padding) as u32, (rows * side + (rows + 1) * padding) as u32)
}

/// The given-mask `[n][81]` of the first `n` puzzles of the tiny experiment's test split.
fn givens(file: &Path, n: usize) -> Vec<Vec<bool>> {
    let c = sr_compiler::compile_path(file, &[]);
    let plan = &c.plans[0];
    let model = sr_runtime::engine::pipeline::Pipeline::build(plan, Device::Cpu).unwrap();
    let indices: Vec<u64> = (0..n as u64).collect();
    let batch =
        sr_runtime::datasets::make_batch(model.dataset("test").unwrap(), &indices, &Device::Cpu).unwrap();
    let (_, given) = model.variables(&batch.data, batch.mask.as_ref()).unwrap();
    given.to_vec2::<f32>().unwrap().into_iter().map(|r| r.into_iter().map(|g| g > 0.5).collect()).collect()
}

#[test]
fn train_sample_evaluate_and_draw() {
    let dir = fresh_dir("end-to-end");
    let file = write(&dir, "tiny.srx", TINY);
    let out = run_ok(&dir, &["run", "tiny.srx", "--out", "run"]);
    let run = dir.join("run");

    // results.json: one row per sampler with the metric's scores.
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["experiment"], "tiny");
    assert_eq!(results["train_steps"], 40);
    assert!(results["final_loss"].as_f64().is_some_and(f64::is_finite));
    let rows = results["rows"].as_array().unwrap();
    let samplers: Vec<&str> = rows.iter().map(|r| r["sampler"].as_str().unwrap()).collect();
    assert_eq!(samplers, ["fixed", "adaptive"]);
    for r in rows {
        assert_eq!(
            (&r["metric"], &r["split"], &r["samples"]),
            (&"sudoku_accuracy".into(), &"test".into(), &8.into())
        );
        let accuracy = r["scores"]["accuracy"].as_f64().expect("an accuracy score");
        let distance = r["scores"]["distance"].as_f64().expect("a distance score");
        assert!((0.0..=1.0).contains(&accuracy), "{r}");
        assert!(distance.is_finite() && distance >= 0.0, "{r}");
        assert!(r["steps"].as_f64().unwrap() >= 1.0, "{r}");
    }

    // results.md (also printed): a header with both columns, and a row per sampler.
    let table = std::fs::read_to_string(run.join("results.md")).unwrap();
    assert!(text(&out).0.contains(table.trim()), "sr run prints the table");
    assert!(table.contains("| sampler | accuracy (test) | distance (test) | steps |"), "{table}");
    for s in ["fixed", "adaptive"] {
        assert_eq!(table.lines().filter(|l| l.starts_with(&format!("| {s} |"))).count(), 1, "{table}");
    }

    // sr sample: a PNG grid, a GIF of the denoising and a trace.
    for sampler in ["fixed", "adaptive"] {
        let folder = format!("samples-{sampler}");
        let n = SAMPLES.to_string();
        let args = [
            "sample",
            "tiny.srx",
            "--checkpoint",
            "run",
            "-n",
            &n,
            "--sampler",
            sampler,
            "--trace",
            "--out",
            &folder,
        ];
        let o = run_ok(&dir, &args);
        let first = text(&o).0.lines().next().unwrap_or_default().to_string();
        let expected = format!("{sampler} on test ({SAMPLES} samples): accuracy ");
        assert!(first.starts_with(&expected) && first.contains(", distance "), "the scores first: {first}");
        let samples = dir.join(&folder);

        let png = image::open(samples.join("samples.png")).expect("samples.png decodes");
        let (w, h) = grid_side(SAMPLES, 2, 2);
        assert_eq!(
            (png.width(), png.height()),
            (w, h + sr_runtime::outputs::plot::CAPTION_HEIGHT),
            "the grid and its caption band"
        );
        let gif = std::fs::File::open(samples.join("denoising.gif")).unwrap();
        let frames = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(gif))
            .expect("denoising.gif decodes")
            .into_frames()
            .collect_frames()
            .expect("every frame decodes");
        assert!(frames.len() >= 2, "{sampler}: {} frames", frames.len());
        for f in &frames {
            assert_eq!(f.buffer().dimensions(), grid_side(SAMPLES, 1, 2));
        }

        let trace: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(samples.join("trace.json")).unwrap()).unwrap();
        assert_eq!(trace["sampler"], sampler);
        check_trace(sampler, &trace["steps"], &givens(&file, SAMPLES));
    }
}

/// Per-step t never increases, given variables stay at 0, the others start at 1, and every t ends at 0.
fn check_trace(sampler: &str, steps: &serde_json::Value, givens: &[Vec<bool>]) {
    let t: Vec<Vec<Vec<f64>>> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_value(s["t"].clone()).expect("t is [B][V]"))
        .collect();
    assert!(t.len() >= 2, "{sampler}: a trace of {} steps", t.len());
    for (k, step) in t.iter().enumerate() {
        assert_eq!(step.len(), givens.len(), "{sampler}: step {k} has {} batch rows", step.len());
        for (b, row) in step.iter().enumerate() {
            assert_eq!(row.len(), 81);
            for (v, &tv) in row.iter().enumerate() {
                assert!((0.0..=1.0).contains(&tv), "{sampler}: t = {tv} at step {k}, sample {b}, cell {v}");
                if givens[b][v] {
                    assert_eq!(tv, 0.0, "{sampler}: given cell {v} of sample {b} has t = {tv} at step {k}");
                } else if k == 0 {
                    assert_eq!(tv, 1.0, "{sampler}: unknown cell {v} of sample {b} starts at t = {tv}");
                }
                if k > 0 {
                    let before = t[k - 1][b][v];
                    assert!(
                        tv <= before,
                        "{sampler}: t of cell {v}, sample {b} rises {before} → {tv} at step {k}"
                    );
                }
            }
        }
    }
    let last = t.last().unwrap();
    assert!(last.iter().flatten().all(|&x| x == 0.0), "{sampler}: the trace does not end with every t = 0");
    assert!(givens.iter().flatten().any(|g| !g), "the test puzzles have unknown cells");
}

/// Image Sudoku: `sr run` reads the cells with the trained digit classifier and reports its accuracy
/// after the table, in results.md and in results.json.
#[test]
fn image_sudoku_reports_the_digit_classifier() {
    let dir = fresh_dir("end-to-end-image");
    write(
        &dir,
        "image.srx",
        r#"use std.samplers.fixed_sampler

experiment image {
  seed = 3
  data train = sudoku_image { split = "train", givens = 40..81 }
  data test = sudoku_image { split = "test", givens = 40..60, count = 2 }
  mapper = grid_cells
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 16, depth = 1, heads = 2 }
  train {
    steps = 2
    batch = 2
    optimizer = adamw { lr = 1e-3 }
  }
  sampler fixed = fixed_sampler { schedule.steps = 2 }
  evaluate sudoku_accuracy on test with fixed
}
"#,
    );
    let out = run_ok(&dir, &["run", "image.srx", "--out", "run"]);
    let run = dir.join("run");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let classifier = &results["digit_classifier"];
    assert!(classifier["accuracy"].as_f64().is_some_and(|a| a >= 0.99), "{classifier}");
    assert_eq!(classifier["held_out"], 5000);
    let table = std::fs::read_to_string(run.join("results.md")).unwrap();
    let line = table.lines().last().unwrap_or_default();
    assert!(line.starts_with("digit classifier: ") && line.contains(" % on 5,000 held-out cells"), "{table}");
    assert!(text(&out).0.contains(line), "sr run prints the classifier's accuracy");
}

/// The issue's smoke run: `sr run examples/sudoku.srx` with a short step count prints the table with all
/// four samplers on the three difficulties.
#[test]
fn sudoku_example_prints_all_four_samplers() {
    let dir = fresh_dir("end-to-end-sudoku-example");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sudoku.srx");
    let example = example.to_str().expect("a UTF-8 path");
    let o = run_ok(&dir, &["run", example, "--steps", "2", "--eval-samples", "2", "--out", "run"]);
    let (out, _) = text(&o);
    for column in ["accuracy (easy)", "accuracy (medium)", "accuracy (hard)"] {
        assert!(out.contains(column), "{column}:\n{out}");
    }
    for sampler in ["parallel", "graph", "adaptive", "refine"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("| {sampler} |"))), "{sampler}:\n{out}");
    }
    assert!(dir.join("run/results.md").is_file() && dir.join("run/results.json").is_file());
}

/// The checker's parameter count of a transformer is the count of the network `sr run` builds: for every
/// example with a transformer, and for transformers without an uncertainty head, with another MLP ratio
/// and block-causal attention.
#[test]
fn the_estimate_counts_the_parameters_of_every_example_transformer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = fresh_dir("estimate-parameters");
    let mut files: Vec<_> =
        ["quickstart", "sudoku", "refine", "even_pixels", "counting_polygons", "sudoku_image"]
            .map(|n| root.join(format!("examples/{n}.srx")))
            .into();
    for (i, denoiser) in [
        "transformer { width = 48, depth = 2, heads = 4, mlp_ratio = 2.5, time_dim = 32 }",
        "block_causal_transformer { width = 32, depth = 3, heads = 2, block = 9, loops = 2 }",
    ]
    .iter()
    .enumerate()
    {
        let file = dir.join(format!("plain{i}.srx"));
        let text = format!(
            "experiment plain {{\n  data train = sudoku {{ split = \"train\" }}\n  mapper = grid_cells\n  \
             flow = rectified\n  denoiser = {denoiser}\n  train {{\n    steps = 1\n    batch = 2\n    \
             optimizer = adamw\n    time = independent\n    loss = mse\n  }}\n}}\n"
        );
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    for file in &files {
        let c = sr_compiler::compile_path(file, &[]);
        assert!(!c.plans.is_empty(), "{}: {:?}", file.display(), c.diagnostics);
        for plan in &c.plans {
            let built = sr_runtime::engine::pipeline::Pipeline::build(plan, Device::Cpu).unwrap();
            assert_eq!(
                sr_compiler::estimate::estimate(plan).parameters,
                built.parameter_count() as u64,
                "{} ({})",
                file.display(),
                plan.experiment
            );
        }
    }
}
