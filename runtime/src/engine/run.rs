//! `sr run` and `sr sample`: a plan from training to the result table, pictures and animations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use sr_compiler::catalogue::{Kind, Output};
use sr_compiler::plan::{PValue, Plan};

use crate::datasets::{make_batch, Dataset};
use crate::engine::checkpoint::write_atomic;
use crate::engine::distributed::{self, World};
use crate::engine::folder::{prepare, RunLock, Start};
use crate::engine::hooks::{Hooks, Progress, Stage};
use crate::engine::pipeline::{device, Pipeline};
use crate::engine::train::{load_weights, train, RunPaths, TrainOptions};
use crate::error::{Result, RuntimeError};
use crate::init::step_seed;
use crate::metrics::{ClassifierReport, DigitClassifier, Scores};
use crate::optimizers::Ema;
use crate::outputs::image_io::{image_grid, render_sudoku_at, write_gif, GridOptions};
use crate::outputs::progress::{format_duration, ProgressBar, ProgressMode};
use crate::registry::{compute_metric, Registry};
use crate::samplers::{sample_with_progress, Record, Sampled, SamplerSettings};

/// Most samples one `sr sample` call draws (they are drawn in batches of the sampler's `batch`).
pub const MAX_SAMPLES: usize = 4096;

/// Samples used to evaluate on an endless data split (one without `count`).
pub const DEFAULT_EVAL_COUNT: u64 = 256;

/// Options of `sr run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run folder: checkpoints, metrics, pictures, results.
    pub out: PathBuf,
    pub resume: bool,
    /// Start afresh in a folder that holds another run, removing its files.
    pub force: bool,
    /// `cpu`, `cuda`, `cuda:N`; default CPU.
    pub device: Option<String>,
    /// Sample and evaluate after training.
    pub evaluate: bool,
    /// Live progress lines (terminals).
    pub progress: bool,
    /// Evaluate at most this many samples of each split (quick looks at long experiments).
    pub eval_limit: Option<u64>,
    /// A progress callback and a stop flag (training and evaluation).
    pub hooks: Hooks,
}

/// One cell group of the result table: a metric on a split with a sampler.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResultRow {
    pub sampler: String,
    pub metric: String,
    pub split: String,
    pub scores: BTreeMap<String, f64>,
    pub samples: usize,
    /// Mean denoiser calls per batch.
    pub steps: f64,
    pub seconds: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Results {
    pub experiment: String,
    /// Step training reached.
    pub train_steps: u64,
    /// Step this session's training started from (non-zero when it resumed a run).
    pub train_start: u64,
    /// Seconds this session trained.
    pub train_seconds: f64,
    /// Loss of this session's last step (none when it had no step left to train).
    pub final_loss: Option<f64>,
    pub parameters: usize,
    pub rows: Vec<ResultRow>,
    /// The held-out accuracy of the digit classifier, when a metric read image-Sudoku cells with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digit_classifier: Option<ClassifierReport>,
}

/// What `run` returns: the results and their table in Markdown.
pub struct RunSummary {
    pub results: Results,
    pub table: String,
}

