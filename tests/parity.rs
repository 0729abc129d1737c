//! The parity gate: whatever `sr check` accepts must run, and whatever cannot run `sr check` must reject.
//!
//! Generated from the catalogue: for every component it builds a tiny experiment around the component at
//! its defaults, at each bound of each ranged parameter, at each choice of each enumerated (and boolean)
//! parameter, and runs check → 2 training steps → sampling → evaluation → `sr sample` through the
//! library. A configuration passes when it runs end to end and `sr sample` writes its outputs, or when the
//! checker rejects it with coded diagnostics that point into the source. Every component's defaults must
//! run. A component of a kind the gate cannot place in an experiment fails the gate (no coverage).
//!
//! The checker's memory estimate is held to `GATE_MEMORY` bytes (`SR_MEMORY_LIMIT`), so configurations
//! too large for a test (a width of 8192) are rejected by E0511 like any other plan that does not fit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use sr_compiler::catalogue::{self, Component, Default, Kind, Param, Rules, Ty};
use sr_compiler::{compile_text, FsLoader, Severity};
use sr_runtime::engine::run::{RunOptions, SampleOptions};

/// The memory the checker's estimate may plan for in the gate (bytes).
const GATE_MEMORY: &str = "1500000000";

/// One written use of a component: its name and the parameters written, in order.
#[derive(Debug, Clone)]
struct Use {
    name: String,
    args: Vec<(String, String)>,
}

impl Use {
    fn new(name: &str, args: &[(&str, &str)]) -> Use {
        Use { name: name.into(), args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// Sets `key` (replacing an earlier value).
    fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.args.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.args.push((key.to_string(), value)),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn render(&self) -> String {
        if self.args.is_empty() {
            return self.name.clone();
        }
        let args: Vec<String> = self.args.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        format!("{} {{ {} }}", self.name, args.join(", "))
    }
}

/// A tiny experiment, slot by slot.
#[derive(Debug, Clone)]
struct Exp {
    data: Use,
    mapper: Use,
    flow: Use,
    tokenizer: Option<Use>,
    denoiser: Use,
    time: Use,
    loss: String,
    optimizer: Use,
    lr_schedule: Use,
    schedule: Use,
    sampler: Use,
    metric: String,
    train: Vec<(String, String)>,
}

impl Exp {
    fn render(&self) -> String {
        let data = |split: &str| {
            let mut d = self.data.clone();
            let comp = catalogue::lookup(Kind::Dataset, &d.name).expect("a dataset");
            if comp.param("split").is_some() && d.get("split").is_none() {
                d.set("split", format!("{split:?}"));
            }
            if split == "test" && comp.param("count").is_some() {
                d.set("count", "2");
            }
            d.render()
        };
        let mut sampler = self.sampler.clone();
        sampler.set("schedule", self.schedule.render());
        let mut train = vec![
            ("steps".to_string(), "2".to_string()),
            ("batch".into(), "2".into()),
            ("log_every".into(), "1".into()),
            ("checkpoint_every".into(), "0".into()),
        ];
        for (k, v) in &self.train {
            match train.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => train.push((k.clone(), v.clone())),
            }
        }
        train.push(("optimizer".into(), self.optimizer.render()));
        train.push(("lr_schedule".into(), self.lr_schedule.render()));
        train.push(("time".into(), self.time.render()));
        train.push(("loss".into(), self.loss.clone()));
        let train: Vec<String> = train.iter().map(|(k, v)| format!("    {k} = {v}\n")).collect();
        let tokenizer = self.tokenizer.as_ref().map(|t| format!("  tokenizer = {}\n", t.render()));
        format!(
            "experiment gate {{\n  seed = 3\n  data train = {}\n  data test = {}\n  mapper = {}\n  flow = {}\n{}  \
             denoiser = {}\n  train {{\n{}  }}\n  sampler s = {}\n  evaluate {} on test with s\n}}\n",
            data("train"),
            data("test"),
            self.mapper.render(),
            self.flow.render(),
            tokenizer.unwrap_or_default(),
            self.denoiser.render(),
            train.concat(),
            sampler.render(),
            self.metric
        )
    }

    /// Gives the denoiser an uncertainty head and trains it (for σ-driven schedules and `nll`).
    fn with_sigma(mut self) -> Exp {
        self.denoiser.set("uncertainty", "true");
        self.loss = "mse + 0.01 * nll".into();
        self
    }
}

/// Files the file-backed datasets read, written once per gate run.
struct Files {
    root: PathBuf,
}

impl Files {
    fn new(root: &Path) -> Files {
        let files = Files { root: root.to_path_buf() };
        files.mnist();
        files.cifar();
        files.images();
        files
    }

