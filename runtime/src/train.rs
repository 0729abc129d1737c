//! The training loop: batches → variables → per-variable times → noising → denoiser → losses →
//! AdamW/SGD with warm-up, clipping, EMA, checkpoints and a JSON-lines metrics log.
//!
//! Every random draw of step `s` comes from a generator seeded with `(seed, s)`, and every batch is a
//! pure function of its dataset indices, so a resumed run continues bit for bit where it stopped.
//!
//! A checkpoint is written to disk one step after it is taken, once the next step has computed a finite
//! loss and gradient from its weights (the checkpoint of the last step is written at once): when training
//! diverges, `latest` still names weights that train.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use sr_compiler::catalogue::Kind;
use sr_compiler::plan::{PValue, Plan};

use crate::checkpoint::{self, Checkpoint};
use crate::data::{build_dataset, Batch, Batcher};
use crate::error::{Result, RuntimeError};
use crate::hooks::{Hooks, Progress, Stage};
use crate::model::{node, Model};
use crate::optim::{build_optimizer, clip_grad_norm, named_vars, Ema, LrSchedule, Optimizer};
use crate::param::{solve, Parameterization};
use crate::progress::{ProgressBar, ProgressMode};

/// The non-component keys of the `train` block, with the catalogue defaults already filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    pub steps: u64,
    pub batch: usize,
    pub warmup: u64,
    /// EMA decay; 0 = off.
    pub ema: f64,
    /// Global gradient-norm bound; 0 = off.
    pub clip: f64,
    pub accumulate: usize,
    pub checkpoint_every: u64,
    /// Newest checkpoints kept on disk; 0 = all.
    pub keep_checkpoints: usize,
    pub log_every: u64,
}

impl TrainSettings {
    /// Reads the settings from `plan.train`.
    pub fn from_plan(plan: &Plan) -> Result<Self> {
        let int = |k: &str, d: i64| -> Result<u64> {
            match plan.train.get(k) {
                None => Ok(d as u64),
                Some(PValue::Int(i)) if *i >= 0 => Ok(*i as u64),
                Some(_) => Err(RuntimeError::param("train", k, "must be a non-negative integer")),
            }
        };
        let float = |k: &str, d: f64| -> Result<f64> {
            match plan.train.get(k) {
                None => Ok(d),
                Some(PValue::Float(f)) => Ok(*f),
                Some(PValue::Int(i)) => Ok(*i as f64),
                Some(_) => Err(RuntimeError::param("train", k, "must be a number")),
            }
        };
        let s = TrainSettings {
            steps: int("steps", 1000)?,
            batch: int("batch", 64)? as usize,
            warmup: int("warmup", 0)?,
            ema: float("ema", 0.999)?,
            clip: float("clip", 1.0)?,
            accumulate: int("accumulate", 1)?.max(1) as usize,
            checkpoint_every: int("checkpoint_every", 500)?,
            keep_checkpoints: int("keep_checkpoints", 0)? as usize,
            log_every: int("log_every", 50)?.max(1),
        };
        if s.batch == 0 {
            return Err(RuntimeError::param("train", "batch", "must be at least 1"));
        }
        Ok(s)
    }
}

/// One loss term of the mixture `loss = mse + 0.01 * nll`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossTerm {
    Mse,
    Nll,
    Vlb,
}

/// The weighted loss terms of a plan (`loss.mse`, `loss.nll`, ...).
pub fn loss_terms(plan: &Plan) -> Result<Vec<(f64, LossTerm)>> {
    let mut terms = Vec::new();
    for n in plan.nodes_of(Kind::Loss) {
        let weight = match n.params.get("weight") {
            Some(PValue::Float(w)) => *w,
            Some(PValue::Int(w)) => *w as f64,
            _ => 1.0,
        };
        let term = match n.component.as_str() {
            "mse" => LossTerm::Mse,
            "nll" => LossTerm::Nll,
            "vlb" => LossTerm::Vlb,
            other => return Err(RuntimeError::UnknownComponent { kind: "loss".into(), name: other.into() }),
        };
        terms.push((weight, term));
    }
    if terms.is_empty() {
        terms.push((1.0, LossTerm::Mse));
    }
    Ok(terms)
}

