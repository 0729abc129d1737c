//! Training checkpoints: weights, EMA weights, optimizer state, step and RNG state, written atomically.
//!
//! # Layout
//!
//! ```text
//! <dir>/latest                        name of the newest complete checkpoint ("step-00001000\n")
//! <dir>/step-00001000/model.safetensors       weights; tensor names = VarMap paths ("blocks.0.attn.q.weight")
//! <dir>/step-00001000/ema.safetensors         EMA weights, same names (only when EMA is on)
//! <dir>/step-00001000/optimizer.safetensors   optimizer tensors: AdamW "m.<path>", "v.<path>";
//!                                             SGD "momentum.<path>" (only when an optimizer is saved)
//! <dir>/step-00001000/state.json              {"format": 1, "step", "optimizer": {"kind", "step", "lr"},
//!                                              "rng": <caller's JSON>, "files": {<file>: {"bytes", "fnv1a64"}},
//!                                              "plan": {"experiment", "plan_fnv1a64", "model", "objective"},
//!                                              "checksum": <fnv1a64 of this file without the checksum>}
//! ```
//!
//! `plan` records the keys of the plan that define the model (shapes, mapper, flow, tokenizer, denoiser)
//! and the objective (losses, time sampler, optimizer kind): `--resume` and `sr sample` compare them with
//! the plan at hand and refuse a checkpoint of another model, listing every key that differs.
//!
//! The safetensors files are plain safetensors (loadable by PyTorch, JAX, ...). Every file is written to
//! a temporary file in the same directory, fsynced and renamed into place, and the directory is fsynced;
//! `state.json` is written after the tensor files and `latest` last, so an interrupted save never
//! replaces the previous checkpoint. `state.json` records each file's size and FNV-1a hash, so a
//! truncated or corrupted file is reported (with its path) instead of being loaded.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::optimizers::{Ema, Optimizer, OptimizerState};
use sr_compiler::catalogue::Kind;
use sr_compiler::plan::Plan;

/// Version of the on-disk layout.
pub const FORMAT: u32 = 1;

const MODEL: &str = "model.safetensors";
const EMA: &str = "ema.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const STATE: &str = "state.json";
const LATEST: &str = "latest";

/// Everything saved at one training step.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub step: u64,
    /// Weights by VarMap path.
    pub model: BTreeMap<String, Tensor>,
    /// EMA weights by VarMap path.
    pub ema: Option<BTreeMap<String, Tensor>>,
    pub optimizer: Option<OptimizerState>,
    /// Learning rate at save time (informational; schedules recompute it from the step).
    pub lr: Option<f64>,
    /// The trainer's RNG state, opaque to this module.
    pub rng: serde_json::Value,
    /// What the weights were trained for (absent in checkpoints written without a plan).
    pub plan: Option<PlanKeys>,
}

/// The keys of a plan that define its model and its objective, each as `node.param` → the value in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanKeys {
    pub experiment: String,
    /// FNV-1a hash of the whole plan's JSON (informational: any change, even of the step count).
    pub plan_fnv1a64: String,
    /// Shapes, mapper, flow, tokenizer and denoiser: what the weights mean.
    pub model: BTreeMap<String, String>,
    /// Losses, time sampler and optimizer: what training optimises (compared on `--resume`).
    pub objective: BTreeMap<String, String>,
}

impl PlanKeys {
    /// The model and objective keys of `plan`.
    pub fn of(plan: &Plan) -> PlanKeys {
        let mut model = BTreeMap::new();
        let mut objective = BTreeMap::new();
        model.insert("shapes.raw".into(), json(&plan.shapes.raw));
        model.insert("shapes.variables".into(), json(&plan.shapes.variables));
        model.insert("shapes.features".into(), json(&plan.shapes.features));
        for kind in [
            Kind::Mapper,
            Kind::Flow,
            Kind::Tokenizer,
            Kind::Denoiser,
            Kind::Loss,
            Kind::TimeSampler,
            Kind::Optimizer,
        ] {
            let map = if matches!(kind, Kind::Loss | Kind::TimeSampler | Kind::Optimizer) {
                &mut objective
            } else {
                &mut model
            };
            for n in plan.nodes_of(kind) {
                map.insert(n.id.clone(), json(&n.component));
                if kind == Kind::Optimizer {
                    continue; // the optimizer's hyper-parameters may change between sessions
                }
                for (k, v) in &n.params {
                    map.insert(format!("{}.{k}", n.id), json(v));
                }
            }
        }
        let whole = serde_json::to_vec(plan).unwrap_or_default();
        PlanKeys { experiment: plan.experiment.clone(), plan_fnv1a64: fnv1a64(&whole), model, objective }
    }

