//! Certainty-sequential schedules (`random_sequential`, `graph_sequential`,
//! `adaptive_sequential`): blocks of `parallel` variables start at evenly spaced steps and each
//! block runs a linear ramp from 1 to 0 over `L` steps; block starts overlap by `overlap`. At
//! each block start the most certain selectable variables are chosen.

use rand::rngs::StdRng;
use rand::Rng;

use super::{isclose, ScheduleStep};
use crate::error::{Result, RuntimeError};

/// Where the per-variable uncertainty comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CertaintySource {
    /// Uniform random (a random order).
    Random,
    /// `1 - c W / max(c W)` with certainty `c = 1 - t` propagated through the dependency
    /// graph up to `order` hops, each further hop weighted by `decay`.
    Graph { order: usize, decay: f64 },
    /// The denoiser's predicted σ.
    Sigma,
}

/// Settings of a certainty-sequential schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequentialScheduleConfig {
    /// Step budget.
    pub max_steps: usize,
    /// Variables per block.
    pub parallel: usize,
    /// Fraction by which consecutive blocks overlap, in [0, 1].
    pub overlap: f64,
    /// Tolerance for "unchanged" / "finished".
    pub epsilon: f64,
    /// Pick the least certain variables first.
    pub reverse: bool,
    pub certainty: CertaintySource,
}

/// Per-element block plan.
#[derive(Debug, Clone)]
struct Blocks {
    /// Start step of each block.
    starts: Vec<usize>,
    /// Ramp length of every block.
    length: usize,
    /// Blocks already started.
    started: usize,
    /// Step at which every variable of this element is at 0.
    finishing: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct CertaintySequential {
    cfg: SequentialScheduleConfig,
    batch: usize,
    variables: usize,
    selectable: Vec<bool>,
    blocks: Vec<Blocks>,
    /// `[max_steps + 1][B * V]` planned times per step.
    plan: Vec<Vec<f64>>,
    /// `[V, V]` weighted adjacency (graph certainty).
    adjacency: Option<Vec<f64>>,
    /// Schedule step counter including skipped (unchanged) steps.
    combined: usize,
}

impl CertaintySequential {
    pub(crate) fn new(
        cfg: &SequentialScheduleConfig,
        batch: usize,
        variables: usize,
        mask: &[f64],
        dependency: Option<&[f64]>,
    ) -> Result<Self> {
        let selectable: Vec<bool> = mask.iter().map(|m| *m > 1.0 - cfg.epsilon).collect();
        let base: Vec<f64> = selectable.iter().map(|s| if *s { 1.0 } else { 0.0 }).collect();
        let plan = vec![base; cfg.max_steps + 1];
        let mut blocks = Vec::with_capacity(batch);
        for b in 0..batch {
            let unknown = selectable[b * variables..(b + 1) * variables].iter().filter(|s| **s).count();
            let n = unknown.div_ceil(cfg.parallel);
            if n == 0 {
                blocks.push(Blocks { starts: Vec::new(), length: 1, started: 0, finishing: 0 });
                continue;
            }
            let ideal = cfg.max_steps as f64 / ((n - 1) as f64 * (1.0 - cfg.overlap) + 1.0);
            let length = (ideal.ceil() as usize).max(1);
            let starts: Vec<usize> =
                (0..n).map(|j| (j as f64 * ideal * (1.0 - cfg.overlap)).floor() as usize).collect();
            let last = starts[n - 1];
            blocks.push(Blocks { starts, length, started: 0, finishing: (last + length).min(cfg.max_steps) });
        }
        let adjacency = match cfg.certainty {
            CertaintySource::Graph { order, decay } => {
                Some(weighted_adjacency(dependency, variables, order, decay)?)
            }
            _ => None,
        };
        Ok(Self { cfg: *cfg, batch, variables, selectable, blocks, plan, adjacency, combined: 0 })
    }

    pub(crate) fn max_steps(&self) -> usize {
        self.cfg.max_steps
    }

    pub(crate) fn unfinished(&self) -> Vec<bool> {
        self.blocks.iter().map(|b| self.combined < b.finishing).collect()
    }

    fn uncertainty(&self, t: &[f64], sigma: Option<&[f64]>, rng: &mut StdRng) -> Result<Vec<f64>> {
        Ok(match self.cfg.certainty {
            CertaintySource::Sigma => sigma
                .ok_or_else(|| {
                    RuntimeError::Unsupported("adaptive_sequential needs the predicted sigma".into())
                })?
                .to_vec(),
            CertaintySource::Random => (0..t.len()).map(|_| rng.random::<f64>()).collect(),
            CertaintySource::Graph { order, .. } => {
                let v = self.variables;
                let w = self.adjacency.as_deref().unwrap_or_default();
                let mut out = Vec::with_capacity(t.len());
                for row in t.chunks(v) {
                    let c: Vec<f64> = row.iter().map(|x| 1.0 - x).collect();
                    if order == 0 || c.iter().sum::<f64>() < self.cfg.epsilon {
                        out.extend(c.iter().map(|x| 1.0 - x));
                        continue;
                    }
                    let prop: Vec<f64> = (0..v).map(|j| (0..v).map(|i| c[i] * w[i * v + j]).sum()).collect();
                    let max = prop.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    out.extend(prop.iter().map(|x| 1.0 - x / max));
                }
                out
            }
        })
    }