/// Mixes `seed` and `step` into the seed of that step's generator.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Standard normal noise of `shape` drawn on the host from `rng` (so that CPU and GPU runs draw the
/// same numbers), placed on `device`.
pub fn host_noise(rng: &mut StdRng, shape: &[usize], device: &candle_core::Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// Number of t bins of the per-bin loss in the metrics log.
pub const T_BINS: usize = 10;

/// What one training step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    /// Each term's unweighted value, by name.
    pub terms: BTreeMap<&'static str, f64>,
    /// Mean squared error of the target per t bin (`NaN` for an empty bin).
    pub mse_by_t: [f64; T_BINS],
}

/// The loss of one batch: returns the scalar loss tensor (for backward) and its statistics.
pub fn batch_loss(
    model: &Model,
    terms: &[(f64, LossTerm)],
    raw: &Tensor,
    mask: Option<&Tensor>,
    rng: &mut StdRng,
) -> Result<(Tensor, StepStats)> {
    let dev = &model.device;
    let (x, given) = model.variables(raw, mask)?;
    let (b, v, f) = x.dims3()?;
    let unknown: Vec<bool> = given.flatten_all()?.to_vec1::<f32>()?.iter().map(|g| *g < 0.5).collect();
    let time =
        model.time.as_ref().ok_or_else(|| RuntimeError::Config("the plan has no time sampler".into()))?;
    let draw = time.sample(rng, b, v, Some(&unknown))?;
    let (t, w) = draw.to_tensors(dev, DType::F32)?;
    let eps = host_noise(rng, &[b, v, f], dev)?;
    let setup = &model.flow;
    let z = setup.flow.noise(&x, &eps, &t)?;
    let target = setup.flow.target(setup.predict, &x, &eps, &t)?;
    let pred = model.denoiser.forward(&z, &t)?;
    let err = (&pred.out - &target)?.sqr()?.mean(D::Minus1)?; // [B, V]
    let active = draw.weights.iter().filter(|w| **w > 0.0).count().max(1) as f64;
    let weighted_mean = |per_var: &Tensor| -> Result<Tensor> { Ok(((per_var * &w)?.sum_all()? / active)?) };

    let mut total: Option<Tensor> = None;
    let mut stats = BTreeMap::new();
    for &(weight, term) in terms {
        let (name, value) = match term {
            LossTerm::Mse => ("mse", weighted_mean(&err)?),
            LossTerm::Nll => {
                let log_var = pred.log_var.as_ref().ok_or_else(|| {
                    RuntimeError::Config("the nll loss needs a denoiser with `uncertainty = true`".into())
                })?;
                let nll = ((err.detach() * log_var.neg()?.exp()?)? + log_var)?.affine(0.5, 0.0)?;
                ("nll", weighted_mean(&nll)?)
            }
            LossTerm::Vlb => ("vlb", weighted_mean(&(vlb_weights(model, &draw.t, b, v)? * &err)?)?),
        };
        stats.insert(name, value.to_dtype(DType::F64)?.to_scalar::<f64>()?);
        let scaled = (value * weight)?;
        total = Some(match total {
            Some(t) => (t + scaled)?,
            None => scaled,
        });
    }
    let total = total.ok_or_else(|| RuntimeError::Config("no loss term".into()))?;
    let loss = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;

    let mut sums = [0.0; T_BINS];
    let mut counts = [0usize; T_BINS];
    let err_host = err.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    for ((e, t), known) in err_host.iter().zip(&draw.t).zip(unknown.iter().map(|u| !u)) {
        if !known {
            let bin = ((t * T_BINS as f64) as usize).min(T_BINS - 1);
            sums[bin] += e;
            counts[bin] += 1;
        }
    }
    let mut mse_by_t = [f64::NAN; T_BINS];
    for i in 0..T_BINS {
        if counts[i] > 0 {
            mse_by_t[i] = sums[i] / counts[i] as f64;
        }
    }
    Ok((total, StepStats { loss, terms: stats, mse_by_t }))
}

