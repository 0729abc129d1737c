//! `sr._native`: the Python face of sr, over the same library as the command line.
//!
//! Each function mirrors a stage or command: `check` (diagnostics as dicts), `compile` (the plan as a
//! dict), `run` (train, sample, evaluate; the results as a dict), `sample` (raw samples and traces as
//! NumPy arrays), `load_checkpoint` (weights as NumPy arrays) and `components` (the catalogue). Long
//! calls release the GIL, report progress to an optional callback and stop at the next step boundary
//! on KeyboardInterrupt (training saves a checkpoint first). Every failure raises `sr.SrError` with
//! the code and the rendered message.

use std::ffi::CString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use numpy::{PyArray, PyArrayMethods};
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyTypeError, PyUserWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};
use sr_compiler::catalogue::{self, Kind};
use sr_compiler::{
    compile_path, compile_text, parse_override, Compilation, Diagnostic, FsLoader, Override, Plan,
};
use sr_runtime::error::RuntimeError;
use sr_runtime::engine::hooks::{Hooks, Progress};
use sr_runtime::engine::run::{RunOptions, SampleOptions};
use sr_runtime::samplers::Record;

pyo3::create_exception!(
    sr,
    SrError,
    PyException,
    "An sr failure: `code` (E…, R…, C…), `message`, `help` and, for a file with errors, `diagnostics`."
);

/// Raises `SrError`: `str(e)` is the rendered report; the attributes carry its parts.
fn sr_error(
    py: Python<'_>,
    code: &str,
    message: &str,
    help: Option<&str>,
    rendered: String,
    diagnostics: Option<Bound<'_, PyAny>>,
) -> PyErr {
    let err = SrError::new_err(rendered);
    let value = err.value(py);
    let diagnostics = diagnostics.unwrap_or_else(|| PyList::empty(py).into_any());
    let set = || -> PyResult<()> {
        value.setattr("code", code)?;
        value.setattr("message", message)?;
        value.setattr("help", help)?;
        value.setattr("diagnostics", diagnostics)?;
        Ok(())
    };
    match set() {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// A runtime error as `SrError`, rendered as the command line renders it (without colour).
fn runtime_error(py: Python<'_>, e: RuntimeError) -> PyErr {
    use miette::Diagnostic as _;
    let code = e.code().map(|c| c.to_string()).unwrap_or_default();
    let help = e.help().map(|h| h.to_string());
    let mut rendered = String::new();
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(sr_compiler::render::WIDTH);
    if handler.render_report(&mut rendered, &e).is_err() {
        rendered = format!("{code}: {e}");
    }
    sr_error(py, &code, &e.to_string(), help.as_deref(), rendered.trim_end().to_string(), None)
}

/// A diagnostic without a source (choosing the experiment, a bad override) as `SrError`.
fn bare_error(py: Python<'_>, d: &Diagnostic) -> PyErr {
    let help = d.help.as_deref().map(|h| format!("\n  help: {h}")).unwrap_or_default();
    sr_error(py, d.code, &d.message, d.help.as_deref(), format!("{}: {}{help}", d.code, d.message), None)
}

/// What the caller passed as the experiment: a file or `.srx` text.
enum Source {
    Path(PathBuf),
    Text(String),
}

impl Source {
    /// A `str` with a newline or a `{` is `.srx` text; any other `str` or `os.PathLike` is a path.
    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Source> {
        if let Ok(s) = obj.cast::<PyString>() {
            let s: String = s.extract()?;
            return Ok(if s.contains(['\n', '{']) { Source::Text(s) } else { Source::Path(s.into()) });
        }
        let path = obj
            .py()
            .import("os")?
            .call_method1("fspath", (obj,))
            .map_err(|_| PyTypeError::new_err("expected a path (str or os.PathLike) or .srx text"))?;
        Ok(Source::Path(PathBuf::from(path.extract::<String>()?)))
    }

    fn compile(&self, overrides: &[Override]) -> Compilation {
        match self {
            Source::Path(p) => compile_path(p, overrides),
            Source::Text(t) => compile_text("<text>", t, &FsLoader, overrides),
        }
    }

    fn name(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Text(_) => "<text>".into(),
        }
    }
}

/// `set={"train.steps": 200, "train.time": "independent"}` as `--set` overrides: booleans and numbers
/// are written as literals, strings are `.srx` value syntax as on the command line.
fn overrides(py: Python<'_>, set: Option<&Bound<'_, PyDict>>, steps: Option<u64>) -> PyResult<Vec<Override>> {
    let mut texts = Vec::new();
    if let Some(set) = set {
        for (key, value) in set.iter() {
            let key: String = key
                .extract()
                .map_err(|_| PyTypeError::new_err("`set` keys must be strings such as \"train.steps\""))?;
            texts.push(format!("{key}={}", literal(&value)?));
        }
    }
    if let Some(n) = steps {
        texts.push(format!("train.steps={n}"));
    }
    texts.iter().map(|t| parse_override(t).map_err(|d| bare_error(py, &d))).collect()
}

/// A Python value as `.srx` source text.
fn literal(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(if b.is_true() { "true" } else { "false" }.into());
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(value.str()?.to_string());
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        let x = f.value();
        if !x.is_finite() {
            return Err(PyValueError::new_err(format!("`set` value {x} is not a finite number")));
        }
        return Ok(value.repr()?.to_string());
    }
    if let Ok(s) = value.cast::<PyString>() {
        return s.extract();
    }
    Err(PyTypeError::new_err(format!(
        "`set` values must be bool, int, float or str (.srx syntax), not {}",
        value.get_type().name()?
    )))
}