/// Trains (when the plan has a `train` block), then samples and evaluates every `evaluate` line.
///
/// In a data-parallel run (see [`crate::engine::distributed`]) every rank trains and evaluates its part;
/// rank 0 alone prints and writes the run folder, and only its summary holds the results.
pub fn run(plan: &Plan, options: &RunOptions) -> Result<RunSummary> {
    let world = distributed::world();
    let spec = rank_device(options.device.as_deref().or(plan.device.as_deref()).unwrap_or("cpu"), world);
    announce(world, &spec)?;
    let model = Pipeline::build(plan, device(&spec)?)?;
    let paths = RunPaths { root: options.out.clone() };
    // Rank 0 alone locks, checks and writes the run folder; the others wait for its verdict.
    let prepared = if world.is_root() { prepare_folder(plan, options).map(Some) } else { Ok(None) };
    let _lock = world.agree("the run folder check", prepared)?;
    let mut results = Results {
        experiment: plan.experiment.clone(),
        parameters: model.parameter_count(),
        ..Default::default()
    };
    if world.is_root() {
        eprintln!(
            "experiment `{}`: {} variables × {} features, {} parameters",
            plan.experiment, plan.shapes.variables, plan.shapes.features, results.parameters
        );
        eprintln!("estimate: {}", sr_compiler::estimate::estimate(plan).summary());
    }
    let mut ema = None;
    let mut events = None;
    if plan.node("data.train").is_some() && plan.node("train.optimizer").is_some() {
        let trained = train(
            plan,
            &model,
            &TrainOptions {
                paths: paths.clone(),
                resume: options.resume,
                progress: options.progress,
                hooks: options.hooks.clone(),
            },
        )?;
        results.train_steps = trained.step;
        results.train_start = trained.start;
        results.train_seconds = trained.seconds;
        results.final_loss = trained.losses.last().copied();
        ema = trained.ema;
        events = trained.events;
    }
    if options.evaluate {
        let evaluated =
            evaluate(plan, &model, ema.as_mut(), options.eval_limit, options.progress, &options.hooks)?;
        if world.is_root() {
            let mut events = match events {
                Some(e) => e,
                None => crate::outputs::tensorboard::EventWriter::create(&paths.root, 0)?,
            };
            for (row, grid) in &evaluated {
                record_evaluation(&paths.root, &mut events, results.train_steps, row, grid.as_ref())?;
            }
            events.flush()?;
        }
        results.rows = evaluated.into_iter().map(|(row, _)| row).collect();
    }
    if !world.is_root() {
        return Ok(RunSummary { results, table: String::new() });
    }
    if options.evaluate {
        let registry = Registry::get();
        let read_cells = results.rows.iter().any(|r| {
            let shape = model.dataset(&r.split).map(|d| d.raw_shape());
            matches!((registry.metric_named(&r.metric), shape), (Ok(m), Ok(s)) if m.reads_digits(&s))
        });
        if read_cells {
            results.digit_classifier = Some(DigitClassifier::shared()?.report());
        }
    }
    let table = table(&results);
    let json = serde_json::to_string_pretty(&results).map_err(|e| RuntimeError::Config(e.to_string()))?;
    write_atomic(&paths.root.join("results.json"), json.as_bytes())?;
    write_atomic(&paths.root.join("results.md"), table.as_bytes())?;
    Ok(RunSummary { results, table })
}

/// Locks the run folder, checks that the run may start there (fresh, `--force` or `--resume`) and writes
/// `plan.json`. Returns the lock, held for the whole run.
fn prepare_folder(plan: &Plan, options: &RunOptions) -> Result<RunLock> {
    let lock = RunLock::acquire(&options.out)?;
    let start = match (options.resume, options.force) {
        (true, _) => Start::Resume,
        (false, true) => Start::Force,
        (false, false) => Start::Fresh,
    };
    prepare(&options.out, plan, start)?;
    let plan_json = serde_json::to_string_pretty(plan).map_err(|e| RuntimeError::Config(e.to_string()))?;
    write_atomic(&options.out.join("plan.json"), plan_json.as_bytes())?;
    Ok(lock)
}

/// The device of this rank: with several ranks, a bare `cuda` means the GPU of the rank's index on
/// its machine.
fn rank_device(spec: &str, world: &World) -> String {
    if spec.trim() == "cuda" && world.size() > 1 {
        format!("cuda:{}", world.local_rank())
    } else {
        spec.to_string()
    }
}

/// Prints, on rank 0, the world size and each rank's device, host, process id and compute threads.
fn announce(world: &World, device: &str) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let line = format!(
        "rank {}: {device} on {} (pid {}, {} threads)",
        world.rank(),
        world.host(),
        std::process::id(),
        candle_core::utils::get_num_threads()
    );
    if let Some(lines) = world.gather_bytes("the start-up", line.as_bytes())? {
        eprintln!("world: {} ranks", world.size());
        for l in lines {
            eprintln!("  {}", String::from_utf8_lossy(&l));
        }
    }
    Ok(())
}

/// The split name of a `data.NAME` reference.
fn split_of(v: Option<&PValue>) -> Option<String> {
    match v {
        Some(PValue::Node { node }) => Some(node.strip_prefix("data.").unwrap_or(node).to_string()),
        _ => None,
    }
}