/// Per-variable weights `[B, V]` that turn the squared error of the prediction into the
/// continuous-time variational bound: `½ |d SNR / dt| · (dx̂/dpred)²`, capped at `VLB_CAP`.
fn vlb_weights(model: &Model, times: &[f64], b: usize, v: usize) -> Result<Tensor> {
    let flow = &model.flow.flow;
    let predict = model.flow.predict;
    let mut w = Vec::with_capacity(times.len());
    for &t in times {
        let value = if t <= 0.0 {
            0.0
        } else {
            let h = 1e-4_f64.min(t / 2.0);
            let snr = |s: f64| flow.logsnr(s).exp();
            let dsnr = (snr(t - h) - snr((t + h).min(1.0))) / (2.0 * h);
            // x̂ is linear in the prediction: its slope is x̂(z = 0, p = 1).
            let slope = match predict {
                Parameterization::X0 => 1.0,
                _ => solve(flow, t, 0.0, 1.0, predict)?.0,
            };
            (0.5 * dsnr.abs() * slope * slope).min(VLB_CAP)
        };
        w.push(value as f32);
    }
    Ok(Tensor::from_vec(w, (b, v), &model.device)?)
}

/// Upper bound of the per-variable VLB weight (the bound is infinite at t → 0 for most flows).
pub const VLB_CAP: f64 = 1e3;

/// Where a run keeps its files.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub root: PathBuf,
}

impl RunPaths {
    /// Checkpoints folder.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// Metrics log (JSON lines).
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// Loss-curve picture.
    pub fn loss_curve(&self) -> PathBuf {
        self.root.join("loss.png")
    }
}

/// Options of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub paths: RunPaths,
    pub resume: bool,
    /// Draw a live progress line (terminals); otherwise print a line per log interval.
    pub progress: bool,
    /// A progress callback and a stop flag, read after every step.
    pub hooks: Hooks,
}

/// The result of a training run: the EMA weights (if any) and what was measured.
pub struct Trained {
    pub ema: Option<Ema>,
    /// Step reached (equals the plan's steps when training completed).
    pub step: u64,
    /// Step the run started from (non-zero when resumed).
    pub start: u64,
    /// Loss of every step run in this session, in order.
    pub losses: Vec<f64>,
    pub seconds: f64,
}

/// What one optimisation step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Loss statistics (the loss averaged over micro-batches).
    pub stats: StepStats,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the step.
    pub lr: f64,
}

/// The optimisation state of a training run: loss terms, optimizer, learning-rate schedule, gradient
/// clipping and EMA. [`train`] drives one; benchmarks and embedders can drive one step at a time.
pub struct Trainer {
    pub settings: TrainSettings,
    pub terms: Vec<(f64, LossTerm)>,
    pub optimizer: Box<dyn Optimizer>,
    pub schedule: LrSchedule,
    pub ema: Option<Ema>,
    seed: u64,
    vars: Vec<Var>,
}