    /// The keys that differ between what a checkpoint was trained for (`self`) and `plan`:
    /// `key: checkpoint value → plan value`; with `objective`, losses, time sampler and optimizer too.
    pub fn differences(&self, plan: &PlanKeys, objective: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut compare = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (a.get(k), b.get(k));
                if x != y {
                    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(absent)".into());
                    out.push(format!("{k}: {} → {}", show(x), show(y)));
                }
            }
        };
        compare(&self.model, &plan.model);
        if objective {
            compare(&self.objective, &plan.objective);
        }
        out
    }

    /// Refuses a checkpoint in `path` that was trained for another model (or, with `objective`, another
    /// objective) than `plan`; a checkpoint without a recorded plan is accepted with a note.
    pub fn check(recorded: Option<&PlanKeys>, plan: &Plan, path: &Path, objective: bool) -> Result<()> {
        let Some(recorded) = recorded else {
            eprintln!(
                "note: the checkpoint in {} records no plan; it cannot be checked against this experiment",
                path.display()
            );
            return Ok(());
        };
        let keys = recorded.differences(&PlanKeys::of(plan), objective);
        if keys.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::PlanMismatch {
            path: path.to_path_buf(),
            trained_for: format!("`{}`", recorded.experiment),
            keys,
        })
    }
}