    /// Four 28×28 MNIST-like digits per split (IDX format).
    fn mnist(&self) {
        let dir = self.root.join("mnist");
        std::fs::create_dir_all(&dir).unwrap();
        for prefix in ["train", "t10k"] {
            let n = 4u32;
            let mut images = vec![0, 0, 8, 3];
            for d in [n, 28, 28] {
                images.extend(d.to_be_bytes());
            }
            images.extend((0..n * 28 * 28).map(|i| ((i * 37) % 256) as u8));
            let mut labels = vec![0, 0, 8, 1];
            labels.extend(n.to_be_bytes());
            labels.extend((0..n).map(|i| (i % 10) as u8));
            std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
            std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
        }
    }

    /// Four CIFAR-10 records per split.
    fn cifar(&self) {
        let dir = self.root.join("cifar10");
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::new();
        for r in 0..4u32 {
            bytes.push((r % 10) as u8);
            bytes.extend((0..3072u32).map(|i| ((i * 13 + r * 7) % 256) as u8));
        }
        std::fs::write(dir.join("data_batch_1.bin"), &bytes).unwrap();
        std::fs::write(dir.join("test_batch.bin"), &bytes).unwrap();
    }

    /// Three small PNG images of different sizes.
    fn images(&self) {
        let dir = self.root.join("images");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (w, h)) in [(20u32, 16u32), (16, 16), (9, 30)].into_iter().enumerate() {
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 12) as u8, (y * 8) as u8, i as u8 * 80])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }

    /// A `.npy` file of 3 point sets `[3, n, d]` (written on demand: the shape is the experiment's).
    fn points(&self, n: usize, d: usize) -> PathBuf {
        let path = self.root.join(format!("points_{n}_{d}.npy"));
        if path.exists() {
            return path;
        }
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (3, {n}, {d}), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        for i in 0..3 * n * d {
            bytes.extend(((i as f32 * 0.37).sin()).to_le_bytes());
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(tmp, &path).unwrap();
        path
    }

    fn dir(&self, name: &str) -> String {
        format!("{:?}", self.root.join(name).to_string_lossy())
    }
}

/// The tiny symbolic-Sudoku experiment every non-data component is tried in.
fn base() -> Exp {
    Exp {
        data: Use::new("sudoku", &[("givens", "60..81")]),
        mapper: Use::new("grid_cells", &[]),
        flow: Use::new("rectified", &[]),
        tokenizer: None,
        denoiser: Use::new("mlp", &[("width", "8"), ("depth", "1"), ("time_dim", "4")]),
        time: Use::new("mean_beta", &[]),
        loss: "mse".into(),
        optimizer: Use::new("adamw", &[]),
        lr_schedule: Use::new("constant", &[]),
        schedule: Use::new("fixed", &[("steps", "2")]),
        sampler: Use::new("scheduled", &[("batch", "2")]),
        metric: "sudoku_accuracy".into(),
        train: vec![],
    }
}

/// The value of `key` of `u` as the checker will see it: written, or the catalogue default.
fn value_of(u: &Use, comp: &Component, key: &str) -> Option<i64> {
    match u.get(key) {
        Some(v) => v.parse().ok(),
        None => match comp.param(key)?.default? {
            Default::Int(i) => Some(i),
            _ => None,
        },
    }
}

/// Largest divisor `p <= 256` of `side` that leaves at most 4 patches per side (the smallest such).
fn patch_for(side: i64) -> i64 {
    (1..=side.min(256)).find(|p| side % p == 0 && side / p <= 4).unwrap_or(side.min(256))
}

/// An experiment around a dataset use: the mapper, denoiser and metric that fit its samples.
fn around_dataset(data: Use, files: &Files) -> Exp {
    let mut e = base();
    let comp = catalogue::lookup(Kind::Dataset, &data.name).expect("a dataset");
    let Rules::Dataset { metrics, .. } = comp.rules else { panic!("{} has no dataset rules", comp.name) };
    e.metric = metrics[0].to_string();
    e.data = data;
    match comp.name {
        "sudoku" | "sudoku_image" => {}
        "moving_shapes" => e.mapper = Use::new("video_frames", &[]),
        "points" => e.mapper = Use::new("identity", &[]),
        _ => {
            let side = value_of(&e.data, comp, "size").unwrap_or(match comp.name {
                "mnist" => 28,
                _ => 32,
            });
            e.mapper = Use::new("image_patches", &[("patch", &patch_for(side).to_string())]);
        }
    }
    match comp.name {
        "mnist" | "cifar10" | "image_folder" if e.data.get("path").is_none() => {
            let dir = match comp.name {
                "mnist" => "mnist",
                "cifar10" => "cifar10",
                _ => "images",
            };
            e.data.set("path", files.dir(dir));
        }
        "points" => {
            let n = value_of(&e.data, comp, "points").unwrap_or(4) as usize;
            let d = value_of(&e.data, comp, "dim").unwrap_or(2) as usize;
            e.data.set("points", n.to_string());
            e.data.set("dim", d.to_string());
            e.data.set("path", format!("{:?}", files.points(n, d).to_string_lossy()));
        }
        _ => {}
    }
    e
}

