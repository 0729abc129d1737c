//! Memory estimates of a plan: parameters, activations of one training batch, the peak of one sampling
//! batch, and the data held in memory, so that `sr check` refuses what cannot fit before a run allocates
//! anything (E0511), and `sr compile` and `sr run` can say what a run will need.
//!
//! The figures are estimates of the runtime's f32 tensors, by closed formulas per denoiser: every
//! activation a training step keeps for the backward pass (attention score matrices `B·heads·T²`
//! included, four per attention: scores, shifted, exponentials, probabilities; the im2col matrices of
//! the U-Net's convolutions), weights with their gradient, AdamW moments and EMA copy, and the files the
//! file datasets load. They are meant to be within a factor of about two of the resident memory, and
//! never far below it.

use crate::catalogue::Kind;
use crate::plan::{PValue, Plan};
use serde::Serialize;

/// What a plan is expected to need, in bytes (parameters as a count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Estimate {
    /// Trainable scalars.
    pub parameters: u64,
    /// Weights, gradients, optimizer moments and EMA copy (training) or weights alone (no training).
    pub weights: u64,
    /// Activations kept for the backward pass of one training step (`accumulate` micro-batches run one
    /// after the other, so one micro-batch).
    pub training: u64,
    /// Peak of one sampling batch (no backward pass: a few layers' activations at a time).
    pub sampling: u64,
    /// Data held in memory by file datasets (MNIST, CIFAR-10, point files are read whole).
    pub data: u64,
}

impl Estimate {
    /// The most memory a run needs at once: weights and data, plus training or sampling, whichever is larger.
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.data).saturating_add(self.training.max(self.sampling))
    }

    /// A one-line summary: `1.9 M parameters; memory ≈ 1.2 GiB (weights 30 MiB, training batch …)`.
    pub fn summary(&self) -> String {
        format!(
            "{} parameters; memory ≈ {} (weights and optimizer {}, training batch {}, sampling batch {}, data {})",
            count(self.parameters),
            bytes(self.total()),
            bytes(self.weights),
            bytes(self.training),
            bytes(self.sampling),
            bytes(self.data)
        )
    }
}

/// `n` with a k, M or G suffix.
pub fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.1} G", n as f64 / 1e9),
    }
}

/// A size in bytes with a binary unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Saturating arithmetic on f64 counts, turned into bytes of f32 at the end.
fn f32_bytes(scalars: f64) -> u64 {
    let b = scalars * 4.0;
    if b.is_finite() && b < u64::MAX as f64 {
        b as u64
    } else {
        u64::MAX
    }
}

fn int(plan: &Plan, node: &str, key: &str, default: i64) -> f64 {
    match plan.node(node).and_then(|n| n.params.get(key)) {
        Some(PValue::Int(i)) => *i as f64,
        Some(PValue::Float(f)) => *f,
        _ => default as f64,
    }
}

fn ints(plan: &Plan, node: &str, key: &str, default: &[i64]) -> Vec<f64> {
    match plan.node(node).and_then(|n| n.params.get(key)) {
        Some(PValue::List(items)) => items
            .iter()
            .filter_map(|v| match v {
                PValue::Int(i) => Some(*i as f64),
                _ => None,
            })
            .collect(),
        _ => default.iter().map(|&i| i as f64).collect(),
    }
}

/// Parameters, activations per sample while training (kept for backward) and the peak per sample of
/// a forward pass without gradients.
struct Network {
    parameters: f64,
    train_per_sample: f64,
    sample_per_sample: f64,
}

/// Sizes of a transformer's block stack: `depth` blocks of width `w`, applied `loops` times with shared
/// weights.
struct Stack {
    w: f64,
    depth: f64,
    loops: f64,
    heads: f64,
    ratio: f64,
}

/// A stack of transformer blocks over `t` tokens of `f` features: looping it keeps the weights, and keeps
/// the activations of every application for the backward pass. The parameters are those of
/// `runtime/src/denoisers/dit.rs`, biases included: the input embedding and a position embedding per
/// token, the time embedding (two layers), per block the attention (q, k, v, projection), the MLP and
/// six modulation layers, the final shift and scale, the prediction head and, with `uncertainty`, the
/// log-variance head.
fn transformer(s: Stack, t: f64, f: f64, time_dim: f64, uncertainty: bool) -> Network {
    let Stack { w, depth, loops, heads, ratio } = s;
    let hidden = (w * ratio).round().max(1.0);
    let linear = |inputs: f64, outputs: f64| inputs * outputs + outputs;
    let per_block = 4.0 * linear(w, w) + linear(w, hidden) + linear(hidden, w) + 6.0 * linear(w, w);
    let parameters = depth * per_block
        + linear(f, w)
        + t * w
        + linear(time_dim, w)
        + linear(w, w)
        + 2.0 * linear(w, w)
        + linear(w, f)
        + if uncertainty { linear(w, 1.0) } else { 0.0 };
    let attention = heads * t * t;
    let tokens = t * w;
    let train_per_sample = loops * depth * (tokens * (14.0 + 2.0 * ratio) + 4.0 * attention) + tokens * 4.0;
    let sample_per_sample = 3.0 * attention + tokens * (10.0 + 2.0 * ratio);
    Network { parameters, train_per_sample, sample_per_sample }
}