    /// Chooses up to `parallel` selectable variables of element `b`: lowest uncertainty first
    /// (highest with `reverse`); ties go to the lower index.
    fn select(&self, b: usize, uncertainty: &[f64]) -> Vec<usize> {
        let v = self.variables;
        let mut ids: Vec<usize> = (0..v).filter(|&i| self.selectable[b * v + i]).collect();
        let key = |i: usize| uncertainty[b * v + i];
        if self.cfg.reverse {
            ids.sort_by(|&x, &y| key(y).total_cmp(&key(x)));
        } else {
            ids.sort_by(|&x, &y| key(x).total_cmp(&key(y)));
        }
        ids.truncate(self.cfg.parallel);
        ids
    }

    fn start_block(&mut self, b: usize, ids: &[usize]) {
        let (v, max) = (self.variables, self.cfg.max_steps);
        let length = self.blocks[b].length;
        let start = self.combined;
        for &i in ids {
            self.selectable[b * v + i] = false;
            for (k, row) in self.plan.iter_mut().enumerate().skip(start) {
                let ramp =
                    if k - start < length { (length - (k - start)) as f64 / length as f64 } else { 0.0 };
                let cell = &mut row[b * v + i];
                *cell = cell.min(ramp);
            }
        }
        self.plan[max].iter_mut().for_each(|x| *x = 0.0);
    }

    pub(crate) fn step(
        &mut self,
        t: &[f64],
        sigma: Option<&[f64]>,
        rng: &mut StdRng,
    ) -> Result<ScheduleStep> {
        let v = self.variables;
        loop {
            let unfinished = self.unfinished();
            let due: Vec<usize> = (0..self.batch)
                .filter(|&b| {
                    let bl = &self.blocks[b];
                    unfinished[b] && bl.started < bl.starts.len() && bl.starts[bl.started] <= self.combined
                })
                .collect();
            if !due.is_empty() {
                let uncertainty = self.uncertainty(t, sigma, rng)?;
                for b in due {
                    // Several blocks may be due at once (floor-rounded starts); start them all.
                    while self.blocks[b].started < self.blocks[b].starts.len()
                        && self.blocks[b].starts[self.blocks[b].started] <= self.combined
                    {
                        let ids = self.select(b, &uncertainty);
                        self.start_block(b, &ids);
                        self.blocks[b].started += 1;
                    }
                }
            }
            let next = (self.combined + 1).min(self.cfg.max_steps);
            let t_new = &self.plan[next];
            let unchanged = t_new.iter().zip(t).all(|(a, b)| isclose(*a, *b, self.cfg.epsilon));
            if unchanged && next < self.cfg.max_steps && self.unfinished().iter().any(|u| *u) {
                // Nothing moves in this step: skip it without a model call.
                self.combined += 1;
                continue;
            }
            let t_next = t_new.clone();
            self.combined = next;
            let should_denoise = t.iter().map(|x| *x > self.cfg.epsilon).collect();
            debug_assert_eq!(t_next.len(), self.batch * v);
            return Ok(ScheduleStep { t_next, should_denoise });
        }
    }
}

/// `W = D + sum_{k=2..order} decay^(k-1) rownorm(D^k)` (identity for order 0), where each power
/// is row-normalised before the next multiplication.
fn weighted_adjacency(dependency: Option<&[f64]>, v: usize, order: usize, decay: f64) -> Result<Vec<f64>> {
    if order == 0 {
        return Ok((0..v * v).map(|k| if k / v == k % v { 1.0 } else { 0.0 }).collect());
    }
    let d = dependency
        .ok_or_else(|| RuntimeError::Unsupported("graph_sequential needs a dependency matrix".into()))?;
    if d.len() != v * v {
        return Err(RuntimeError::Shape(format!("dependency matrix must be {v} x {v}")));
    }
    let mut w = d.to_vec();
    let mut power = d.to_vec();
    let mut weight = 1.0;
    for _ in 1..order {
        let mut next = vec![0.0; v * v];
        for i in 0..v {
            for k in 0..v {
                let pik = power[i * v + k];
                if pik != 0.0 {
                    for j in 0..v {
                        next[i * v + j] += pik * d[k * v + j];
                    }
                }
            }
        }
        for i in 0..v {
            let s: f64 = next[i * v..(i + 1) * v].iter().sum();
            if s != 0.0 {
                next[i * v..(i + 1) * v].iter_mut().for_each(|x| *x /= s);
            }
        }
        power = next;
        weight *= decay;
        w.iter_mut().zip(&power).for_each(|(a, p)| *a += weight * p);
    }
    Ok(w)
}