/// The small default use of each dataset (before the parameter under test is set).
fn small_data(name: &str) -> Use {
    match name {
        "sudoku" | "sudoku_image" => Use::new(name, &[("givens", "60..81")]),
        "even_pixels" => Use::new(name, &[("size", "8")]),
        "counting_polygons" | "counting_stars" => Use::new(name, &[("size", "16")]),
        "moving_shapes" => Use::new(name, &[("frames", "2"), ("size", "8"), ("shapes", "1")]),
        "image_folder" => Use::new(name, &[("size", "8")]),
        _ => Use::new(name, &[]),
    }
}

/// The experiment that puts `comp`, used as `u`, in its slot; `None` when the gate has no place for it.
fn place(comp: &Component, u: Use, files: &Files) -> Option<Exp> {
    let sigma = comp.needs_sigma();
    let mut e = match comp.kind {
        Kind::Dataset => around_dataset(u, files),
        Kind::Mapper => {
            let data = match comp.name {
                "grid_cells" => small_data("sudoku"),
                "image_patches" => {
                    let patch = u.get("patch").and_then(|p| p.parse::<i64>().ok()).unwrap_or(4);
                    let size = (2 * patch).max(8);
                    Use::new("even_pixels", &[("size", &size.to_string())])
                }
                "video_frames" => small_data("moving_shapes"),
                "identity" => Use::new("points", &[("points", "4"), ("dim", "2")]),
                _ => return None,
            };
            let mut e = around_dataset(data, files);
            e.mapper = u;
            if comp.name == "image_patches" && e.mapper.get("patch").is_none() {
                e.mapper.set("patch", "4");
            }
            e
        }
        Kind::Tokenizer => {
            let mut e = match comp.name {
                "tokens" => base(),
                "time_map" => {
                    let mut e = around_dataset(small_data("even_pixels"), files);
                    e.denoiser = small_denoiser("unet");
                    e
                }
                "frames" => {
                    let mut e = around_dataset(small_data("moving_shapes"), files);
                    e.denoiser = small_denoiser("uvit");
                    e
                }
                _ => return None,
            };
            e.tokenizer = Some(u);
            e
        }
        Kind::Denoiser => {
            let mut e = match comp.name {
                "mlp" | "transformer" | "block_causal_transformer" => base(),
                "unet" => around_dataset(small_data("even_pixels"), files),
                "uvit" => around_dataset(small_data("moving_shapes"), files),
                _ => return None,
            };
            let mut d = small_denoiser(comp.name);
            for (k, v) in &u.args {
                d.set(k, v.clone());
            }
            // The attention levels must exist when the levels are the parameter under test.
            if u.get("mults").is_some() && u.get("attention").is_none() {
                d.set("attention", "[0]");
            }
            // Keep the heads dividing the width when the width is the parameter under test.
            if u.get("width").is_some() && u.get("heads").is_none() && comp.param("heads").is_some() {
                d.set("heads", "1");
            }
            e.denoiser = d;
            e
        }
        Kind::Flow => Exp { flow: u, ..base() },
        Kind::TimeSampler => Exp { time: u, ..base() },
        Kind::Loss => {
            let mut e = base();
            e.loss = match comp.name {
                "mse" => "mse".into(),
                other => format!("mse + 0.5 * {other}"),
            };
            e
        }
        Kind::Optimizer => Exp { optimizer: u, ..base() },
        Kind::LrSchedule => Exp { lr_schedule: u, ..base() },
        Kind::Schedule => {
            let mut e = base();
            e.schedule = u;
            e
        }
        Kind::Sampler => {
            let mut e = base();
            let mut s = u;
            if s.get("batch").is_none() {
                s.set("batch", "2");
            }
            e.sampler = s;
            e
        }
        Kind::Metric => {
            let host = catalogue::of_kind(Kind::Dataset).find(|d| d.metrics().contains(&comp.name))?;
            let mut e = around_dataset(small_data(host.name), files);
            e.metric = comp.name.to_string();
            e
        }
    };
    if sigma {
        e = e.with_sigma();
    }
    Some(e)
}

