//! MaskGIT-style schedule: the unknown variables of each element are put in a random order and
//! split into `groups` groups whose sizes follow the cosine mask ratio
//! `cos(pi/2 (g + 1) / groups)`; each group ramps from 1 to 0 over `steps_per_group` calls
//! while later groups wait at t = 1.

use std::f64::consts::FRAC_PI_2;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::ScheduleStep;

#[derive(Debug, Clone)]
pub(crate) struct MaskGit {
    groups: usize,
    steps_per_group: usize,
    /// Per element: the variable indices of each group.
    members: Vec<Vec<Vec<usize>>>,
    step: usize,
}

/// Group sizes for `n` variables: group g ends where the masked count drops to
/// `floor(n cos(pi/2 (g + 1) / groups))` (at least one variable per group while any remain);
/// the last group takes the rest.
pub(crate) fn group_sizes(n: usize, groups: usize) -> Vec<usize> {
    let mut sizes = Vec::with_capacity(groups);
    let mut clean = 0;
    for g in 0..groups {
        let next = if g + 1 == groups {
            n
        } else {
            let ratio = (FRAC_PI_2 * (g + 1) as f64 / groups as f64).cos();
            let masked = ((n as f64 * ratio).floor() as usize).min(n - clean).max(1);
            (n.saturating_sub(masked)).max(clean)
        };
        sizes.push(next - clean);
        clean = next;
    }
    sizes
}

impl MaskGit {
    pub(crate) fn new(
        groups: usize,
        steps_per_group: usize,
        batch: usize,
        variables: usize,
        mask: &[f64],
        rng: &mut StdRng,
    ) -> Self {
        let members = (0..batch)
            .map(|b| {
                let mut order: Vec<usize> =
                    (0..variables).filter(|&v| mask[b * variables + v] > 0.0).collect();
                order.shuffle(rng);
                let mut out = Vec::with_capacity(groups);
                let mut at = 0;
                for size in group_sizes(order.len(), groups) {
                    out.push(order[at..at + size].to_vec());
                    at += size;
                }
                out
            })
            .collect();
        Self { groups, steps_per_group, members, step: 0 }
    }

    pub(crate) fn total_steps(&self) -> usize {
        self.groups * self.steps_per_group
    }

    pub(crate) fn unfinished(&self) -> bool {
        self.step < self.total_steps()
    }

    pub(crate) fn step(&mut self, t: &[f64], variables: usize) -> ScheduleStep {
        let (g, k) = (self.step / self.steps_per_group, self.step % self.steps_per_group);
        let level = 1.0 - (k + 1) as f64 / self.steps_per_group as f64;
        let mut t_next = t.to_vec();
        for (b, groups) in self.members.iter().enumerate() {
            if let Some(group) = groups.get(g) {
                for &v in group {
                    t_next[b * variables + v] = level;
                }
            }
        }
        self.step += 1;
        let should_denoise = t.iter().map(|x| *x > 0.0).collect();
        ScheduleStep { t_next, should_denoise }
    }
}