/// A JSON value as the Python value `json.loads` would give.
fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => py.None().into_bound(py),
        J::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        J::String(s) => PyString::new(py, s).into_any(),
        J::Array(items) => {
            PyList::new(py, items.iter().map(|x| json_to_py(py, x)).collect::<PyResult<Vec<_>>>()?)?
                .into_any()
        }
        J::Object(map) => {
            let d = PyDict::new(py);
            for (k, x) in map {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

fn to_py<'py>(py: Python<'py>, v: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let json = serde_json::to_value(v).map_err(|e| PyValueError::new_err(e.to_string()))?;
    json_to_py(py, &json)
}

/// A tensor as a NumPy array of its shape: u8, u32, i64, f32 and f64 keep their dtype; f16 and
/// bf16 become float32 (NumPy has no bfloat16).
fn array<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyAny>> {
    let dims = t.dims().to_vec();
    let flat =
        t.to_device(&Device::Cpu).and_then(|t| t.flatten_all()).map_err(|e| runtime_error(py, e.into()))?;
    let err = |e: candle_core::Error| runtime_error(py, e.into());
    Ok(match flat.dtype() {
        DType::U8 => PyArray::from_vec(py, flat.to_vec1::<u8>().map_err(err)?).reshape(dims)?.into_any(),
        DType::U32 => PyArray::from_vec(py, flat.to_vec1::<u32>().map_err(err)?).reshape(dims)?.into_any(),
        DType::I64 => PyArray::from_vec(py, flat.to_vec1::<i64>().map_err(err)?).reshape(dims)?.into_any(),
        DType::F64 => PyArray::from_vec(py, flat.to_vec1::<f64>().map_err(err)?).reshape(dims)?.into_any(),
        _ => {
            let v = flat.to_dtype(DType::F32).and_then(|t| t.to_vec1::<f32>()).map_err(err)?;
            PyArray::from_vec(py, v).reshape(dims)?.into_any()
        }
    })
}

/// A 0/1 tensor as a boolean NumPy array.
fn bool_array<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyAny>> {
    let dims = t.dims().to_vec();
    let v: Vec<f32> = t
        .to_device(&Device::Cpu)
        .and_then(|t| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1())
        .map_err(|e| runtime_error(py, e.into()))?;
    Ok(PyArray::from_vec(py, v.into_iter().map(|x| x > 0.5).collect::<Vec<bool>>()).reshape(dims)?.into_any())
}

/// The diagnostics of a compilation as `sr check --format json` writes them, one dict each.
fn diagnostics<'py>(py: Python<'py>, c: &Compilation) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &sr_compiler::to_json(&c.diagnostics, &c.sources))
}

