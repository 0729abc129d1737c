//! `fixed` and `raster` schedules.

use super::{isclose, ScheduleStep};

/// Noise levels `linspace(1, 0, steps + 1)`, shifted by `shift l / (1 + (shift - 1) l)`.
pub(crate) fn levels(steps: usize, shift: f64) -> Vec<f64> {
    (0..=steps)
        .map(|k| {
            let l = 1.0 - k as f64 / steps as f64;
            if shift == 1.0 {
                l
            } else {
                shift * l / (1.0 + (shift - 1.0) * l)
            }
        })
        .collect()
}

/// Every variable steps through the same levels.
#[derive(Debug, Clone)]
pub(crate) struct Fixed {
    levels: Vec<f64>,
    step: usize,
}

impl Fixed {
    pub(crate) fn new(steps: usize, shift: f64) -> Self {
        Self { levels: levels(steps, shift), step: 0 }
    }

    pub(crate) fn steps(&self) -> usize {
        self.levels.len() - 1
    }

    pub(crate) fn unfinished(&self) -> bool {
        self.step < self.steps()
    }

    pub(crate) fn step(&mut self, t: &[f64], mask: &[f64], _variables: usize) -> ScheduleStep {
        let level = self.levels[(self.step + 1).min(self.steps())];
        let t_next: Vec<f64> = t.iter().zip(mask).map(|(_, m)| level * m).collect();
        let should_denoise = t_next.iter().map(|x| !isclose(*x, 0.0, 1e-8)).collect();
        self.step += 1;
        ScheduleStep { t_next, should_denoise }
    }
}

/// One variable after another (index order), `steps` levels each.
#[derive(Debug, Clone)]
pub(crate) struct Raster {
    levels: Vec<f64>,
    variables: usize,
    step: usize,
}

impl Raster {
    pub(crate) fn new(steps: usize, variables: usize) -> Self {
        Self { levels: levels(steps, 1.0), variables, step: 0 }
    }

    pub(crate) fn total_steps(&self) -> usize {
        (self.levels.len() - 1) * self.variables
    }

    pub(crate) fn unfinished(&self) -> bool {
        self.step < self.total_steps()
    }

    pub(crate) fn step(&mut self, t: &[f64], mask: &[f64], variables: usize) -> ScheduleStep {
        let per = self.levels.len() - 1;
        let (var, k) = (self.step / per, self.step % per);
        let mut t_next = t.to_vec();
        if var < variables {
            for row in t_next.chunks_mut(variables) {
                row[var] = self.levels[k + 1];
            }
        }
        t_next.iter_mut().zip(mask).for_each(|(x, m)| *x *= m);
        let should_denoise = t_next.iter().map(|x| !isclose(*x, 0.0, 1e-8)).collect();
        self.step += 1;
        ScheduleStep { t_next, should_denoise }
    }
}
