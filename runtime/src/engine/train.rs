//! The training loop: batches → variables → per-variable times → noising → denoiser → losses →
//! AdamW/SGD with warm-up, clipping, EMA, checkpoints and a JSON-lines metrics log.
//!
//! Every random draw of sample `i` of step `s` comes from a generator seeded with `(seed, s, i)`, and
//! every batch is a pure function of its dataset indices, so a resumed run continues bit for bit where
//! it stopped, and a batch split across the ranks of a data-parallel run (`crate::engine::distributed`) draws
//! exactly what one process draws.
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
use serde::Deserialize;
use sr_compiler::catalogue::Kind;
use sr_compiler::plan::Plan;

use crate::datasets::{make_batch, Batch, Batcher};
use crate::engine::checkpoint::{self, Checkpoint, PlanKeys};
use crate::engine::distributed::{self, World};
use crate::engine::hooks::{Hooks, Progress, Stage};
use crate::engine::pipeline::{node, Pipeline, TrainSettings};
use crate::error::{Result, RuntimeError};
use crate::flows::parameterization::{solve, Parameterization};
use crate::init::step_seed;
use crate::losses::LossTerm;
use crate::optimizers::{clip_grad_norm, named_vars, Ema, LrSchedule, Optimizer};
use crate::outputs::progress::{ProgressBar, ProgressMode};
use crate::outputs::tensorboard::EventWriter;
use crate::pvalue::config;
use crate::registry::{build_dataset, build_optimizer, Registry};
use crate::time_samplers::RowDraw;

/// The plan parameters of a loss node: its weight in the mixture.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Weighted {
    weight: f64,
}

/// The weighted loss terms of a plan (`loss.mse`, `loss.nll`, ...).
pub fn loss_terms(plan: &Plan) -> Result<Vec<(f64, LossTerm)>> {
    let mut terms = Vec::new();
    for n in plan.nodes_of(Kind::Loss) {
        let weight = config::<Weighted>(&n.component, &n.params)?.weight;
        terms.push((weight, Registry::get().build_loss(&n.component, &n.params)?));
    }
    if terms.is_empty() {
        return Err(RuntimeError::Config("the plan has no loss term".into()));
    }
    Ok(terms)
}