/// Compiles `source`: warnings go to Python's `warnings`; errors raise `SrError` with every diagnostic.
fn compile_checked(py: Python<'_>, source: &Source, overrides: &[Override]) -> PyResult<Compilation> {
    let c = source.compile(overrides);
    if c.has_errors() {
        let errors: Vec<&Diagnostic> = c.diagnostics.iter().filter(|d| d.is_error()).collect();
        let n = errors.len();
        let message = format!("{} has {n} error{}", source.name(), if n == 1 { "" } else { "s" });
        let rendered = format!("{}{message}", sr_compiler::render(&c.diagnostics, &c.sources, false));
        return Err(sr_error(
            py,
            errors[0].code,
            &message,
            errors[0].help.as_deref(),
            rendered,
            Some(diagnostics(py, &c)?),
        ));
    }
    let warnings: Vec<Diagnostic> = c.diagnostics.iter().filter(|d| !d.is_error()).cloned().collect();
    if !warnings.is_empty() {
        let text = sr_compiler::render(&warnings, &c.sources, false).replace('\0', "");
        let text = CString::new(text).unwrap_or_default();
        PyErr::warn(py, &py.get_type::<PyUserWarning>(), &text, 2)?;
    }
    Ok(c)
}

fn select<'c>(py: Python<'_>, c: &'c Compilation, experiment: Option<&str>) -> PyResult<&'c Plan> {
    sr_compiler::select_plan(&c.plans, experiment).map_err(|d| bare_error(py, &d))
}

/// Runs `work` with the GIL released and `hooks` wired to Python: after every step the GIL is taken
/// back for a moment to run pending signal handlers (Ctrl-C) and the `progress` callback. An
/// exception from either requests a stop; it is raised once `work` has returned (after training
/// has saved its checkpoint), a KeyboardInterrupt with the runtime's message of what was saved.
fn with_hooks<T: Send>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    work: impl FnOnce(Hooks) -> Result<T, RuntimeError> + Send,
) -> PyResult<T> {
    let raised: Arc<Mutex<Option<PyErr>>> = Arc::default();
    // Python keeps its own SIGINT handler; Ctrl-C reaches the runtime through `check_signals`.
    let mut hooks = Hooks { caller_handles_signals: true, ..Hooks::default() };
    let (stop, slot) = (hooks.clone(), raised.clone());
    hooks.progress = Some(Arc::new(move |p: &Progress| {
        if stop.stop_requested() {
            return;
        }
        Python::attach(|py| {
            let outcome = py.check_signals().and_then(|()| match &progress {
                Some(callback) => callback.call1(py, (progress_dict(py, p)?,)).map(drop),
                None => Ok(()),
            });
            if let Err(e) = outcome {
                if let Ok(mut slot) = slot.lock() {
                    slot.get_or_insert(e);
                }
                stop.request_stop();
            }
        });
    }));
    let result = py.detach(move || work(hooks));
    let pending = raised.lock().ok().and_then(|mut s| s.take());
    match (pending, result) {
        (Some(e), result) => {
            if !e.is_instance_of::<PyKeyboardInterrupt>(py) {
                return Err(e);
            }
            let message = match result {
                Err(e @ RuntimeError::Interrupted { .. }) => format!("{e}; continue with resume=True"),
                Err(other) => other.to_string(),
                Ok(_) => "interrupted after the call had finished".into(),
            };
            let interrupt = PyKeyboardInterrupt::new_err(message);
            interrupt.set_cause(py, Some(e));
            Err(interrupt)
        }
        (None, result) => result.map_err(|e| runtime_error(py, e)),
    }
}