/// A small denoiser of each catalogue name.
fn small_denoiser(name: &str) -> Use {
    match name {
        "mlp" => Use::new(name, &[("width", "8"), ("depth", "1"), ("time_dim", "4")]),
        "transformer" => Use::new(name, &[("width", "8"), ("depth", "1"), ("heads", "2"), ("time_dim", "4")]),
        "block_causal_transformer" => Use::new(
            name,
            &[("width", "8"), ("depth", "1"), ("heads", "2"), ("time_dim", "4"), ("block", "9")],
        ),
        "unet" => Use::new(
            name,
            &[
                ("channels", "4"),
                ("mults", "[1, 2]"),
                ("blocks", "1"),
                ("attention", "[1]"),
                ("time_dim", "4"),
            ],
        ),
        "uvit" => Use::new(name, &[("width", "8"), ("depth", "1"), ("heads", "2"), ("patch", "4")]),
        _ => Use::new(name, &[]),
    }
}

/// A number as the language writes it (floats keep a point or an exponent).
fn float_text(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// The values a parameter is tried at: each bound, each choice.
fn trials(p: &Param) -> Vec<String> {
    let mut out = Vec::new();
    let int = |x: f64| format!("{}", x as i64);
    match p.ty {
        Ty::Int => out.extend([p.min, p.max].into_iter().flatten().map(int)),
        Ty::Float => {
            out.extend([p.min, p.max].into_iter().flatten().map(float_text));
            // An exclusive bound is rejected; the values just inside it must run.
            let near = |x: f64, toward: f64| x + toward * 1e-6 * x.abs().max(1.0);
            if let (Some(lo), true) = (p.min, p.min_exclusive) {
                out.push(float_text(near(lo, 1.0)));
            }
            if let (Some(hi), true) = (p.max, p.max_exclusive) {
                out.push(float_text(near(hi, -1.0)));
            }
        }
        Ty::Range => {
            if let (Some(lo), Some(hi)) = (p.min, p.max) {
                out.push(format!("{}..{}", lo as i64, lo as i64 + 1));
                out.push(format!("{}..{}", hi as i64 - 1, hi as i64));
            }
        }
        Ty::IntList => out.extend([p.min, p.max].into_iter().flatten().map(|x| format!("[{}]", x as i64))),
        Ty::FloatPair => out.extend(
            [p.min, p.max].into_iter().flatten().map(|x| format!("({}, {})", float_text(x), float_text(x))),
        ),
        Ty::Enum(words) => out.extend(words.iter().map(|w| w.to_string())),
        Ty::Bool => out.extend(["true".to_string(), "false".to_string()]),
        Ty::Str | Ty::Path | Ty::Component(_) | Ty::Mixture(_) => {}
    }
    out
}

/// One configuration of the gate.
struct Config {
    label: String,
    exp: Exp,
    /// The component's defaults: these must run.
    must_run: bool,
}

/// Every configuration of every component; panics naming the components the gate cannot place.
fn configurations(files: &Files) -> Vec<Config> {
    let mut out = Vec::new();
    let mut uncovered = Vec::new();
    for comp in catalogue::all() {
        let Some(exp) = place(comp, Use::new(comp.name, &[]), files) else {
            uncovered.push(comp.qualified());
            continue;
        };
        out.push(Config { label: format!("{} defaults", comp.qualified()), exp, must_run: true });
        for p in comp.params {
            for value in trials(p) {
                let mut u = Use::new(comp.name, &[]);
                u.set(p.name, value.clone());
                let exp = place(comp, u, files).expect("placed above");
                out.push(Config {
                    label: format!("{} {} = {value}", comp.qualified(), p.name),
                    exp,
                    must_run: false,
                });
            }
        }
    }
    // The train block's settings with a choice of values.
    for p in catalogue::train_keys() {
        if matches!(p.ty, Ty::Enum(_) | Ty::Bool) {
            for value in trials(p) {
                let mut exp = base();
                exp.train.push((p.name.to_string(), value.clone()));
                out.push(Config { label: format!("train {} = {value}", p.name), exp, must_run: true });
            }
        }
    }
    assert!(uncovered.is_empty(), "the parity gate has no experiment for {}", uncovered.join(", "));
    out
}

/// What happened to one configuration.
enum Outcome {
    Ran,
    Rejected(Vec<&'static str>),
    Failed(String),
}

/// Runs one configuration: check, train, sample, evaluate, `sr sample`.
fn run_config(cfg: &Config, dir: &Path) -> Outcome {
    let text = cfg.exp.render();
    let c = compile_text("gate.srx", &text, &FsLoader, &[]);
    let errors: Vec<_> = c.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    if !errors.is_empty() {
        let bad: Vec<String> = errors
            .iter()
            .filter(|d| !d.code.starts_with('E') || d.labels.is_empty() || d.help.is_none())
            .map(|d| format!("{} {} (labels {}, help {:?})", d.code, d.message, d.labels.len(), d.help))
            .collect();
        if !bad.is_empty() {
            return Outcome::Failed(format!(
                "rejected without a code, span or hint: {}\n{text}",
                bad.join("; ")
            ));
        }
        if cfg.must_run {
            let msgs: Vec<String> = errors.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
            return Outcome::Failed(format!("defaults rejected: {}\n{text}", msgs.join("; ")));
        }
        return Outcome::Rejected(errors.iter().map(|d| d.code).collect());
    }
    let Some(plan) = c.plans.first() else {
        return Outcome::Failed(format!("no plan and no error\n{text}"));
    };
    let out = dir.join("run");
    let options = RunOptions {
        out: out.clone(),
        resume: false,
        force: true,
        device: None,
        evaluate: true,
        progress: false,
        eval_limit: Some(2),
        hooks: sr_runtime::engine::hooks::Hooks::default(),
    };
    if let Err(e) = sr_runtime::engine::run::run(plan, &options) {
        return Outcome::Failed(format!("sr run: {} {e}\n{text}", code(&e)));
    }
    let sample = SampleOptions {
        checkpoint: out,
        n: 2,
        sampler: None,
        split: None,
        out: dir.join("samples"),
        trace: true,
        device: None,
        progress: false,
        hooks: sr_runtime::engine::hooks::Hooks::default(),
    };
    match sr_runtime::engine::run::sample(plan, &sample) {
        Ok(r) if r.written.iter().all(|p| p.is_file()) && r.written.len() >= 2 => Outcome::Ran,
        Ok(r) => Outcome::Failed(format!("sr sample wrote only {:?}\n{text}", r.written)),
        Err(e) => Outcome::Failed(format!("sr sample: {} {e}\n{text}", code(&e))),
    }
}

/// The `R` code of a runtime error.
fn code(e: &sr_runtime::error::RuntimeError) -> String {
    miette::Diagnostic::code(e).map(|c| c.to_string()).unwrap_or_default()
}

#[test]
fn every_component_checks_and_runs_at_its_bounds() {
    std::env::set_var("SR_MEMORY_LIMIT", GATE_MEMORY);
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("parity");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let files = Files::new(&root.join("files"));
    let configs = configurations(&files);
    let only = std::env::var("SR_GATE_ONLY").ok();
    let began = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Outcome, f64)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(cfg) = configs.get(i) else { break };
                if only.as_ref().is_some_and(|o| !cfg.label.contains(o.as_str())) {
                    continue;
                }
                let dir = root.join(format!("c{i:04}"));
                let t = Instant::now();
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_config(cfg, &dir)))
                        .unwrap_or_else(|e| {
                            let what = e
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Outcome::Failed(format!("panicked: {what}\n{}", cfg.exp.render()))
                        });
                let _ = std::fs::remove_dir_all(&dir);
                results.lock().unwrap().push((i, outcome, t.elapsed().as_secs_f64()));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let mut ran = 0;
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, outcome, secs) in &results {
        let label = &configs[*i].label;
        match outcome {
            Outcome::Ran => ran += 1,
            Outcome::Rejected(c) => {
                for code in c {
                    *codes.entry(code).or_default() += 1;
                }
                eprintln!("rejected by check: {label} ({})", c.join(", "));
            }
            Outcome::Failed(why) => failures.push(format!("{label}: {why}")),
        }
        if *secs > 5.0 {
            eprintln!("slow: {label} took {secs:.1} s");
        }
    }
    let rejected: usize = results.iter().filter(|r| matches!(r.1, Outcome::Rejected(_))).count();
    println!(
        "parity gate: {} configurations of {} components: {ran} ran end to end, {rejected} rejected by the \
         checker ({codes:?}), {} failed, in {:.1} s",
        results.len(),
        catalogue::all().len(),
        failures.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} configurations failed:\n\n{}", failures.len(), failures.join("\n\n"));
}
