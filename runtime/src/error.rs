//! The runtime's one error type.
//!
//! Every runtime module returns [`RuntimeError`]; add variants rather than new error types, so the
//! command line can render any runtime failure with a stable code and a hint.

use std::path::PathBuf;

/// Result alias of the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Everything that can go wrong while building or running a plan.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RuntimeError {
    /// A data file exists but its content is wrong (bad magic number, truncated, wrong dtype, ...).
    #[error("{}: {what}", path.display())]
    #[diagnostic(code(R0101), help("check the file: it may be truncated, corrupt or of another format"))]
    DataFile { path: PathBuf, what: String },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    #[diagnostic(code(R0102), help("check that the path exists, is readable and that the disk has room"))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image could not be decoded or encoded.
    #[error("{}: {source}", path.display())]
    #[diagnostic(code(R0103))]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// A plot or tracking file could not be drawn or encoded.
    #[error("{}: {what}", path.display())]
    #[diagnostic(code(R0120))]
    Plot { path: PathBuf, what: String },
    /// A parameter value does not fit what the run finds (a patch that does not divide the loaded
    /// images, more samples than the split holds).
    #[error("{component}: parameter `{name}`: {what}")]
    #[diagnostic(code(R0201))]
    Param { component: String, name: String, what: String },
    /// A plan node's parameters do not fit its component's configuration: an unknown, missing or
    /// mistyped key (the plan was written by hand or by another version of sr).
    #[error("{component}: the plan's parameters do not fit: {what}")]
    #[diagnostic(code(R0206), help("compile the experiment again with this `sr` (`sr compile`)"))]
    PlanParams { component: String, what: String },
    /// No component of this kind has this name.
    #[error("unknown {kind} `{name}`")]
    #[diagnostic(code(R0202), help("`sr components` lists every component"))]
    UnknownComponent { kind: String, name: String },
    /// A component cannot be built for the given shapes or configuration.
    #[error("{0}")]
    #[diagnostic(code(R0203))]
    Config(String),
    /// A tensor or sample does not have the expected shape.
    #[error("shape mismatch: {0}")]
    #[diagnostic(code(R0204))]
    Shape(String),
    /// An operation the chosen configuration does not support.
    #[error("unsupported: {0}")]
    #[diagnostic(code(R0205))]
    Unsupported(String),
    /// A sample index outside a finite dataset.
    #[error("{dataset}: index {index} out of range (dataset has {len} samples)")]
    #[diagnostic(code(R0104))]
    IndexOutOfRange { dataset: String, index: u64, len: u64 },
    /// A checkpoint file is missing, truncated, corrupt or does not match the model.
    #[error("checkpoint {}: {reason}", path.display())]
    #[diagnostic(code(R0301), help("delete or replace the file, or resume from an older checkpoint"))]
    Checkpoint { path: PathBuf, reason: String },
    /// A checkpoint path that does not exist or holds no checkpoint (a mistyped or unfinished run).
    #[error("no checkpoint at {}: {what}", path.display())]
    #[diagnostic(
        code(R0310),
        help(
            "pass a run folder (`sr run --out DIR`), its `checkpoints/` folder or one `step-N` folder in it"
        )
    )]
    NoCheckpoint { path: PathBuf, what: String },
    /// A checkpoint was trained for another model or objective than this plan: `keys` lists the keys
    /// that differ, as `key: checkpoint value → plan value`.
    #[error("checkpoint {}: trained for another model or objective (experiment {}); it differs in {}", path.display(), trained_for, keys.join("; "))]
    #[diagnostic(
        code(R0302),
        help("use the experiment and `--set` overrides the checkpoint was trained with, or train a new run")
    )]
    PlanMismatch { path: PathBuf, trained_for: String, keys: Vec<String> },
    /// The run folder is in use by another `sr run`, or holds another run's files.
    #[error("run folder {}: {what}", path.display())]
    #[diagnostic(code(R0105), help("{help}"))]
    RunFolder { path: PathBuf, what: String, help: String },
    /// Training was interrupted (SIGINT or SIGTERM) and stopped at a step boundary after saving.
    #[error("interrupted after step {step}: the checkpoint of step {step} is saved in {}", dir.display())]
    #[diagnostic(code(R0402), help("continue with the same `sr run` command plus `--resume`"))]
    Interrupted { step: u64, dir: PathBuf },
    /// Training produced a non-finite loss or gradient at step `step` (counted from 1, as in the
    /// metrics log and checkpoint names).
    #[error("training diverged at step {step}: {what}")]
    #[diagnostic(
        code(R0401),
        help("the last good checkpoint is kept; lower the learning rate, raise warm-up or enable clipping")
    )]
    Diverged { step: u64, what: String },
    /// A caller stopped evaluation or sampling through [`Hooks`](crate::engine::hooks::Hooks) (Python's
    /// Ctrl-C); training stops with [`RuntimeError::Interrupted`] instead, after saving a checkpoint.
    #[error("{0}")]
    #[diagnostic(code(R0403), help("nothing was written; run the call again to finish it"))]
    Stopped(String),
    /// The ranks of a data-parallel run cannot work together (a build without MPI under a launcher,
    /// a batch smaller than the number of ranks, ranks that disagree about the run).
    #[error("distributed training: {0}")]
    #[diagnostic(
        code(R0410),
        help("every rank must run the same `sr` build on the same experiment; see README, Data parallelism")
    )]
    Distributed(String),
    /// The ranks' weights differ after step `step`: the run is no longer one model.
    #[error("the ranks' weights differ after step {step} (hashes {hashes})")]
    #[diagnostic(
        code(R0411),
        help("ranks must run the same build with the same thread count on the same kind of device; resume from the last checkpoint")
    )]
    RanksDiverged { step: u64, hashes: String },
    /// Another rank failed at a point where all ranks compare notes (e.g. rank 0's run-folder check);
    /// that rank prints its error.
    #[error("rank {rank} stopped the run during {what}")]
    #[diagnostic(code(R0413), help("see rank {rank}'s error"))]
    RankStopped { rank: usize, what: String },
    /// A collective operation waited longer than the timeout: another rank died or hangs.
    #[error("no answer from the other ranks for {seconds} s during {what}: a rank died or hangs")]
    #[diagnostic(
        code(R0412),
        help("see the other ranks' output; SR_COLLECTIVE_TIMEOUT sets the limit in seconds; resume with `--resume`")
    )]
    CollectiveTimeout { what: String, seconds: u64 },
    /// The requested device is not available in this build or on this machine.
    #[error("device `{device}`: {what}")]
    #[diagnostic(
        code(R0501),
        help("use `--device cpu`, or build with `--features cuda` on a machine with CUDA")
    )]
    Device { device: String, what: String },
    /// No usable NVIDIA driver: `libcuda` is missing, is the link stub, or finds no GPU.
    #[error("device `{device}`: {what}")]
    #[diagnostic(
        code(R0502),
        help(
            "install the NVIDIA driver (it provides libcuda.so.1) on a machine with a GPU, and check `nvidia-smi`; \
             or run on `--device cpu`"
        )
    )]
    NoDriver { device: String, what: String },
    /// `SR_KERNELS` has a value other than `fused` or `composite`.
    #[error("{0}")]
    #[diagnostic(
        code(R0503),
        help(
            "unset SR_KERNELS, or set it to `fused` (the default) or `composite` (the code path a GPU runs)"
        )
    )]
    Kernels(String),
    /// An error raised by candle.
    #[error(transparent)]
    #[diagnostic(code(R0001))]
    Candle(#[from] candle_core::Error),
}

impl RuntimeError {
    /// A data-file error naming the file and what is wrong with it.
    pub fn data_file(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        RuntimeError::DataFile { path: path.into(), what: what.into() }
    }

    /// An I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io { path: path.into(), source }
    }

    /// A parameter error of a component.
    pub fn param(component: &str, name: &str, what: impl Into<String>) -> Self {
        RuntimeError::Param { component: component.to_string(), name: name.to_string(), what: what.into() }
    }
}