/// The sampler names of a `with` list.
fn samplers_of(v: Option<&PValue>) -> Vec<String> {
    match v {
        Some(PValue::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                PValue::Node { node } => Some(node.strip_prefix("sampler.").unwrap_or(node).to_string()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// Writes an evaluation's sample grid with its caption (`samples_<split>_<sampler>.png`) and records
/// its scores (`eval/<split>/<sampler>/<score>`) and grid (`samples/<split>/<sampler>`) in TensorBoard.
fn record_evaluation(
    root: &Path,
    events: &mut crate::outputs::tensorboard::EventWriter,
    step: u64,
    row: &ResultRow,
    grid: Option<&image::RgbImage>,
) -> Result<()> {
    let tags: Vec<(String, f64)> =
        row.scores.iter().map(|(k, v)| (format!("eval/{}/{}/{k}", row.split, row.sampler), *v)).collect();
    events.scalars(step, tags.iter().map(|(k, v)| (k.as_str(), *v)))?;
    let Some(grid) = grid else { return Ok(()) };
    let scores: Vec<String> = row.scores.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
    let caption =
        format!("{} on {} ({} samples): {}", row.sampler, row.split, row.samples, scores.join(", "));
    let img = crate::outputs::plot::with_caption(grid, &caption)?;
    let path = root.join(format!("samples_{}_{}.png", row.split, row.sampler));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| RuntimeError::Image { path: path.clone(), source: e })?;
    write_atomic(&path, png.get_ref())?;
    events.image(
        step,
        &format!("samples/{}/{}", row.split, row.sampler),
        png.get_ref(),
        img.height(),
        img.width(),
        3,
    )
}

/// Samples every `evaluate` split (at most `limit` samples of each) with each of its samplers and
/// computes the metric; each row comes with a grid of (up to 16) samples of its first batch. Stops
/// before the next batch once `hooks` asks to.
pub fn evaluate(
    plan: &Plan,
    model: &Pipeline,
    mut ema: Option<&mut Ema>,
    limit: Option<u64>,
    progress: bool,
    hooks: &Hooks,
) -> Result<Vec<(ResultRow, Option<image::RgbImage>)>> {
    let mut rows = Vec::new();
    for n in plan.nodes_of(Kind::Metric) {
        let split = split_of(n.params.get("on"))
            .ok_or_else(|| RuntimeError::Config(format!("`{}` names no data split", n.id)))?;
        let dataset = model.dataset(&split)?;
        let count = dataset.len().unwrap_or(DEFAULT_EVAL_COUNT).min(limit.unwrap_or(u64::MAX));
        for sampler in samplers_of(n.params.get("with")) {
            let settings = SamplerSettings::from_plan(plan, &sampler)?;
            let swap = settings.ema && ema.is_some();
            if swap {
                if let Some(e) = ema.as_deref_mut() {
                    e.swap()?;
                }
            }
            let row = evaluate_one(
                model,
                &settings,
                &n.component,
                &split,
                dataset,
                count,
                plan.seed,
                progress,
                hooks,
            );
            if swap {
                if let Some(e) = ema.as_deref_mut() {
                    e.swap()?;
                }
            }
            rows.push(row?);
        }
    }
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
fn evaluate_one(
    model: &Pipeline,
    settings: &SamplerSettings,
    metric: &str,
    split: &str,
    dataset: &dyn Dataset,
    count: u64,
    seed: u64,
    progress: bool,
    hooks: &Hooks,
) -> Result<(ResultRow, Option<image::RgbImage>)> {
    let began = Instant::now();
    let world = distributed::world();
    let mut grid = None;
    let mode = if progress && world.is_root() { ProgressMode::Live } else { ProgressMode::Off };
    let label = format!("evaluate {metric} on {split} with {}", settings.name);
    let mut bar = ProgressBar::new(label.clone(), 0, count, mode);
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut done = 0usize;
    let mut steps = 0usize;
    let mut batches = 0usize;
    let mut start = 0u64;
    // Batch k of the split is sampled by rank k mod size; rank 0 adds up the parts.
    for k in 0.. {
        if start >= count {
            break;
        }
        let end = (start + settings.batch as u64).min(count);
        if k % world.size() != world.rank() {
            start = end;
            continue;
        }
        if hooks.stop_requested() {
            bar.finish();
            return Err(RuntimeError::Stopped(format!(
                "evaluation stopped after {start} of {count} samples ({label})"
            )));
        }
        let indices: Vec<u64> = (start..end).collect();
        let batch = make_batch(dataset, &indices, &model.device)?;
        let (x, given) = model.variables(&batch.data, batch.mask.as_ref())?;
        // The same noise for every sampler: batch k of a split always starts from the same draw.
        let mut rng = StdRng::seed_from_u64(step_seed(seed ^ 0x5EED_5A4D, start));
        let n = indices.len() as u64;
        let out =
            sample_with_progress(model, settings, &x, &given, &mut rng, Record::default(), &mut |c, max| {
                // Within a batch, progress moves with the denoiser calls.
                let within = (n as f64 * c.min(max) as f64 / max.max(1) as f64) as u64;
                let done = start + within.min(n.saturating_sub(1));
                bar.update(done, &format!("step {c}/{max}"));
                let stage = Stage::Evaluate;
                hooks.report(&Progress { stage, label: &label, done, total: count, loss: None });
            })?;
        let raw = model.mapper.to_raw(&out.x)?;
        if start == 0 {
            let k = raw.dim(0)?.min(16);
            if let Some(p) = picture(&raw.narrow(0, 0, k)?, Some(&given))? {
                let scale = upscale(p.dim(2)?.min(p.dim(3)?));
                grid = Some(image_grid(&p, GridOptions { columns: None, padding: 2, scale })?);
            }
        }
        let scores = compute_metric(metric, &raw, Some(&batch.data))?;
        for (k, v) in scores {
            *sums.entry(k).or_default() += v * indices.len() as f64;
        }
        done += indices.len();
        steps += out.steps;
        batches += 1;
        bar.update(end, "");
        hooks.report(&Progress {
            stage: Stage::Evaluate,
            label: &label,
            done: end,
            total: count,
            loss: None,
        });
        start = end;
    }
    bar.finish();
    if world.size() > 1 {
        let part = serde_json::json!({"sums": sums, "done": done, "steps": steps, "batches": batches});
        let bytes = serde_json::to_vec(&part).map_err(|e| RuntimeError::Config(e.to_string()))?;
        if let Some(parts) = world.gather_bytes("the evaluation", &bytes)? {
            (sums, done, steps, batches) = (BTreeMap::new(), 0, 0, 0);
            for p in parts {
                let p: EvalPart = serde_json::from_slice(&p).map_err(|e| {
                    RuntimeError::Distributed(format!("a rank sent a bad evaluation part: {e}"))
                })?;
                for (k, v) in p.sums {
                    *sums.entry(k).or_default() += v;
                }
                (done, steps, batches) = (done + p.done, steps + p.steps, batches + p.batches);
            }
        }
    }
    if !progress && world.is_root() {
        eprintln!(
            "evaluate {metric} on {split} with {}: {done} samples in {}",
            settings.name,
            format_duration(began.elapsed().as_secs_f64())
        );
    }
    let scores = sums.into_iter().map(|(k, v)| (k, v / done.max(1) as f64)).collect();
    let row = ResultRow {
        sampler: settings.name.clone(),
        metric: metric.to_string(),
        split: split.to_string(),
        scores,
        samples: done,
        steps: steps as f64 / batches.max(1) as f64,
        seconds: began.elapsed().as_secs_f64(),
    };
    Ok((row, grid))
}

/// One rank's share of an evaluation: metric sums weighted by samples, samples, denoiser calls, batches.
#[derive(serde::Deserialize)]
struct EvalPart {
    sums: BTreeMap<String, f64>,
    done: usize,
    steps: usize,
    batches: usize,
}

/// What this session's training did, for the table: a fresh run, a resumed one, or one that had no step
/// left to train.
fn training_line(r: &Results) -> String {
    let loss = r.final_loss.map_or(String::new(), |l| format!(", final loss {l:.4}"));
    let trained = match r.train_start {
        0 => format!("trained {} steps in {:.1} s{loss}", r.train_steps, r.train_seconds),
        start if start < r.train_steps => format!(
            "trained steps {}–{} in {:.1} s (resumed at step {start}){loss}",
            start + 1,
            r.train_steps,
            r.train_seconds
        ),
        _ => format!("trained {} steps in an earlier session (nothing left to train)", r.train_steps),
    };
    format!("{trained}, {} parameters\n\n", r.parameters)
}

/// The result table in Markdown: one row per sampler, one column per metric value and split.
pub fn table(results: &Results) -> String {
    let mut columns: Vec<(String, String, String)> = Vec::new();
    let mut samplers: Vec<String> = Vec::new();
    for r in &results.rows {
        for k in r.scores.keys() {
            let c = (r.metric.clone(), r.split.clone(), k.clone());
            if !columns.contains(&c) {
                columns.push(c);
            }
        }
        if !samplers.contains(&r.sampler) {
            samplers.push(r.sampler.clone());
        }
    }
    let mut out = format!("## {}\n\n", results.experiment);
    if results.train_steps > 0 {
        out += &training_line(results);
    }
    if columns.is_empty() {
        return out + "(no evaluation)\n";
    }
    out += "| sampler |";
    for (_, split, key) in &columns {
        out += &format!(" {key} ({split}) |");
    }
    out += " steps |\n|---|";
    out += &"---:|".repeat(columns.len() + 1);
    out += "\n";
    for s in &samplers {
        out += &format!("| {s} |");
        let mut steps = Vec::new();
        for (metric, split, key) in &columns {
            let row =
                results.rows.iter().find(|r| &r.sampler == s && &r.metric == metric && &r.split == split);
            match row.and_then(|r| r.scores.get(key).map(|v| (v, r.steps))) {
                Some((v, st)) => {
                    out += &format!(" {v:.4} |");
                    steps.push(st);
                }
                None => out += " - |",
            }
        }
        let mean = steps.iter().sum::<f64>() / steps.len().max(1) as f64;
        out += &format!(" {mean:.0} |\n");
    }
    if let Some(c) = &results.digit_classifier {
        out += &format!(
            "\ndigit classifier: {:.2} % on {} held-out cells (digits and empty), trained in {:.1} s\n",
            100.0 * c.accuracy,
            thousands(c.held_out),
            c.seconds
        );
    }
    out
}

/// `n` with commas between groups of three digits.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Options of `sr sample`.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// A run folder (its `checkpoints/`), a checkpoints folder, or one checkpoint's folder.
    pub checkpoint: PathBuf,
    pub n: usize,
    pub sampler: Option<String>,
    pub split: Option<String>,
    pub out: PathBuf,
    pub trace: bool,
    pub device: Option<String>,
    /// Draw a live progress bar (terminals).
    pub progress: bool,
    /// A progress callback and a stop flag.
    pub hooks: Hooks,
}

/// The live components of `plan` on `device` (`cpu`, `cuda`, `cuda:N`), else the plan's device, else the CPU.
pub fn build_model(plan: &Plan, device_name: Option<&str>) -> Result<Pipeline> {
    Pipeline::build(plan, device(device_name.or(plan.device.as_deref()).unwrap_or("cpu"))?)
}

/// Samples drawn from a checkpoint by [`draw`], before anything is written.
pub struct Drawn {
    /// The sampler used.
    pub sampler: String,
    /// The data split whose givens conditioned the samples.
    pub split: String,
    /// Samples in the dataset's raw form `[n, ...raw shape]` (Sudoku digits 1–9, images in [-1, 1]).
    pub raw: Tensor,
    /// The split's samples the givens were taken from, `[n, ...raw shape]`.
    pub reference: Tensor,
    /// Raw mask `[n, ...raw shape]` (1 = given), when the split has givens.
    pub mask: Option<Tensor>,
    /// Variable mask `[n, V]` (1 = given).
    pub given: Tensor,
    /// All `n` final variables and the denoiser calls per batch; the trace and the latents of every
    /// step follow the first batch (as `record` asked).
    pub sampled: Sampled,
}

/// Samples `options.n` items from a trained checkpoint in batches of the sampler's `batch` and returns
/// them with what `record` asks for of the first batch (`options.out` and `options.trace` are not read).
/// Stops with [`RuntimeError::Stopped`] after a batch when `options.hooks` asks to.
pub fn draw(plan: &Plan, model: &Pipeline, options: &SampleOptions, record: Record) -> Result<Drawn> {
    let names = SamplerSettings::names(plan);
    let name = match &options.sampler {
        Some(s) => s.clone(),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| RuntimeError::Config("the experiment declares no sampler".into()))?,
    };
    let settings = SamplerSettings::from_plan(plan, &name)?;
    let ckpt = checkpoint_dir(&options.checkpoint)?;
    load_weights(plan, model, &ckpt, settings.ema)?;
    let split = match &options.split {
        Some(s) => s.clone(),
        None => plan
            .nodes_of(Kind::Metric)
            .find_map(|n| split_of(n.params.get("on")))
            .or_else(|| model.datasets.keys().find(|k| *k != "train").cloned())
            .or_else(|| model.datasets.keys().next().cloned())
            .ok_or_else(|| RuntimeError::Config("the experiment declares no data".into()))?,
    };
    let dataset = model.dataset(&split)?;
    if options.n == 0 || options.n > MAX_SAMPLES {
        return Err(RuntimeError::param(
            "sr sample",
            "-n",
            format!("must be between 1 and {MAX_SAMPLES} (got {})", options.n),
        ));
    }
    if let Some(len) = dataset.len().filter(|len| options.n as u64 > *len) {
        return Err(RuntimeError::param(
            "sr sample",
            "-n",
            format!("split `{split}` has only {len} samples (asked for {})", options.n),
        ));
    }
    let mode = if options.progress { ProgressMode::Live } else { ProgressMode::Off };
    let label = format!("sample {} with {name}", options.n);
    let mut bar = ProgressBar::new(label.clone(), 0, 0, mode);
    // Batches of the sampler's `batch`; the animation and the trace follow the first batch.
    let mut xs = Vec::new();
    let mut givens = Vec::new();
    let mut references = Vec::new();
    let mut masks = Vec::new();
    let mut first = None;
    for start in (0..options.n).step_by(settings.batch) {
        let end = (start + settings.batch).min(options.n);
        let indices: Vec<u64> = (start as u64..end as u64).collect();
        let batch = make_batch(dataset, &indices, &model.device)?;
        let (x, given) = model.variables(&batch.data, batch.mask.as_ref())?;
        let mut rng = StdRng::seed_from_u64(step_seed(plan.seed ^ 0x5EED_5A4D, start as u64));
        let record =
            if start == 0 { Record { frames: record.frames.min(end), ..record } } else { Record::default() };
        let out = sample_with_progress(model, &settings, &x, &given, &mut rng, record, &mut |c, max| {
            bar.set_total(max as u64);
            bar.update(c as u64, &format!("steps, samples {start}..{end}"));
            let (done, total) = (c as u64, max as u64);
            options.hooks.report(&Progress { stage: Stage::Sample, label: &label, done, total, loss: None });
        })?;
        xs.push(out.x.clone());
        givens.push(given);
        references.push(batch.data);
        masks.extend(batch.mask);
        if first.is_none() {
            first = Some(out);
        }
        if options.hooks.stop_requested() {
            bar.finish();
            return Err(RuntimeError::Stopped(format!(
                "sampling stopped after {end} of {} samples",
                options.n
            )));
        }
    }
    bar.finish();
    let first = first.ok_or_else(|| RuntimeError::Config("no samples".into()))?;
    let sampled = Sampled { x: Tensor::cat(&xs, 0)?, ..first };
    let raw = model.mapper.to_raw(&sampled.x)?;
    let mask = if masks.len() == givens.len() { Some(Tensor::cat(&masks, 0)?) } else { None };
    Ok(Drawn {
        sampler: name,
        split,
        raw,
        reference: Tensor::cat(&references, 0)?,
        mask,
        given: Tensor::cat(&givens, 0)?,
        sampled,
    })
}

/// What `sr sample` did: the files it wrote and the scores of the samples.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    /// The sampler used.
    pub sampler: String,
    /// The data split whose givens conditioned the samples.
    pub split: String,
    /// Number of samples.
    pub samples: usize,
    /// The scores of the plan's metric evaluated on `split` (empty when the plan evaluates none there).
    pub scores: Scores,
    /// The files written (not serialised: `sr sample --format json` prints them a line each).
    #[serde(skip)]
    pub written: Vec<PathBuf>,
}

impl SampleReport {
    /// One line: the sampler, split, sample count and scores (the caption of `samples.png`).
    pub fn summary(&self) -> String {
        let scores: Vec<String> = self.scores.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        format!(
            "{} on {} ({} samples){}{}",
            self.sampler,
            self.split,
            self.samples,
            if scores.is_empty() { "" } else { ": " },
            scores.join(", ")
        )
    }
}

/// Samples `n` items from a trained checkpoint; writes `samples.png`, `denoising.gif`, what the
/// dataset's [`Output`] adds (see [`crate::outputs::samples`]) and, with `trace`, `trace.json`, and scores
/// the samples with the metric the plan evaluates on their split.
pub fn sample(plan: &Plan, options: &SampleOptions) -> Result<SampleReport> {
    let model = build_model(plan, options.device.as_deref())?;
    let record = Record { trace: options.trace, frames: options.n.min(GIF_SAMPLES) };
    let Drawn { sampler: name, split, raw, reference, given, sampled: out, .. } =
        draw(plan, &model, options, record)?;
    std::fs::create_dir_all(&options.out).map_err(|e| RuntimeError::io(&options.out, e))?;
    let mut written = Vec::new();
    let png = options.out.join("samples.png");
    let metric =
        plan.nodes_of(Kind::Metric).find(|n| split_of(n.params.get("on")).as_deref() == Some(split.as_str()));
    let scores = match metric {
        Some(n) => compute_metric(&n.component, &raw, Some(&reference))?,
        None => BTreeMap::new(),
    };
    let mut report = SampleReport { sampler: name, split, samples: options.n, scores, written: Vec::new() };
    let caption = report.summary();
    let split = &report.split;
    let output = crate::outputs::samples::output_of(plan, split)?;
    if output == Output::Points {
        written.extend(crate::outputs::samples::write_points(
            &options.out,
            &raw,
            Some(&reference),
            &caption,
        )?);
    } else {
        write_picture(&png, &raw, Some(&given), &caption)?;
        written.push(png);
    }
    if output == Output::Video {
        written.extend(crate::outputs::samples::write_video(&options.out, &raw)?);
    }
    if !out.frames.is_empty() && output != Output::Points && picture(&raw, None)?.is_some() {
        // At most 9 samples and 48 frames keep the animation small (under 1 MB for Sudoku).
        let keep = 48;
        let shown = out.frames[0].dim(0)?.min(GIF_SAMPLES);
        let stride = out.frames.len().div_ceil(keep);
        let mut frames = Vec::new();
        for (i, (f, t)) in out.frames.iter().zip(&out.frame_t).enumerate() {
            if i % stride == 0 || i + 1 == out.frames.len() {
                let f = f.narrow(0, 0, shown)?.to_device(&model.device)?;
                let t = &t[..shown * plan.shapes.variables];
                if let Some(p) = picture_at(&model.mapper.to_raw(&f)?, Some(&given), Some(t))? {
                    frames.push(p);
                }
            }
        }
        let video = Tensor::stack(&frames, 1)?; // [N, T, C, H, W]
        let side = video.dim(3)?.min(video.dim(4)?);
        let gif = options.out.join("denoising.gif");
        write_gif(&gif, &video, 80, GridOptions { columns: None, padding: 2, scale: upscale(side) })?;
        written.push(gif);
    }
    if options.trace {
        let path = options.out.join("trace.json");
        let json = serde_json::to_string(&serde_json::json!({"sampler": report.sampler, "steps": out.trace}))
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
        write_atomic(&path, json.as_bytes())?;
        written.push(path);
    }
    report.written = written;
    Ok(report)
}

/// The folder to load weights from: a run folder's `checkpoints/` if present. A path that does not
/// exist, or a folder with neither a `latest` pointer nor a checkpoint's `state.json`, is reported as
/// such (not as a corrupt checkpoint).
pub fn checkpoint_dir(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        return Err(RuntimeError::NoCheckpoint {
            path: path.to_path_buf(),
            what: "the path does not exist".into(),
        });
    }
    let sub = path.join("checkpoints");
    let dir = if sub.is_dir() { sub } else { path.to_path_buf() };
    if !dir.join("latest").exists() && !dir.join("state.json").exists() {
        return Err(RuntimeError::NoCheckpoint {
            path: path.to_path_buf(),
            what: "the folder holds no checkpoint (no `latest` pointer, no `state.json`)".into(),
        });
    }
    Ok(dir)
}