impl Trainer {
    /// The optimizer, schedule and EMA of `plan`'s `train` block over the variables of `model`.
    pub fn from_plan(plan: &Plan, model: &Model) -> Result<Trainer> {
        let settings = TrainSettings::from_plan(plan)?;
        let terms = loss_terms(plan)?;
        let named = named_vars(&model.varmap);
        let opt_node = node(plan, "train.optimizer")?;
        let optimizer = build_optimizer(&opt_node.component, &opt_node.params, named.clone())?;
        let base_lr = optimizer.learning_rate();
        let schedule = match plan.node("train.lr_schedule") {
            Some(n) => {
                let final_fraction = match n.params.get("final") {
                    Some(PValue::Float(f)) => *f,
                    Some(PValue::Int(i)) => *i as f64,
                    _ => 0.0,
                };
                LrSchedule::from_name(&n.component, final_fraction, base_lr, settings.warmup, settings.steps)
                    .ok_or_else(|| RuntimeError::UnknownComponent {
                        kind: "lr_schedule".into(),
                        name: n.component.clone(),
                    })?
            }
            None => LrSchedule::from_name("constant", 0.0, base_lr, settings.warmup, settings.steps)
                .ok_or_else(|| RuntimeError::Config("constant learning rate".into()))?,
        };
        let ema = if settings.ema > 0.0 { Some(Ema::new(&named, settings.ema)?) } else { None };
        let vars = named.into_iter().map(|(_, v)| v).collect();
        Ok(Trainer { settings, terms, optimizer, schedule, ema, seed: plan.seed, vars })
    }

    /// Runs optimisation step `step` on `batches` (one per micro-batch, `settings.accumulate` of them):
    /// loss, backward, gradient clipping, optimizer update and EMA. Every random draw comes from the
    /// generator of `(seed, step)`. Fails without updating when the loss or gradient is not finite.
    pub fn step(&mut self, model: &Model, step: u64, batches: &[Batch]) -> Result<StepOutcome> {
        if batches.is_empty() {
            return Err(RuntimeError::Config("a training step needs at least one batch".into()));
        }
        let mut rng = StdRng::seed_from_u64(step_seed(self.seed, step));
        let lr = self.schedule.lr(step);
        self.optimizer.set_learning_rate(lr);
        let parts = batches.len() as f64;
        let mut total: Option<Tensor> = None;
        let mut stats: Option<StepStats> = None;
        for batch in batches {
            let (loss, s) = batch_loss(model, &self.terms, &batch.data, batch.mask.as_ref(), &mut rng)?;
            let scaled = if batches.len() == 1 { loss } else { (loss / parts)? };
            total = Some(match total {
                Some(t) => (t + scaled)?,
                None => scaled,
            });
            stats = Some(match stats {
                None => s,
                Some(mut acc) => {
                    acc.loss += s.loss;
                    acc
                }
            });
        }
        let (Some(total), Some(mut stats)) = (total, stats) else {
            return Err(RuntimeError::Config("a training step needs at least one batch".into()));
        };
        stats.loss /= parts;
        if !stats.loss.is_finite() {
            return Err(RuntimeError::Diverged {
                step: step + 1,
                what: format!("the loss is {}", stats.loss),
            });
        }
        let mut grads = total.backward()?;
        let grad_norm = clip_grad_norm(&mut grads, &self.vars, self.settings.clip)?;
        if !grad_norm.is_finite() {
            return Err(RuntimeError::Diverged {
                step: step + 1,
                what: format!("the gradient norm is {grad_norm}"),
            });
        }
        self.optimizer.step(&grads)?;
        if let Some(e) = self.ema.as_mut() {
            e.update_at(step)?;
        }
        Ok(StepOutcome { stats, grad_norm, lr })
    }
}