fn progress_dict<'py>(py: Python<'py>, p: &Progress) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("stage", p.stage.as_str())?;
    d.set_item("label", p.label)?;
    d.set_item("done", p.done)?;
    d.set_item("total", p.total)?;
    d.set_item("loss", p.loss)?;
    Ok(d)
}

/// Whether the runtime draws its own live progress line: only on a terminal, and never when the
/// caller draws its own.
fn live_bar(progress: &Option<Py<PyAny>>) -> bool {
    progress.is_none() && std::io::stderr().is_terminal()
}

/// Parses, resolves and checks an experiment and returns its diagnostics, errors and warnings, as
/// `sr check --format json` reports them: a list of dicts with `code`, `severity` ("error" or
/// "warning"), `message`, `file`, `line`, `column` (1-based; None without a location), `labels` and
/// `help`. A file with errors raises nothing: an empty list means the file is fine.
///
/// `source` is a path (str or os.PathLike) or .srx text (a str with a newline or `{`). `set`
/// overrides keys as `--set` does: {"train.steps": 200}.
#[pyfunction]
#[pyo3(signature = (source, *, set = None))]
fn check<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    set: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let source = Source::extract(source)?;
    let overrides = overrides(py, set, None)?;
    diagnostics(py, &source.compile(&overrides))
}

/// The checked plan of an experiment as a dict (what `sr compile` writes as JSON): `experiment`,
/// `seed`, `shapes`, `train`, `graph` with every component and its parameters, defaults filled in.
/// Raises SrError when the file has errors (with every diagnostic in `e.diagnostics`); warnings go to
/// Python's `warnings`. `experiment` chooses one when the file defines several.
#[pyfunction]
#[pyo3(signature = (source, *, set = None, experiment = None))]
fn compile<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    set: Option<&Bound<'py, PyDict>>,
    experiment: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let source = Source::extract(source)?;
    let c = compile_checked(py, &source, &overrides(py, set, None)?)?;
    to_py(py, select(py, &c, experiment)?)
}

/// Trains, samples and evaluates an experiment as `sr run` does, writing the same run folder
/// (`plan.json`, `metrics.jsonl`, `loss.png`, `checkpoints/`, `results.json`, `results.md`) under
/// `out`, and returns the results: `experiment`, `train_steps`, `train_start`, `train_seconds`,
/// `final_loss`, `parameters`, `rows` (one per metric, split and sampler: `sampler`, `metric`, `split`,
/// `scores`, `samples`, `steps`, `seconds`), `table` (the Markdown table `sr run` prints) and `out`.
///
/// `steps` overrides `train.steps`; `resume` continues from the run folder's latest checkpoint;
/// `force` starts afresh in a folder that holds another run (removing its files); `evaluate=False`
/// only trains; `eval_samples` caps the samples evaluated per split.
/// `progress(event)` is called after every training step and denoiser call with a dict: `stage`
/// ("train" or "evaluate"), `label`, `done`, `total` and `loss` (training only).
///
/// The GIL is released while it runs. Ctrl-C (or KeyboardInterrupt raised by `progress`) stops
/// training at the next step, saves a checkpoint of the steps done and raises KeyboardInterrupt;
/// `resume=True` continues from there. Any other exception from `progress` stops the run the same way
/// and is raised as it is. Failures raise SrError.
#[pyfunction]
#[pyo3(signature = (source, *, out = PathBuf::from("runs"), set = None, steps = None, resume = false, force = false, experiment = None, device = None, evaluate = true, eval_samples = None, progress = None))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    out: PathBuf,
    set: Option<&Bound<'py, PyDict>>,
    steps: Option<u64>,
    resume: bool,
    force: bool,
    experiment: Option<&str>,
    device: Option<String>,
    evaluate: bool,
    eval_samples: Option<u64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let source = Source::extract(source)?;
    let c = compile_checked(py, &source, &overrides(py, set, steps)?)?;
    let plan = select(py, &c, experiment)?;
    let live = live_bar(&progress);
    let summary = with_hooks(py, progress, |hooks| {
        let options = RunOptions {
            out: out.clone(),
            resume,
            force,
            device,
            evaluate,
            progress: live,
            eval_limit: eval_samples,
            hooks,
        };
        sr_runtime::engine::run::run(plan, &options)
    })?;
    let results = to_py(py, &summary.results)?;
    results.set_item("table", summary.table)?;
    results.set_item("out", out.display().to_string())?;
    Ok(results)
}