/// Samples shown in the denoising animation.
const GIF_SAMPLES: usize = 9;

/// The integer factor that brings pictures of `side` pixels to at least 96 pixels (MNIST's 28 → 4).
fn upscale(side: usize) -> u32 {
    96usize.div_ceil(side.max(1)).max(1) as u32
}

/// Raw samples as pictures `[N, C, H, W]`: Sudoku grids are drawn, images kept, videos shown by their
/// first frame; `None` for data without a picture (point sets).
fn picture(raw: &Tensor, given: Option<&Tensor>) -> Result<Option<Tensor>> {
    picture_at(raw, given, None)
}

/// [`picture`] during sampling: with `t` (`[N · V]`), Sudoku cells (one variable per cell) show how far
/// each is resolved (see [`render_sudoku_at`]).
fn picture_at(raw: &Tensor, given: Option<&Tensor>, t: Option<&[f32]>) -> Result<Option<Tensor>> {
    let raw = raw.to_device(&candle_core::Device::Cpu)?.to_dtype(DType::F32)?;
    let given = match given {
        Some(g) => Some(g.to_device(&candle_core::Device::Cpu)?.narrow(0, 0, raw.dim(0)?)?),
        None => None,
    };
    Ok(match raw.dims() {
        [n, 9, 9] => {
            let cell_t = t.filter(|t| t.len() == n * 81);
            Some(render_sudoku_at(&raw, given.as_ref(), cell_t)?)
        }
        [_, c, _, _] if *c == 1 || *c == 3 => Some(raw),
        [_, _, c, _, _] if *c == 1 || *c == 3 => Some(raw.narrow(1, 0, 1)?.squeeze(1)?),
        _ => None,
    })
}