/// Trains `model` as `plan` says, writing checkpoints and metrics under `options.paths`.
pub fn train(plan: &Plan, model: &Model, options: &TrainOptions) -> Result<Trained> {
    let mut trainer = Trainer::from_plan(plan, model)?;
    let settings = trainer.settings.clone();
    let train_node = node(plan, "data.train")?;
    let batcher =
        Batcher::new(build_dataset(&train_node.component, &train_node.params, plan.seed)?, plan.seed);

    let ckpt_dir = options.paths.checkpoints();
    let mut start = 0;
    if options.resume {
        match checkpoint::load_latest(&ckpt_dir, &model.device)? {
            Some(ck) => {
                ck.restore(&model.varmap, trainer.ema.as_mut(), Some(trainer.optimizer.as_mut()))?;
                start = ck.step;
            }
            None => {
                return Err(RuntimeError::Checkpoint {
                    path: ckpt_dir.clone(),
                    reason: "no checkpoint to resume from".into(),
                })
            }
        }
    }
    std::fs::create_dir_all(&options.paths.root).map_err(|e| RuntimeError::io(&options.paths.root, e))?;
    let metrics_path = options.paths.metrics();
    if options.resume {
        truncate_log(&metrics_path, start)?;
    }
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(options.resume)
        .write(true)
        .truncate(!options.resume)
        .open(&metrics_path)
        .map_err(|e| RuntimeError::io(&metrics_path, e))?;

    let began = Instant::now();
    let mut losses = Vec::new();
    // Sum and count of the losses since the last log line.
    let mut interval = (0.0, 0usize);
    let mode = if options.progress { ProgressMode::Live } else { ProgressMode::Log(10.0) };
    let mut progress = ProgressBar::new("train", start, settings.steps, mode);
    let rng_state = serde_json::json!({"scheme": "per-step", "seed": plan.seed});
    // A checkpoint taken after step s is written once step s + 1 has shown that its weights give a
    // finite loss and gradient, so a diverging run never leaves a bad checkpoint as `latest`.
    let mut pending: Option<Checkpoint> = None;
    for step in start..settings.steps {
        if options.hooks.stop_requested() {
            progress.finish();
            let rng = rng_state.clone();
            return Err(stop_training(model, &trainer, &ckpt_dir, step, start, &settings, rng));
        }
        let batches = (0..settings.accumulate as u64)
            .map(|micro| {
                batcher.batch(step * settings.accumulate as u64 + micro, settings.batch, &model.device)
            })
            .collect::<Result<Vec<_>>>()?;
        let StepOutcome { stats, grad_norm, lr } = trainer.step(model, step, &batches)?;
        // The weights of the pending checkpoint gave a finite loss and gradient: it is a good one.
        if let Some(ck) = pending.take() {
            save_and_prune(&ckpt_dir, &ck, settings.keep_checkpoints)?;
        }
        losses.push(stats.loss);
        interval.0 += stats.loss;
        interval.1 += 1;
        let done = step + 1;
        if done % settings.log_every == 0 || done == settings.steps {
            let mean_loss = interval.0 / interval.1.max(1) as f64;
            interval = (0.0, 0);
            let elapsed = began.elapsed().as_secs_f64();
            let line = serde_json::json!({
                "step": done,
                "loss": mean_loss,
                "last_loss": stats.loss,
                "terms": stats.terms,
                "mse_by_t": stats.mse_by_t.iter().map(|x| if x.is_finite() { Some(*x) } else { None }).collect::<Vec<_>>(),
                "lr": lr,
                "grad_norm": grad_norm,
                "steps_per_sec": (done - start) as f64 / elapsed.max(1e-9),
                "seconds": elapsed,
            });
            // One write per line, so that an interrupted run leaves at most one partial line.
            metrics
                .write_all(format!("{line}\n").as_bytes())
                .map_err(|e| RuntimeError::io(&metrics_path, e))?;
        }
        progress.update(done, &format!("loss {:.4} {:.1} steps/s", stats.loss, progress.rate(done)));
        options.hooks.report(&Progress {
            stage: Stage::Train,
            label: "train",
            done,
            total: settings.steps,
            loss: Some(stats.loss),
        });
        let at_checkpoint = settings.checkpoint_every > 0 && done % settings.checkpoint_every == 0;
        if at_checkpoint || done == settings.steps {
            let ck = Checkpoint::capture(
                done,
                &model.varmap,
                trainer.ema.as_ref(),
                Some(trainer.optimizer.as_ref()),
                rng_state.clone(),
            )?;
            if done == settings.steps {
                save_and_prune(&ckpt_dir, &ck, settings.keep_checkpoints)?;
            } else {
                pending = Some(ck);
            }
        }
    }
    progress.finish();
    let seconds = began.elapsed().as_secs_f64();
    if !losses.is_empty() {
        // A resumed run plots the logged interval means of the whole run; a fresh one every step.
        let curve = if start > 0 {
            read_losses(&metrics_path).unwrap_or_else(|| losses.clone())
        } else {
            losses.clone()
        };
        crate::plot::loss_curve(&options.paths.loss_curve(), &curve)?;
    }
    Ok(Trained { ema: trainer.ema, step: settings.steps.max(start), start, losses, seconds })
}