/// A value as compact JSON text.
fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[derive(Debug, Serialize, Deserialize)]
struct FileInfo {
    bytes: u64,
    fnv1a64: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OptimizerInfo {
    kind: String,
    step: u64,
    lr: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    format: u32,
    step: u64,
    optimizer: Option<OptimizerInfo>,
    rng: serde_json::Value,
    files: BTreeMap<String, FileInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan: Option<PlanKeys>,
    /// FNV-1a of the file's bytes before this field (see [`state_bytes`]; absent in older checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<String>,
}

/// `state.json` with its checksum: the pretty JSON of `state` (without one), whose FNV-1a is appended as
/// the last field, so that the check reads the very bytes that were hashed.
fn state_bytes(state: &State, path: &Path) -> Result<Vec<u8>> {
    let mut json = serde_json::to_vec_pretty(state).map_err(|e| corrupt(path, e.to_string()))?;
    let sum = fnv1a64(&json);
    json.truncate(json.len() - 2); // "\n}"
    json.extend_from_slice(format!(",\n  \"checksum\": \"{sum}\"\n}}").as_bytes());
    Ok(json)
}

/// Checks the checksum of `state.json`'s bytes `text` (files without one are accepted).
fn verify_state(text: &[u8], state: &State, path: &Path) -> Result<()> {
    let Some(sum) = &state.checksum else { return Ok(()) };
    let suffix = format!(",\n  \"checksum\": \"{sum}\"\n}}");
    let ok = text.strip_suffix(suffix.as_bytes()).is_some_and(|body| {
        let mut hashed = body.to_vec();
        hashed.extend_from_slice(b"\n}");
        fnv1a64(&hashed) == *sum
    });
    if ok {
        Ok(())
    } else {
        Err(corrupt(path, "is corrupt: its checksum does not match its content"))
    }
}

impl Checkpoint {
    /// Snapshot the current training state (tensors are copied, so training can continue).
    pub fn capture(
        step: u64,
        model: &VarMap,
        ema: Option<&Ema>,
        optimizer: Option<&dyn Optimizer>,
        rng: serde_json::Value,
    ) -> Result<Self> {
        let model = crate::optimizers::named_vars(model)
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().copy()?)))
            .collect::<Result<_>>()?;
        let ema = match ema {
            Some(e) => Some(e.tensors().into_iter().map(|(n, t)| Ok((n, t.copy()?))).collect::<Result<_>>()?),
            None => None,
        };
        let (optimizer, lr) = match optimizer {
            Some(o) => (Some(o.state()?), Some(o.learning_rate())),
            None => (None, None),
        };
        Ok(Self { step, model, ema, optimizer, lr, rng, plan: None })
    }

    /// Write the saved weights into `model` (every variable must be present with its shape), and the
    /// EMA weights and optimizer state into `ema` / `optimizer` when given.
    pub fn restore(
        &self,
        model: &VarMap,
        ema: Option<&mut Ema>,
        optimizer: Option<&mut dyn Optimizer>,
    ) -> Result<()> {
        let bad =
            |reason: String| RuntimeError::Config(format!("checkpoint at step {}: {reason}", self.step));
        let vars = crate::optimizers::named_vars(model);
        if let Some(extra) = self.model.keys().find(|k| !vars.iter().any(|(n, _)| n == *k)) {
            return Err(bad(format!(
                "weight `{extra}` does not exist in the model (a different architecture?)"
            )));
        }
        for (name, var) in &vars {
            let t = self.model.get(name).ok_or_else(|| bad(format!("no weight `{name}`")))?;
            if t.dims() != var.dims() {
                return Err(bad(format!(
                    "weight `{name}` has shape {:?}, the model has {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
        }
        for (name, var) in &vars {
            let t = &self.model[name];
            var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
        }
        if let Some(e) = ema {
            let saved = self.ema.as_ref().ok_or_else(|| bad("no EMA weights".into()))?;
            e.load(&saved.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>())?;
        }
        if let Some(o) = optimizer {
            o.load_state(self.optimizer.as_ref().ok_or_else(|| bad("no optimizer state".into()))?)?;
        }
        Ok(())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io { path: path.to_path_buf(), source }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Checkpoint { path: path.to_path_buf(), reason: reason.into() }
}

/// FNV-1a, 64 bit: a stable, dependency-free integrity check (not a cryptographic hash).
fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directory fsync makes the rename durable; it is not supported (nor needed) on every platform.
    #[cfg(unix)]
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Write `bytes` to `path` atomically: temporary file in the same directory, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| corrupt(path, "not a file path"))?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn serialize(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<Vec<u8>> {
    safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| corrupt(path, format!("cannot serialise: {e}")))
}

/// The directory name of the checkpoint at `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Save `ckpt` under `dir` (created if needed) and point `latest` at it. Returns the step directory.
pub fn save(dir: &Path, ckpt: &Checkpoint) -> Result<PathBuf> {
    let step_dir = dir.join(step_dir_name(ckpt.step));
    fs::create_dir_all(&step_dir).map_err(io(&step_dir))?;
    let mut files = BTreeMap::new();
    let mut put = |name: &str, tensors: &BTreeMap<String, Tensor>| -> Result<()> {
        let path = step_dir.join(name);
        let bytes = serialize(tensors, &path)?;
        write_atomic(&path, &bytes)?;
        files.insert(name.to_string(), FileInfo { bytes: bytes.len() as u64, fnv1a64: fnv1a64(&bytes) });
        Ok(())
    };
    put(MODEL, &ckpt.model)?;
    if let Some(ema) = &ckpt.ema {
        put(EMA, ema)?;
    }
    if let Some(o) = &ckpt.optimizer {
        put(OPTIMIZER, &o.tensors)?;
    }
    let state = State {
        format: FORMAT,
        step: ckpt.step,
        optimizer: ckpt.optimizer.as_ref().map(|o| OptimizerInfo {
            kind: o.kind.clone(),
            step: o.step,
            lr: ckpt.lr,
        }),
        rng: ckpt.rng.clone(),
        files,
        plan: ckpt.plan.clone(),
        checksum: None,
    };
    let json = state_bytes(&state, &step_dir.join(STATE))?;
    write_atomic(&step_dir.join(STATE), &json)?;
    write_atomic(&dir.join(LATEST), format!("{}\n", step_dir_name(ckpt.step)).as_bytes())?;
    Ok(step_dir)
}

/// Removes all but the `keep` newest complete checkpoints under `dir` (by step), never the one `latest`
/// points to; `keep = 0` keeps every checkpoint. Incomplete directories (no `state.json`) newer than the
/// kept ones are left alone: a later save of that step completes them. Returns the removed directories.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let current = latest(dir)?;
    let entries = fs::read_dir(dir).map_err(io(dir))?;
    let mut complete: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(step) = step {
            if path.join(STATE).is_file() {
                complete.push((step, path));
            }
        }
    }
    complete.sort();
    let excess = complete.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (_, path) in complete.into_iter().take(excess) {
        if Some(&path) == current.as_ref() {
            continue;
        }
        fs::remove_dir_all(&path).map_err(io(&path))?;
        removed.push(path);
    }
    Ok(removed)
}

/// The step directory `latest` points to, or `None` when `dir` has no checkpoint yet.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let pointer = dir.join(LATEST);
    let text = match fs::read_to_string(&pointer) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&pointer)(e)),
    };
    let name = text.trim();
    if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
        return Err(corrupt(&pointer, format!("does not name a checkpoint directory: {name:?}")));
    }
    Ok(Some(dir.join(name)))
}