/// Samples `n` items from a trained checkpoint (a run folder, its `checkpoints/` or one step folder)
/// as `sr sample` does, without writing files, and returns a dict of NumPy arrays:
///
/// - `samples`: the samples in the dataset's raw form, `[n, *raw_shape]`: uint8 digits 1–9
///   `[n, 9, 9]` for Sudoku grids (`grid_cells`), float32 otherwise (images `[n, C, H, W]` in
///   [-1, 1], videos `[n, T, C, H, W]`, point sets `[n, P, D]`);
/// - `reference`: the split's samples the givens were taken from, same shape and dtype;
/// - `mask`: bool `[n, *raw_shape]`, True where a value was given (None for unconditional splits);
/// - `given`: bool `[n, V]`, True for the given variables;
/// - `sampler`, `split`, `steps` (denoiser calls);
/// - `trace` (with `trace=True`, else None), of the first batch of `b = min(n, batch)` samples (the
///   sampler's `batch`), as `sr sample --trace` writes it: `t` float32 `[S + 1, b, V]` (the time of
///   every variable before each of the S denoiser calls, then the final state), `sigma` float32
///   `[S + 1, b, V]` (predicted σ; None without an uncertainty head) and `latents` float32
///   `[S, b, V, F]` (the variables after every call).
///
/// `sampler` defaults to the first declared, `split` to the first evaluated. `progress(event)` is
/// called after every denoiser call (`stage` "sample"). The GIL is released while it runs; Ctrl-C
/// raises KeyboardInterrupt once the batch is done.
#[pyfunction]
#[pyo3(signature = (source, *, checkpoint, n = 16, sampler = None, trace = false, split = None, set = None, experiment = None, device = None, progress = None))]
#[allow(clippy::too_many_arguments)]
fn sample<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    checkpoint: PathBuf,
    n: usize,
    sampler: Option<String>,
    trace: bool,
    split: Option<String>,
    set: Option<&Bound<'py, PyDict>>,
    experiment: Option<&str>,
    device: Option<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if n == 0 {
        return Err(PyValueError::new_err("n must be at least 1"));
    }
    let source = Source::extract(source)?;
    let c = compile_checked(py, &source, &overrides(py, set, None)?)?;
    let plan = select(py, &c, experiment)?;
    let live = live_bar(&progress);
    let (drawn, digits, v, f) = with_hooks(py, progress, |hooks| {
        let model = sr_runtime::engine::run::build_model(plan, device.as_deref())?;
        let options = SampleOptions {
            checkpoint,
            n,
            sampler,
            split,
            out: PathBuf::new(),
            trace,
            device: None,
            progress: live,
            hooks,
        };
        let record = Record { trace, frames: if trace { n } else { 0 } };
        let drawn = sr_runtime::engine::run::draw(plan, &model, &options, record)?;
        let digits = model.mapper.name() == "grid_cells";
        Ok((drawn, digits, model.mapper.variables(), model.mapper.features()))
    })?;
    let raw_form = |t: &Tensor| -> PyResult<Bound<'py, PyAny>> {
        let t = if digits { t.round().and_then(|t| t.to_dtype(DType::U8)) } else { Ok(t.clone()) };
        array(py, &t.map_err(|e| runtime_error(py, e.into()))?)
    };
    let out = PyDict::new(py);
    out.set_item("samples", raw_form(&drawn.raw)?)?;
    out.set_item("reference", raw_form(&drawn.reference)?)?;
    out.set_item("mask", drawn.mask.as_ref().map(|m| bool_array(py, m)).transpose()?)?;
    out.set_item("given", bool_array(py, &drawn.given)?)?;
    out.set_item("sampler", &drawn.sampler)?;
    out.set_item("split", &drawn.split)?;
    out.set_item("steps", drawn.sampled.steps)?;
    let trace_dict = if trace { Some(trace_arrays(py, &drawn.sampled, v, f)?) } else { None };
    out.set_item("trace", trace_dict)?;
    Ok(out.into_any())
}