/// The U-Net of `runtime/src/denoisers/unet.rs` on a `c × h × w` image.
fn unet(plan: &Plan, c: f64, h: f64, w: f64) -> Network {
    let ch = int(plan, "denoiser", "channels", 64);
    let mults = ints(plan, "denoiser", "mults", &[1, 2, 2]);
    let blocks = int(plan, "denoiser", "blocks", 2);
    let attention = ints(plan, "denoiser", "attention", &[1, 2]);
    let time_dim = int(plan, "denoiser", "time_dim", 256);
    let emb = 4.0 * ch;
    let mut parameters = time_dim * emb + emb * emb + (c + 1.0) * ch * mults.first().unwrap_or(&1.0) * 9.0;
    let mut train = 0.0;
    let mut peak: f64 = 0.0;
    // A residual block from `cin` to `cout` channels on `px` pixels: two 3×3 convolutions (their im2col
    // matrices kept), group norms and SiLUs.
    let res = |cin: f64, cout: f64, px: f64, parameters: &mut f64, train: &mut f64, peak: &mut f64| {
        *parameters +=
            9.0 * cin * cout + 9.0 * cout * cout + emb * cout + if cin != cout { cin * cout } else { 0.0 };
        let kept = px * (9.0 * cin + 9.0 * cout + 8.0 * cout + cin);
        *train += kept;
        *peak = peak.max(px * (9.0 * cin + 2.0 * cout + cin));
    };
    let attn = |c: f64, px: f64, parameters: &mut f64, train: &mut f64, peak: &mut f64| {
        let heads = if (c as u64).is_multiple_of(32) { c / 32.0 } else { 1.0 };
        *parameters += 4.0 * c * c;
        *train += 4.0 * heads * px * px + 10.0 * px * c;
        *peak = peak.max(3.0 * heads * px * px + 4.0 * px * c);
    };
    let levels = mults.len();
    let mut chans = vec![ch * mults.first().unwrap_or(&1.0)];
    let mut cur = chans[0];
    for (l, m) in mults.iter().enumerate() {
        let px = h * w / 4f64.powi(l as i32);
        let out = ch * m;
        for _ in 0..blocks as usize {
            res(cur, out, px, &mut parameters, &mut train, &mut peak);
            cur = out;
            if attention.contains(&(l as f64)) {
                attn(cur, px, &mut parameters, &mut train, &mut peak);
            }
            chans.push(cur);
        }
        if l + 1 < levels {
            parameters += 9.0 * cur * cur;
            train += px / 4.0 * 9.0 * cur;
            chans.push(cur);
        }
    }
    let px_low = h * w / 4f64.powi(levels.saturating_sub(1) as i32);
    res(cur, cur, px_low, &mut parameters, &mut train, &mut peak);
    attn(cur, px_low, &mut parameters, &mut train, &mut peak);
    res(cur, cur, px_low, &mut parameters, &mut train, &mut peak);
    for (l, m) in mults.iter().enumerate().rev() {
        let px = h * w / 4f64.powi(l as i32);
        let out = ch * m;
        for _ in 0..=blocks as usize {
            let skip = chans.pop().unwrap_or(0.0);
            res(cur + skip, out, px, &mut parameters, &mut train, &mut peak);
            cur = out;
            if attention.contains(&(l as f64)) {
                attn(cur, px, &mut parameters, &mut train, &mut peak);
            }
        }
        if l > 0 {
            parameters += 9.0 * cur * cur;
            train += px * 9.0 * cur;
        }
    }
    parameters += 9.0 * cur * (c + 1.0);
    train += h * w * (9.0 * cur + 4.0 * cur);
    Network { parameters, train_per_sample: train, sample_per_sample: 3.0 * peak }
}

/// The denoiser's network for the plan's shapes.
fn network(plan: &Plan) -> Option<Network> {
    let den = plan.node("denoiser")?;
    let v = plan.shapes.variables as f64;
    let f = plan.shapes.features as f64;
    let d = |k: &str, default: i64| int(plan, "denoiser", k, default);
    let uncertainty = matches!(den.params.get("uncertainty"), Some(PValue::Bool(true)));
    Some(match den.component.as_str() {
        "transformer" | "block_causal_transformer" => transformer(
            Stack {
                w: d("width", 384),
                depth: d("depth", 12),
                loops: d("loops", 1),
                heads: d("heads", 6),
                ratio: match den.params.get("mlp_ratio") {
                    Some(PValue::Float(r)) => *r,
                    Some(PValue::Int(r)) => *r as f64,
                    _ => 4.0,
                },
            },
            v,
            f,
            d("time_dim", 256),
            uncertainty,
        ),
        "uvit" => {
            let (frames, c, h, w) = match plan.shapes.raw[..] {
                [n, c, h, w] => (n as f64, c as f64, h as f64, w as f64),
                _ => (v, 1.0, 1.0, 1.0),
            };
            let p = d("patch", 4);
            let t = frames * (h / p).max(1.0) * (w / p).max(1.0);
            let stack = Stack {
                w: d("width", 256),
                depth: d("depth", 6),
                loops: 1.0,
                heads: d("heads", 4),
                ratio: 4.0,
            };
            transformer(stack, t, c * p * p, 256.0, uncertainty)
        }
        "unet" => {
            let (c, h, w) = match plan.shapes.raw[..] {
                [c, h, w] => (c as f64, h as f64, w as f64),
                _ => (1.0, v, 1.0),
            };
            unet(plan, c, h, w)
        }
        _ => {
            let w = d("width", 256);
            let depth = d("depth", 3);
            Network {
                parameters: depth * 2.0 * w * w + 2.0 * f * w + d("time_dim", 64) * w,
                train_per_sample: depth * v * w * 8.0 + v * w * 4.0,
                sample_per_sample: v * w * 6.0,
            }
        }
    })
}