/// Saves a checkpoint of the `step` steps done (when this session took any) and says so in the error
/// that ends an interrupted training run.
fn stop_training(
    model: &Model,
    trainer: &Trainer,
    ckpt_dir: &Path,
    step: u64,
    start: u64,
    settings: &TrainSettings,
    rng_state: serde_json::Value,
) -> RuntimeError {
    if step == start {
        let saved =
            if start > 0 { format!("; the checkpoint of step {start} is unchanged") } else { String::new() };
        return RuntimeError::Interrupted(format!("training stopped before step {}{saved}", start + 1));
    }
    let saved = Checkpoint::capture(
        step,
        &model.varmap,
        trainer.ema.as_ref(),
        Some(trainer.optimizer.as_ref()),
        rng_state,
    )
    .and_then(|ck| save_and_prune(ckpt_dir, &ck, settings.keep_checkpoints));
    match saved {
        Ok(()) => RuntimeError::Interrupted(format!(
            "training stopped after step {step} of {}; checkpoint saved in {}",
            settings.steps,
            ckpt_dir.join(checkpoint::step_dir_name(step)).display()
        )),
        Err(e) => e,
    }
}

/// Loads the EMA (or raw) weights of the latest checkpoint under `dir` into `model`.
pub fn load_weights(model: &Model, dir: &Path, use_ema: bool) -> Result<u64> {
    let ck = match checkpoint::latest(dir)? {
        Some(_) => checkpoint::load_latest(dir, &model.device)?,
        None => Some(checkpoint::load(dir, &model.device)?),
    }
    .ok_or_else(|| RuntimeError::Checkpoint {
        path: dir.to_path_buf(),
        reason: "no checkpoint found".into(),
    })?;
    let weights = match (&ck.ema, use_ema) {
        (Some(ema), true) => ema,
        _ => &ck.model,
    };
    for (name, var) in named_vars(&model.varmap) {
        let t = weights.get(&name).ok_or_else(|| RuntimeError::Checkpoint {
            path: dir.to_path_buf(),
            reason: format!("no weight `{name}`: the checkpoint belongs to another model"),
        })?;
        if t.dims() != var.dims() {
            return Err(RuntimeError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!("weight `{name}` has shape {:?}, the model needs {:?}", t.dims(), var.dims()),
            });
        }
        var.set(&t.to_device(&model.device)?.to_dtype(var.dtype())?)?;
    }
    Ok(ck.step)
}

/// Keeps the complete lines of the metrics log at `path` up to step `step`: a resumed run continues the
/// log where its checkpoint was taken, without the lines an interrupted run wrote after it.
fn truncate_log(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RuntimeError::io(path, e)),
    };
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|j| j.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= step)
        })
        .collect();
    if kept.len() != text.len() {
        checkpoint::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// Saves `ck` and then removes the checkpoints beyond the newest `keep` (0 = keep all).
fn save_and_prune(dir: &Path, ck: &Checkpoint, keep: usize) -> Result<()> {
    checkpoint::save(dir, ck)?;
    checkpoint::prune(dir, keep)?;
    Ok(())
}

/// The `loss` column of a metrics log.
fn read_losses(path: &Path) -> Option<Vec<f64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| j.get("loss").and_then(|x| x.as_f64()))
        .collect();
    (!v.is_empty()).then_some(v)
}