/// The trace of the first sampled batch (`b` samples, at most the sampler's `batch`) as arrays `t`,
/// `sigma` `[S + 1, b, V]` and `latents` `[S, b, V, F]`.
fn trace_arrays<'py>(
    py: Python<'py>,
    sampled: &sr_runtime::samplers::Sampled,
    v: usize,
    f: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let steps = sampled.trace.len();
    let n = sampled.trace.first().map_or(0, |s| s.t.len());
    let flat = |rows: &dyn Fn(&sr_runtime::samplers::TraceStep) -> &Vec<Vec<f32>>| -> Vec<f32> {
        sampled.trace.iter().flat_map(|s| rows(s).iter().flatten().copied()).collect()
    };
    let d = PyDict::new(py);
    d.set_item("t", PyArray::from_vec(py, flat(&|s| &s.t)).reshape([steps, n, v])?)?;
    let has_sigma = sampled.trace.iter().all(|s| !s.sigma.is_empty()) && steps > 0;
    let sigma = if has_sigma {
        Some(PyArray::from_vec(py, flat(&|s| &s.sigma)).reshape([steps, n, v])?)
    } else {
        None
    };
    d.set_item("sigma", sigma)?;
    let latents = if sampled.frames.is_empty() {
        PyArray::from_vec(py, Vec::<f32>::new()).reshape([0, n, v, f])?.into_any()
    } else {
        let stacked = Tensor::stack(&sampled.frames, 0).map_err(|e| runtime_error(py, e.into()))?;
        array(py, &stacked)?
    };
    d.set_item("latents", latents)?;
    Ok(d)
}

/// Reads a checkpoint: `path` is a run folder, its `checkpoints/` (both: the latest checkpoint) or one
/// step folder. Every file's size and hash are checked as when resuming. Returns a dict: `step`,
/// `path` (the step folder), `model` and `ema` (None without EMA) as {name: numpy array}, `optimizer`
/// (None, or `kind`, `step` and `tensors`) and `plan` (the run's plan.json as a dict, None if absent).
#[pyfunction]
fn load_checkpoint<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let dir = sr_runtime::engine::run::checkpoint_dir(&path).map_err(|e| runtime_error(py, e))?;
    let (step_dir, ck) = py
        .detach(|| {
            let step_dir = sr_runtime::engine::checkpoint::latest(&dir)?.unwrap_or(dir);
            let ck = sr_runtime::engine::checkpoint::load(&step_dir, &Device::Cpu)?;
            Ok::<_, RuntimeError>((step_dir, ck))
        })
        .map_err(|e| runtime_error(py, e))?;
    let tensors = |map: &std::collections::BTreeMap<String, Tensor>| -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, t) in map {
            d.set_item(name, array(py, t)?)?;
        }
        Ok(d)
    };
    let out = PyDict::new(py);
    out.set_item("step", ck.step)?;
    out.set_item("path", step_dir.display().to_string())?;
    out.set_item("model", tensors(&ck.model)?)?;
    out.set_item("ema", ck.ema.as_ref().map(tensors).transpose()?)?;
    let optimizer = match &ck.optimizer {
        Some(o) => {
            let d = PyDict::new(py);
            d.set_item("kind", &o.kind)?;
            d.set_item("step", o.step)?;
            d.set_item("tensors", tensors(&o.tensors)?)?;
            Some(d)
        }
        None => None,
    };
    out.set_item("optimizer", optimizer)?;
    out.set_item("plan", run_plan(py, &step_dir)?)?;
    Ok(out.into_any())
}