/// Load the checkpoint `latest` points to, if any.
pub fn load_latest(dir: &Path, device: &Device) -> Result<Option<Checkpoint>> {
    match latest(dir)? {
        Some(p) => load(&p, device).map(Some),
        None => Ok(None),
    }
}

fn read_checked(path: &Path, info: &FileInfo) -> Result<Vec<u8>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(corrupt(path, "is missing")),
        Err(e) => return Err(io(path)(e)),
    };
    if bytes.len() as u64 != info.bytes {
        return Err(corrupt(
            path,
            format!("is truncated or altered: {} bytes, expected {}", bytes.len(), info.bytes),
        ));
    }
    if fnv1a64(&bytes) != info.fnv1a64 {
        return Err(corrupt(path, "is corrupt: content hash does not match state.json"));
    }
    Ok(bytes)
}

fn load_tensors(
    step_dir: &Path,
    name: &str,
    state: &State,
    device: &Device,
) -> Result<Option<BTreeMap<String, Tensor>>> {
    let Some(info) = state.files.get(name) else { return Ok(None) };
    let path = step_dir.join(name);
    let bytes = read_checked(&path, info)?;
    let map = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| corrupt(&path, format!("is not a valid safetensors file: {e}")))?;
    Ok(Some(map.into_iter().collect()))
}

/// Checks the checkpoint in `step_dir` (its `state.json` and every file's size and hash) without
/// building tensors, and returns its step and recorded plan.
pub fn verify(step_dir: &Path) -> Result<(u64, Option<PlanKeys>)> {
    let state = read_state(step_dir)?;
    for (name, info) in &state.files {
        read_checked(&step_dir.join(name), info)?;
    }
    Ok((state.step, state.plan))
}

fn read_state(step_dir: &Path) -> Result<State> {
    let state_path = step_dir.join(STATE);
    let text = match fs::read(&state_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(corrupt(&state_path, "is missing (incomplete or absent checkpoint)"))
        }
        Err(e) => return Err(io(&state_path)(e)),
    };
    let state: State =
        serde_json::from_slice(&text).map_err(|e| corrupt(&state_path, format!("is not valid: {e}")))?;
    verify_state(&text, &state, &state_path)?;
    if state.format != FORMAT {
        return Err(corrupt(
            &state_path,
            format!("has format {}, this sr reads format {FORMAT}", state.format),
        ));
    }
    Ok(state)
}