/// Writes samples as one PNG grid under a caption line.
fn write_picture(path: &Path, raw: &Tensor, given: Option<&Tensor>, caption: &str) -> Result<()> {
    let Some(p) = picture(raw, given)? else {
        return Err(RuntimeError::Unsupported(format!("no picture for samples of shape {:?}", raw.dims())));
    };
    let scale = upscale(p.dim(2)?.min(p.dim(3)?)).max(2);
    let grid = crate::outputs::plot::with_caption(
        &image_grid(&p, GridOptions { columns: None, padding: 2, scale })?,
        caption,
    )?;
    grid.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| RuntimeError::Image { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_line_says_what_this_session_trained() {
        let r = |start, seconds, final_loss| Results {
            experiment: "x".into(),
            train_steps: 500,
            train_start: start,
            train_seconds: seconds,
            final_loss,
            parameters: 1234,
            ..Default::default()
        };
        let line = |r: Results| table(&r).lines().nth(2).unwrap_or_default().to_string();
        assert_eq!(
            line(r(0, 12.34, Some(0.5))),
            "trained 500 steps in 12.3 s, final loss 0.5000, 1234 parameters"
        );
        assert_eq!(
            line(r(300, 4.0, Some(0.25))),
            "trained steps 301–500 in 4.0 s (resumed at step 300), final loss 0.2500, 1234 parameters"
        );
        assert_eq!(
            line(r(500, 0.0, None)),
            "trained 500 steps in an earlier session (nothing left to train), 1234 parameters"
        );
    }

    #[test]
    fn table_reports_the_digit_classifier() {
        let row = ResultRow {
            sampler: "fixed".into(),
            metric: "sudoku_accuracy".into(),
            split: "test".into(),
            scores: [("accuracy".to_string(), 0.5)].into(),
            samples: 4,
            steps: 10.0,
            seconds: 1.0,
        };
        let mut results = Results { experiment: "x".into(), rows: vec![row], ..Default::default() };
        let plain = table(&results);
        assert!(!plain.contains("digit classifier"), "{plain}");
        assert!(!serde_json::to_string(&results).unwrap().contains("digit_classifier"));
        results.digit_classifier = Some(ClassifierReport { accuracy: 0.9976, held_out: 5000, seconds: 2.04 });
        let with = table(&results);
        assert!(with.starts_with(&plain), "{with}");
        assert!(
            with.ends_with(
                "\ndigit classifier: 99.76 % on 5,000 held-out cells (digits and empty), trained in 2.0 s\n"
            ),
            "{with}"
        );
        let json: serde_json::Value = serde_json::to_value(&results).unwrap();
        assert_eq!(json["digit_classifier"]["held_out"], 5000);
        assert_eq!(json["digit_classifier"]["accuracy"], 0.9976);
        assert_eq!(
            [0, 999, 1000, 1_234_567].map(thousands),
            ["0", "999", "1,000", "1,234,567"].map(String::from)
        );
    }
}