/// The seed of the generator of sample `position` of micro-batch `micro` of step `step`. Each sample
/// draws its times and noise from its own generator, so its draws do not depend on the other samples
/// of its batch, nor on how the batch is split across ranks.
pub fn sample_seed(seed: u64, step: u64, micro: u64, position: u64) -> u64 {
    step_seed(step_seed(seed, step), (micro << 32) ^ position)
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

/// A batch (or a rank's part of one) with its variables, times and noise drawn.
pub struct DrawnBatch {
    /// Variables `[B, V, F]`.
    pub x: Tensor,
    /// Per variable, whether it is to be generated (not given).
    pub unknown: Vec<bool>,
    /// Times and weights; the batch-level scale comes with [`crate::time_samplers::TimeSampler::finish`].
    pub times: RowDraw,
    /// Standard normal noise `[B, V, F]`.
    pub eps: Tensor,
}

/// Maps `raw` to variables and draws each sample's times and noise from the generator seeded with
/// its entry of `seeds`.
pub fn draw_batch(
    model: &Pipeline,
    raw: &Tensor,
    mask: Option<&Tensor>,
    seeds: &[u64],
) -> Result<DrawnBatch> {
    let dev = &model.device;
    let (x, given) = model.variables(raw, mask)?;
    let (b, v, f) = x.dims3()?;
    if seeds.len() != b {
        return Err(RuntimeError::Shape(format!("{} sample seeds for a batch of {b}", seeds.len())));
    }
    let unknown: Vec<bool> = given.flatten_all()?.to_vec1::<f32>()?.iter().map(|g| *g < 0.5).collect();
    let time =
        model.time.as_ref().ok_or_else(|| RuntimeError::Config("the plan has no time sampler".into()))?;
    let mut rngs: Vec<StdRng> = seeds.iter().map(|s| StdRng::seed_from_u64(*s)).collect();
    let times = time.sample_rows(&mut rngs, b, v, Some(&unknown))?;
    let mut noise: Vec<f32> = Vec::with_capacity(b * v * f);
    for rng in &mut rngs {
        noise.extend((0..v * f).map(|_| -> f32 { StandardNormal.sample(rng) }));
    }
    let eps = Tensor::from_vec(noise, (b, v, f), dev)?;
    Ok(DrawnBatch { x, unknown, times, eps })
}

/// The loss of a drawn batch whose time weights are finished, normalised by `trained`, the number of
/// trained variables of the whole batch (all ranks' parts). Returns the scalar loss tensor (for
/// backward) and its sums: the loss, each term, then the squared-error sums and counts per t bin.
pub fn batch_loss(
    model: &Pipeline,
    terms: &[(f64, LossTerm)],
    batch: &DrawnBatch,
    trained: usize,
) -> Result<(Tensor, Vec<f64>)> {
    let dev = &model.device;
    let draw = &batch.times.sample;
    let (b, v, _) = batch.x.dims3()?;
    let (t, w) = draw.to_tensors(dev, DType::F32)?;
    let setup = &model.flow;
    let z = setup.flow.noise(&batch.x, &batch.eps, &t)?;
    let target = setup.flow.target(setup.predict, &batch.x, &batch.eps, &t)?;
    let pred = model.train_forward(&z, &t)?;
    let err = (&pred.out - &target)?.sqr()?.mean(D::Minus1)?; // [B, V]
    let active = trained.max(1) as f64;
    let weighted_mean = |per_var: &Tensor| -> Result<Tensor> { Ok(((per_var * &w)?.sum_all()? / active)?) };

    let mut total: Option<Tensor> = None;
    let mut sums = vec![0.0];
    for &(weight, term) in terms {
        let value = match term {
            LossTerm::Mse => weighted_mean(&err)?,
            LossTerm::Nll => {
                let log_var = pred.log_var.as_ref().ok_or_else(|| {
                    RuntimeError::Config("the nll loss needs a denoiser with `uncertainty = true`".into())
                })?;
                let nll = ((err.detach() * log_var.neg()?.exp()?)? + log_var)?.affine(0.5, 0.0)?;
                weighted_mean(&nll)?
            }
            LossTerm::Vlb => weighted_mean(&(vlb_weights(model, &draw.t, b, v)? * &err)?)?,
        };
        sums.push(value.to_dtype(DType::F64)?.to_scalar::<f64>()?);
        let scaled = (value * weight)?;
        total = Some(match total {
            Some(t) => (t + scaled)?,
            None => scaled,
        });
    }
    let total = total.ok_or_else(|| RuntimeError::Config("no loss term".into()))?;
    sums[0] = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;

    let mut bins = [0.0; 2 * T_BINS];
    let err_host = err.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    for ((e, t), unknown) in err_host.iter().zip(&draw.t).zip(&batch.unknown) {
        if *unknown {
            let bin = ((t * T_BINS as f64) as usize).min(T_BINS - 1);
            bins[bin] += e;
            bins[T_BINS + bin] += 1.0;
        }
    }
    sums.extend(bins);
    Ok((total, sums))
}

/// The statistics of a step from the sums of [`batch_loss`] (added over micro-batches and ranks).
fn step_stats(terms: &[(f64, LossTerm)], sums: &[f64], parts: f64) -> StepStats {
    let names = terms.iter().map(|(_, term)| match term {
        LossTerm::Mse => "mse",
        LossTerm::Nll => "nll",
        LossTerm::Vlb => "vlb",
    });
    let terms = names.zip(&sums[1..]).map(|(n, v)| (n, v / parts)).collect();
    let bins = &sums[sums.len() - 2 * T_BINS..];
    let mut mse_by_t = [f64::NAN; T_BINS];
    for i in 0..T_BINS {
        if bins[T_BINS + i] > 0.0 {
            mse_by_t[i] = bins[i] / bins[T_BINS + i];
        }
    }
    StepStats { loss: sums[0] / parts, terms, mse_by_t }
}

/// Per-variable weights `[B, V]` that turn the squared error of the prediction into the
/// continuous-time variational bound: `½ |d SNR / dt| · (dx̂/dpred)²`, capped at `VLB_CAP`.
fn vlb_weights(model: &Pipeline, times: &[f64], b: usize, v: usize) -> Result<Tensor> {
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
    /// Loss plot (`loss.png`; `loss.svg` beside it).
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
    /// The run's TensorBoard event file, open for the evaluation's scalars and images (rank 0 only).
    pub events: Option<EventWriter>,
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
    /// With `precision = f16`: the gradient overflowed at the current loss scale, so the weights were
    /// not updated and the scale was halved.
    pub skipped: bool,
    /// An interrupt (SIGINT, SIGTERM) arrived before this step's gradient exchange, on this process
    /// or, in a data-parallel run, on any rank: every rank sees the same value.
    pub interrupted: bool,
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
    /// The factor the loss is multiplied by before backward (1 except with `precision = f16`).
    pub loss_scale: f64,
    /// Steps in a row without an overflow at the current loss scale.
    good_steps: u64,
}

impl Trainer {
    /// The optimizer, schedule and EMA of `plan`'s `train` block over the variables of `model`.
    pub fn from_plan(plan: &Plan, model: &Pipeline) -> Result<Trainer> {
        let settings = TrainSettings::from_plan(plan)?
            .ok_or_else(|| RuntimeError::Config("the plan has no `train` block".into()))?;
        let terms = loss_terms(plan)?;
        let named = named_vars(&model.varmap);
        let opt_node = node(plan, "train.optimizer")?;
        let optimizer = build_optimizer(&opt_node.component, &opt_node.params, named.clone())?;
        let base_lr = optimizer.learning_rate();
        let lr_node = node(plan, "train.lr_schedule")?;
        let decay = Registry::get().build_lr_decay(&lr_node.component, &lr_node.params)?;
        let schedule = LrSchedule { base: base_lr, warmup: settings.warmup, total: settings.steps, decay };
        let ema = if settings.ema > 0.0 { Some(Ema::new(&named, settings.ema)?) } else { None };
        let vars = named.into_iter().map(|(_, v)| v).collect();
        let loss_scale = model.low.as_ref().map_or(1.0, |l| l.precision.initial_loss_scale());
        Ok(Trainer {
            settings,
            terms,
            optimizer,
            schedule,
            ema,
            seed: plan.seed,
            vars,
            loss_scale,
            good_steps: 0,
        })
    }

    /// Runs optimisation step `step` on `batches` (one per micro-batch, `settings.accumulate` of them):
    /// loss, backward, gradient clipping, optimizer update and EMA. Sample `i` of micro-batch `m` draws
    /// from the generator of [`sample_seed`]`(seed, step, m, i)`. Fails without updating when the loss
    /// or gradient is not finite.
    pub fn step(&mut self, model: &Pipeline, step: u64, batches: &[Batch]) -> Result<StepOutcome> {
        self.step_part(model, step, batches, 0, &World::single())
    }

    /// Runs optimisation step `step` as one rank of `world`: `batches[m]` holds the samples at
    /// positions `offset..` of micro-batch `m`, and the other ranks hold the rest. The loss is
    /// normalised over the whole batch, gradients and statistics are summed over the ranks by one
    /// all-reduce, and every rank applies the same update; the result equals that of one process
    /// given the whole batch, up to rounding. A non-finite loss or gradient on any rank fails the
    /// step on every rank.
    pub fn step_part(
        &mut self,
        model: &Pipeline,
        step: u64,
        batches: &[Batch],
        offset: usize,
        world: &World,
    ) -> Result<StepOutcome> {
        if batches.is_empty() {
            return Err(RuntimeError::Config("a training step needs at least one batch".into()));
        }
        let time =
            model.time.as_ref().ok_or_else(|| RuntimeError::Config("the plan has no time sampler".into()))?;
        if let Some(low) = &model.low {
            low.refresh()?;
        }
        let lr = self.schedule.lr(step);
        self.optimizer.set_learning_rate(lr);
        let mut drawn = Vec::with_capacity(batches.len());
        let mut counts = Vec::with_capacity(2 * batches.len());
        for (m, batch) in batches.iter().enumerate() {
            let seeds: Vec<u64> = (0..batch.indices.len())
                .map(|i| sample_seed(self.seed, step, m as u64, (offset + i) as u64))
                .collect();
            let d = draw_batch(model, &batch.data, batch.mask.as_ref(), &seeds)?;
            counts.extend([d.times.unknown as f64, d.times.trained as f64]);
            drawn.push(d);
        }
        world.sum_f64("the loss normalisation", &mut counts)?;
        let parts = batches.len() as f64;
        let mut total: Option<Tensor> = None;
        let mut sums: Vec<f64> = Vec::new();
        for (m, d) in drawn.iter_mut().enumerate() {
            let (unknown, trained) = (counts[2 * m] as usize, counts[2 * m + 1] as usize);
            time.finish(&mut d.times.sample, unknown, trained);
            let (loss, s) = batch_loss(model, &self.terms, d, trained)?;
            let scaled = if batches.len() == 1 { loss } else { (loss / parts)? };
            total = Some(match total {
                Some(t) => (t + scaled)?,
                None => scaled,
            });
            if sums.is_empty() {
                sums = s;
            } else {
                sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            }
        }
        let total =
            total.ok_or_else(|| RuntimeError::Config("a training step needs at least one batch".into()))?;
        if world.size() == 1 && !sums[0].is_finite() {
            return Err(RuntimeError::Diverged {
                step: step + 1,
                what: format!("the loss is {}", sums[0] / parts),
            });
        }
        let scaled = self.loss_scale != 1.0;
        let mut grads = if scaled { (total * self.loss_scale)?.backward()? } else { total.backward()? };
        if let Some(low) = &model.low {
            low.to_master_grads(&mut grads, self.loss_scale)?;
        }
        // Every rank learns in the same all-reduce whether any rank was asked to stop.
        let mut interrupted = crate::engine::interrupt::requested();
        if world.size() > 1 {
            sums.push(f64::from(u8::from(interrupted)));
            distributed::sum_gradients(world, &mut grads, &self.vars, &mut sums)?;
            interrupted = sums.pop().is_some_and(|n| n > 0.0);
        }
        let stats = step_stats(&self.terms, &sums, parts);
        if !stats.loss.is_finite() {
            return Err(RuntimeError::Diverged {
                step: step + 1,
                what: format!("the loss is {}", stats.loss),
            });
        }
        let grad_norm = clip_grad_norm(&mut grads, &self.vars, self.settings.clip)?;
        if scaled {
            if !grad_norm.is_finite() {
                self.loss_scale /= 2.0;
                self.good_steps = 0;
                return Ok(StepOutcome { stats, grad_norm, lr, skipped: true, interrupted });
            }
            self.good_steps += 1;
            if self.good_steps >= crate::engine::precision::SCALE_GROWTH_INTERVAL {
                self.loss_scale *= 2.0;
                self.good_steps = 0;
            }
        }
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
        Ok(StepOutcome { stats, grad_norm, lr, skipped: false, interrupted })
    }

    /// A hash of the model's weights, equal on two ranks exactly when their weights are bit-identical.
    pub fn weights_hash(&self) -> Result<u64> {
        let mut h = distributed::HASH_START;
        for v in &self.vars {
            h = distributed::hash_f32(
                h,
                &v.as_tensor().flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            );
        }
        Ok(h)
    }
}

/// Trains `model` as `plan` says, writing checkpoints and metrics under `options.paths`.
pub fn train(plan: &Plan, model: &Pipeline, options: &TrainOptions) -> Result<Trained> {
    let mut trainer = Trainer::from_plan(plan, model)?;
    let settings = trainer.settings.clone();
    let train_node = node(plan, "data.train")?;
    let batcher =
        Batcher::new(build_dataset(&train_node.component, &train_node.params, plan.seed)?, plan.seed);
    // With several ranks, each draws its contiguous part of every batch; only rank 0 writes files.
    let world = distributed::world();
    if settings.batch < world.size() {
        return Err(RuntimeError::Distributed(format!(
            "the batch of {} samples cannot be split across {} ranks",
            settings.batch,
            world.size()
        )));
    }
    let shard = world.shard(settings.batch);
    let root = world.is_root();

    let ckpt_dir = options.paths.checkpoints();
    let keys = PlanKeys::of(plan);
    let mut start = 0;
    if options.resume {
        match checkpoint::load_latest(&ckpt_dir, &model.device)? {
            Some(ck) => {
                PlanKeys::check(ck.plan.as_ref(), plan, &ckpt_dir, true)?;
                ck.restore(&model.varmap, trainer.ema.as_mut(), Some(trainer.optimizer.as_mut()))?;
                start = ck.step;
                if root && start > settings.steps {
                    eprintln!(
                        "note: the checkpoint is at step {start}, past the {} steps asked for: nothing is \
                         trained; the step-{start} weights are used",
                        settings.steps
                    );
                }
            }
            None => {
                return Err(RuntimeError::NoCheckpoint {
                    path: ckpt_dir.clone(),
                    what: "nothing to resume from (start the run without `--resume`)".into(),
                })
            }
        }
    }
    let metrics_path = options.paths.metrics();
    let mut metrics = if root {
        std::fs::create_dir_all(&options.paths.root).map_err(|e| RuntimeError::io(&options.paths.root, e))?;
        if options.resume {
            truncate_log(&metrics_path, start)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(options.resume)
            .write(true)
            .truncate(!options.resume)
            .open(&metrics_path)
            .map_err(|e| RuntimeError::io(&metrics_path, e))?;
        Some(file)
    } else {
        None
    };
    if world.size() > 1 {
        world.check_same_weights(start, trainer.weights_hash()?)?;
    }

    // TensorBoard events, like every file of the run folder, are written by rank 0 alone.
    let mut events = if root { Some(EventWriter::create(&options.paths.root, start)?) } else { None };
    let began = Instant::now();
    let mut losses = Vec::new();
    // Sum and count of the losses since the last log line.
    let mut interval = (0.0, 0usize);
    let mode = match (root, options.progress) {
        (false, _) => ProgressMode::Off,
        (true, true) => ProgressMode::Live,
        (true, false) => ProgressMode::Log(10.0),
    };
    let mut progress = ProgressBar::new("train", start, settings.steps, mode);
    let rng_state = serde_json::json!({"scheme": "per-sample", "seed": plan.seed});
    // A checkpoint taken after step s is written once step s + 1 has shown that its weights give a
    // finite loss and gradient, so a diverging run never leaves a bad checkpoint as `latest`.
    let mut pending: Option<Checkpoint> = None;
    let capture = |done: u64, trainer: &Trainer| -> Result<Checkpoint> {
        let mut ck = Checkpoint::capture(
            done,
            &model.varmap,
            trainer.ema.as_ref(),
            Some(trainer.optimizer.as_ref()),
            rng_state.clone(),
        )?;
        ck.plan = Some(keys.clone());
        Ok(ck)
    };
    let interrupts = (!options.hooks.caller_handles_signals).then(crate::engine::interrupt::Guard::install);
    for step in start..settings.steps {
        let batches = (0..settings.accumulate as u64)
            .map(|micro| {
                let indices = batcher.indices(step * settings.accumulate as u64 + micro, settings.batch);
                make_batch(batcher.dataset(), &indices[shard.clone()], &model.device)
            })
            .collect::<Result<Vec<_>>>()?;
        let StepOutcome { stats, grad_norm, lr, interrupted, .. } =
            trainer.step_part(model, step, &batches, shard.start, world)?;
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
            if let Some(m) = metrics.as_mut() {
                m.write_all(format!("{line}\n").as_bytes())
                    .map_err(|e| RuntimeError::io(&metrics_path, e))?;
            }
            if let Some(ev) = events.as_mut() {
                write_scalars(ev, &line)?;
            }
            if world.size() > 1 {
                world.check_same_weights(done, trainer.weights_hash()?)?;
            }
        }
        progress.update(done, &format!("loss {:.4} {:.1} steps/s", stats.loss, progress.rate(done)));
        options.hooks.report(&Progress {
            stage: Stage::Train,
            label: "train",
            done,
            total: settings.steps,
            loss: Some(stats.loss),
        });
        // An interrupt at the last step also stops here, before evaluation. With several ranks, all
        // stop after the same step: the one whose gradient exchange first carried an interrupt (a
        // caller's stop flag is read on one rank only).
        let stop = if world.size() > 1 {
            interrupted
        } else {
            crate::engine::interrupt::stop_after(done) || options.hooks.stop_requested()
        };
        if stop {
            progress.finish();
            if root {
                save_and_prune(&ckpt_dir, &capture(done, &trainer)?, settings.keep_checkpoints)?;
            }
            return Err(RuntimeError::Interrupted { step: done, dir: ckpt_dir });
        }
        let at_checkpoint = settings.checkpoint_every > 0 && done % settings.checkpoint_every == 0;
        if root && (at_checkpoint || done == settings.steps) {
            let ck = capture(done, &trainer)?;
            if done == settings.steps {
                save_and_prune(&ckpt_dir, &ck, settings.keep_checkpoints)?;
            } else {
                pending = Some(ck);
            }
        }
    }
    drop(interrupts);
    // The activation buffers kept between steps are not needed by evaluation.
    crate::denoisers::pool::release();
    progress.finish();
    let seconds = began.elapsed().as_secs_f64();
    if root && !losses.is_empty() {
        let records = crate::outputs::plot::read_log(&metrics_path)?;
        let per_step: Vec<(u64, f64)> =
            losses.iter().enumerate().map(|(i, &l)| (start + 1 + i as u64, l)).collect();
        let title = format!("{}: training loss", plan.experiment);
        let plot = crate::outputs::plot::LossPlot { title: &title, per_step: &per_step, records: &records };
        crate::outputs::plot::write_loss_plots(&options.paths.loss_curve(), &plot)?;
    }
    if let Some(ev) = events.as_mut() {
        ev.flush()?;
    }
    Ok(Trained { ema: trainer.ema, step: settings.steps.max(start), start, losses, seconds, events })
}

/// Loads the EMA (or raw) weights of the latest checkpoint under `dir` into `model`, after checking that
/// the checkpoint was trained for `plan`'s model (R0302 lists the keys that differ). Without EMA weights
/// the raw weights are used, and said so.
pub fn load_weights(plan: &Plan, model: &Pipeline, dir: &Path, use_ema: bool) -> Result<u64> {
    let ck = match checkpoint::latest(dir)? {
        Some(_) => checkpoint::load_latest(dir, &model.device)?,
        None => Some(checkpoint::load(dir, &model.device)?),
    }
    .ok_or_else(|| RuntimeError::Checkpoint {
        path: dir.to_path_buf(),
        reason: "no checkpoint found".into(),
    })?;
    PlanKeys::check(ck.plan.as_ref(), plan, dir, false)?;
    let weights = match (&ck.ema, use_ema) {
        (Some(ema), true) => ema,
        (None, true) => {
            eprintln!(
                "note: the checkpoint of step {} has no EMA weights; sampling with the trained weights",
                ck.step
            );
            &ck.model
        }
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

/// The TensorBoard scalars of one metrics line: `loss`, `loss/last`, `loss/<term>`, `lr`, `grad_norm`,
/// `steps_per_sec` and `loss_by_t/<lo>-<hi>` (the bins of `mse_by_t`).
fn write_scalars(events: &mut EventWriter, line: &serde_json::Value) -> Result<()> {
    let get = |k: &str| line.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    let mut scalars: Vec<(String, f64)> = vec![
        ("loss".into(), get("loss")),
        ("loss/last".into(), get("last_loss")),
        ("lr".into(), get("lr")),
        ("grad_norm".into(), get("grad_norm")),
        ("steps_per_sec".into(), get("steps_per_sec")),
    ];
    if let Some(serde_json::Value::Object(terms)) = line.get("terms") {
        scalars.extend(terms.iter().map(|(k, v)| (format!("loss/{k}"), v.as_f64().unwrap_or(f64::NAN))));
    }
    if let Some(serde_json::Value::Array(bins)) = line.get("mse_by_t") {
        let n = bins.len() as f64;
        scalars.extend(bins.iter().enumerate().map(|(i, v)| {
            (
                format!("loss_by_t/{:.1}-{:.1}", i as f64 / n, (i + 1) as f64 / n),
                v.as_f64().unwrap_or(f64::NAN),
            )
        }));
    }
    let step = line.get("step").and_then(|s| s.as_u64()).unwrap_or(0);
    events.scalars(step, scalars.iter().map(|(k, v)| (k.as_str(), *v)))?;
    events.flush()
}

/// Saves `ck` and then removes the checkpoints beyond the newest `keep` (0 = keep all).
fn save_and_prune(dir: &Path, ck: &Checkpoint, keep: usize) -> Result<()> {
    checkpoint::save(dir, ck)?;
    checkpoint::prune(dir, keep)?;
    Ok(())
}