/// Bytes a file dataset holds in memory (0 for generated data, decoded on demand).
fn dataset_bytes(component: &str, split: Option<&str>) -> u64 {
    let train = split != Some("test");
    match component {
        "mnist" if train => 60_000 * 785,
        "mnist" => 10_000 * 785,
        "cifar10" if train => 50_000 * 3073,
        "cifar10" => 10_000 * 3073,
        _ => 0,
    }
}

/// The memory estimate of `plan`.
pub fn estimate(plan: &Plan) -> Estimate {
    let Some(net) = network(plan) else { return Estimate::default() };
    let training = plan.node("train.optimizer").is_some();
    let batch = match plan.train.get("batch") {
        Some(PValue::Int(b)) => *b as f64,
        _ => 64.0,
    };
    let sample_batch = plan
        .nodes_of(Kind::Sampler)
        .filter_map(|n| match n.params.get("batch") {
            Some(PValue::Int(b)) => Some(*b as f64),
            _ => None,
        })
        .fold(0.0, f64::max);
    // Weights, gradients, two AdamW moments and the EMA copy while training; weights alone otherwise.
    let copies = if training { 5.0 } else { 1.0 };
    let data = plan
        .nodes_of(Kind::Dataset)
        .map(|n| {
            let split = match n.params.get("split") {
                Some(PValue::Str(s)) => Some(s.as_str()),
                _ => None,
            };
            dataset_bytes(&n.component, split)
        })
        .fold(0u64, u64::saturating_add);
    Estimate {
        parameters: f32_bytes(net.parameters) / 4,
        weights: f32_bytes(net.parameters * copies),
        training: if training { f32_bytes(net.train_per_sample * batch) } else { 0 },
        sampling: f32_bytes(net.sample_per_sample * sample_batch),
        data,
    }
}

/// The memory this machine can give one process: the smaller of the physical memory and the cgroup
/// limit (Linux), or `SR_MEMORY_LIMIT` (bytes) when set; `None` where it is not known. Read once per
/// process: every experiment of a file is checked against it, and reading `/proc` for each of 50,000
/// experiments cost more than checking them.
pub fn machine_memory() -> Option<u64> {
    static MEMORY: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *MEMORY.get_or_init(read_machine_memory)
}

fn read_machine_memory() -> Option<u64> {
    if let Some(v) = std::env::var_os("SR_MEMORY_LIMIT") {
        return v.to_str().and_then(|s| s.trim().parse().ok());
    }
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    })?;
    let cgroup =
        std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total, |c| c.min(total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile_text, MemLoader};

    fn estimate_of(denoiser: &str) -> Estimate {
        let text = format!(
            "experiment e {{\n  data train = sudoku {{ split = \"train\" }}\n  mapper = grid_cells\n  \
             flow = rectified {{ predict = velocity }}\n  denoiser = {denoiser}\n  \
             train {{ steps = 10, batch = 8 }}\n  sampler s = scheduled {{ batch = 8 }}\n}}\n"
        );
        let c = compile_text("e.srx", &text, &MemLoader::new(), &[]);
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        estimate(&c.plans[0])
    }

    /// Looping the block stack keeps the parameters and the sampling peak (one block at a time), and
    /// multiplies the blocks' training activations by the number of loops.
    #[test]
    fn loops_scale_training_activations_not_parameters() {
        let base = "transformer { width = 32, depth = 2, heads = 2 }";
        let one = estimate_of(base);
        let three = estimate_of("transformer { width = 32, depth = 2, heads = 2, loops = 3 }");
        let deep = estimate_of("transformer { width = 32, depth = 6, heads = 2 }");
        assert_eq!(three.parameters, one.parameters);
        assert_eq!(three.weights, one.weights);
        assert_eq!(three.sampling, one.sampling);
        assert!(three.training > 2 * one.training);
        // Three loops of two blocks keep what six blocks keep.
        assert_eq!(three.training, deep.training);
        assert!(deep.parameters > one.parameters);
        let causal = |loops: u32| {
            estimate_of(&format!(
                "block_causal_transformer {{ width = 32, depth = 2, heads = 2, block = 9, loops = {loops} }}"
            ))
        };
        assert_eq!(causal(2).parameters, causal(1).parameters);
        assert!(causal(2).training > causal(1).training);
    }
}