/// Load the checkpoint in `step_dir` onto `device`.
pub fn load(step_dir: &Path, device: &Device) -> Result<Checkpoint> {
    let state_path = step_dir.join(STATE);
    let state = read_state(step_dir)?;
    let model = load_tensors(step_dir, MODEL, &state, device)?
        .ok_or_else(|| corrupt(&state_path, "lists no model.safetensors"))?;
    let ema = load_tensors(step_dir, EMA, &state, device)?;
    let optimizer = match (&state.optimizer, load_tensors(step_dir, OPTIMIZER, &state, device)?) {
        (Some(info), Some(tensors)) => {
            Some(OptimizerState { kind: info.kind.clone(), step: info.step, tensors })
        }
        (None, None) => None,
        _ => return Err(corrupt(&state_path, "optimizer entry and optimizer.safetensors disagree")),
    };
    Ok(Checkpoint {
        step: state.step,
        model,
        ema,
        lr: state.optimizer.as_ref().and_then(|o| o.lr),
        optimizer,
        rng: state.rng,
        plan: state.plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizers::{named_vars, AdamW, AdamWConfig};
    use candle_core::DType;
    use candle_nn::{Init, VarBuilder};

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sr-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn model() -> VarMap {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        vb.get_with_hints((3, 4), "a.weight", Init::Randn { mean: 0., stdev: 1. }).unwrap();
        vb.get_with_hints(5, "b", Init::Randn { mean: 0., stdev: 1. }).unwrap();
        vm
    }

    fn train_step(vm: &VarMap, opt: &mut AdamW, ema: &mut Ema) {
        let loss = named_vars(vm)
            .iter()
            .map(|(_, v)| v.sqr().unwrap().sum_all().unwrap())
            .reduce(|a, b| (a + b).unwrap())
            .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        ema.update().unwrap();
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn round_trip_is_bit_exact_and_resumes() {
        let dir = tmpdir("roundtrip");
        let vm = model();
        let mut opt = AdamW::new(
            named_vars(&vm),
            AdamWConfig { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        )
        .unwrap();
        let mut ema = Ema::new(&named_vars(&vm), 0.9).unwrap();
        train_step(&vm, &mut opt, &mut ema);
        let rng = serde_json::json!({"seed": 7, "draws": 123});
        let saved = Checkpoint::capture(1, &vm, Some(&ema), Some(&opt), rng.clone()).unwrap();
        let path = save(&dir, &saved).unwrap();
        assert_eq!(latest(&dir).unwrap(), Some(path.clone()));
        // The weights file is a plain safetensors file keyed by VarMap paths.
        let raw = fs::read(path.join(MODEL)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&raw).unwrap();
        assert_eq!(st.names().len(), 2);
        assert!(st.tensor("a.weight").is_ok());

        let loaded = load_latest(&dir, &Device::Cpu).unwrap().unwrap();
        assert_eq!((loaded.step, loaded.rng.clone(), loaded.lr), (1, rng, Some(0.01)));
        for (k, t) in &saved.model {
            assert_eq!(bits(t), bits(&loaded.model[k]));
        }
        let vm2 = model();
        let mut opt2 = AdamW::new(
            named_vars(&vm2),
            AdamWConfig { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        )
        .unwrap();
        let mut ema2 = Ema::new(&named_vars(&vm2), 0.9).unwrap();
        loaded.restore(&vm2, Some(&mut ema2), Some(&mut opt2)).unwrap();
        // A model with a different set of weights is refused.
        let other = VarMap::new();
        VarBuilder::from_varmap(&other, DType::F32, &Device::Cpu)
            .get_with_hints(5, "b", Init::Const(0.))
            .unwrap();
        assert!(loaded.restore(&other, None, None).is_err());
        // One more step from both: identical bits.
        train_step(&vm, &mut opt, &mut ema);
        train_step(&vm2, &mut opt2, &mut ema2);
        for ((_, a), (_, b)) in named_vars(&vm).iter().zip(named_vars(&vm2).iter()) {
            assert_eq!(bits(a.as_tensor()), bits(b.as_tensor()));
        }
        for ((_, a), (_, b)) in ema.tensors().iter().zip(ema2.tensors().iter()) {
            assert_eq!(bits(a), bits(b));
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    fn expect_checkpoint_error(r: Result<Option<Checkpoint>>, file: &str) {
        match r {
            Err(RuntimeError::Checkpoint { path, .. }) => assert!(path.ends_with(file), "{path:?}"),
            other => panic!("expected a checkpoint error about {file}, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_truncated_and_missing_files_are_reported() {
        let dir = tmpdir("corrupt");
        assert!(load_latest(&dir, &Device::Cpu).unwrap().is_none());
        let vm = model();
        let path =
            save(&dir, &Checkpoint::capture(5, &vm, None, None, serde_json::Value::Null).unwrap()).unwrap();
        let model_file = path.join(MODEL);
        let good = fs::read(&model_file).unwrap();

        fs::write(&model_file, &good[..good.len() / 2]).unwrap();
        expect_checkpoint_error(load_latest(&dir, &Device::Cpu), MODEL);

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        fs::write(&model_file, &flipped).unwrap();
        expect_checkpoint_error(load_latest(&dir, &Device::Cpu), MODEL);

        fs::remove_file(&model_file).unwrap();
        expect_checkpoint_error(load_latest(&dir, &Device::Cpu), MODEL);

        fs::write(&model_file, &good).unwrap();
        assert!(load_latest(&dir, &Device::Cpu).unwrap().is_some());
        fs::write(path.join(STATE), b"{ not json").unwrap();
        expect_checkpoint_error(load_latest(&dir, &Device::Cpu), STATE);
        fs::write(dir.join(LATEST), b"../elsewhere\n").unwrap();
        expect_checkpoint_error(load_latest(&dir, &Device::Cpu), LATEST);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interrupted_save_keeps_previous_checkpoint() {
        let dir = tmpdir("interrupt");
        let vm = model();
        let first =
            save(&dir, &Checkpoint::capture(10, &vm, None, None, serde_json::Value::Null).unwrap()).unwrap();
        // Simulate a crash during the save of step 20: a half-written temporary model file, no state.json.
        let second = dir.join(step_dir_name(20));
        fs::create_dir_all(&second).unwrap();
        fs::write(second.join(format!(".{MODEL}.tmp-999")), b"partial").unwrap();
        fs::write(dir.join(format!(".{LATEST}.tmp-999")), b"step-00000020").unwrap();
        assert_eq!(latest(&dir).unwrap(), Some(first.clone()));
        assert_eq!(load_latest(&dir, &Device::Cpu).unwrap().unwrap().step, 10);
        // The incomplete directory itself is reported as incomplete, naming its state file.
        match load(&second, &Device::Cpu) {
            Err(RuntimeError::Checkpoint { path, .. }) => assert!(path.ends_with(STATE)),
            other => panic!("{other:?}"),
        }
        // A later complete save of the same step replaces the debris and moves `latest`.
        let again =
            save(&dir, &Checkpoint::capture(20, &vm, None, None, serde_json::Value::Null).unwrap()).unwrap();
        assert_eq!(latest(&dir).unwrap(), Some(again));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prune_keeps_the_newest_and_latest() {
        let dir = tmpdir("prune");
        let vm = model();
        let save_at =
            |step| save(&dir, &Checkpoint::capture(step, &vm, None, None, serde_json::Value::Null).unwrap());
        for step in [10, 20, 30, 40] {
            save_at(step).unwrap();
        }
        let steps = |dir: &Path| {
            let mut v: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("step-"))
                .collect();
            v.sort();
            v
        };
        assert!(prune(&dir, 0).unwrap().is_empty(), "0 keeps everything");
        assert_eq!(prune(&dir, 2).unwrap().len(), 2);
        assert_eq!(steps(&dir), [step_dir_name(30), step_dir_name(40)]);
        // `latest` is never removed, even when it is not among the newest (a resumed, shorter run).
        fs::write(dir.join(LATEST), format!("{}\n", step_dir_name(30))).unwrap();
        save_at(50).unwrap();
        fs::write(dir.join(LATEST), format!("{}\n", step_dir_name(30))).unwrap();
        prune(&dir, 1).unwrap();
        assert_eq!(steps(&dir), [step_dir_name(30), step_dir_name(50)]);
        assert_eq!(load_latest(&dir, &Device::Cpu).unwrap().unwrap().step, 30);
        // An incomplete directory is not counted and not removed.
        fs::create_dir_all(dir.join(step_dir_name(5))).unwrap();
        prune(&dir, 1).unwrap();
        assert!(dir.join(step_dir_name(5)).is_dir());
        fs::remove_dir_all(&dir).unwrap();
    }
}