/// The `plan.json` of the run a step folder belongs to (`<run>/checkpoints/step-N`), if any.
fn run_plan<'py>(py: Python<'py>, step_dir: &Path) -> PyResult<Option<Bound<'py, PyAny>>> {
    for dir in step_dir.ancestors().take(3) {
        let path = dir.join("plan.json");
        if path.is_file() {
            let text =
                std::fs::read_to_string(&path).map_err(|e| runtime_error(py, RuntimeError::io(&path, e)))?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                runtime_error(py, RuntimeError::data_file(&path, format!("is not valid JSON: {e}")))
            })?;
            return Ok(Some(json_to_py(py, &json)?));
        }
    }
    Ok(None)
}

/// The component catalogue (what `sr components` lists) as a list of dicts: `kind`, `name`, `doc` and
/// `params` (each: `name`, `type`, `default`, `required`, `min`, `max`, `doc`). `name` narrows it as
/// `sr components NAME` does: a kind ("flow"), a name ("rectified") or both ("flow.rectified").
/// Raises SrError (C0004, C0005) when nothing matches.
#[pyfunction]
#[pyo3(signature = (name = None))]
fn components<'py>(py: Python<'py>, name: Option<&str>) -> PyResult<Bound<'py, PyList>> {
    let found: Vec<&catalogue::Component> = match name {
        None => catalogue::all().iter().collect(),
        Some(name) => match name.parse::<Kind>() {
            Ok(kind) => catalogue::of_kind(kind).collect(),
            Err(_) => find_components(py, name)?,
        },
    };
    let entries = found
        .into_iter()
        .map(|c| {
            let d = PyDict::new(py);
            d.set_item("kind", c.kind.as_str())?;
            d.set_item("name", c.name)?;
            d.set_item("doc", c.doc)?;
            let params = c
                .params
                .iter()
                .map(|p| {
                    let pd = PyDict::new(py);
                    pd.set_item("name", p.name)?;
                    pd.set_item("type", p.ty.to_string())?;
                    pd.set_item("default", to_py(py, &p.default)?)?;
                    pd.set_item("required", p.is_required())?;
                    pd.set_item("min", p.min)?;
                    pd.set_item("max", p.max)?;
                    pd.set_item("doc", p.doc)?;
                    Ok(pd)
                })
                .collect::<PyResult<Vec<_>>>()?;
            d.set_item("params", params)?;
            Ok(d)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, entries)
}

/// `name` or `kind.name` in the catalogue, with the command line's errors.
fn find_components(py: Python<'_>, name: &str) -> PyResult<Vec<&'static catalogue::Component>> {
    let (kind, bare) = match name.split_once('.') {
        Some((k, n)) => match k.parse::<Kind>() {
            Ok(kind) => (Some(kind), n),
            Err(_) => {
                let kinds = Kind::ALL.map(|k| k.as_str());
                let help = match sr_compiler::suggest::did_you_mean(k, kinds) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the kinds are {}", kinds.join(", ")),
                };
                let d = Diagnostic::bare("C0004", format!("unknown component kind `{k}`")).with_help(help);
                return Err(bare_error(py, &d));
            }
        },
        None => (None, name),
    };
    let found: Vec<_> =
        catalogue::by_name(bare).into_iter().filter(|c| kind.is_none_or(|k| c.kind == k)).collect();
    if found.is_empty() {
        let help = match sr_compiler::suggest::did_you_mean(bare, catalogue::all().iter().map(|c| c.name)) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "sr.components() lists every component".into(),
        };
        let d = Diagnostic::bare("C0005", format!("no component named `{name}`")).with_help(help);
        return Err(bare_error(py, &d));
    }
    Ok(found)
}

/// The native module; `sr/__init__.py` re-exports it.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // As the `sr` binary does at start-up, before sr starts a thread of its own.
    sr_runtime::engine::perf::configure_threads();
    sr_runtime::engine::perf::tune_allocator();
    m.add("SrError", m.py().get_type::<SrError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(sample, m)?)?;
    m.add_function(wrap_pyfunction!(load_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(components, m)?)?;
    Ok(())
}
