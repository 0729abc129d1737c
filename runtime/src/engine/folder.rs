//! Run folders: one `sr run` at a time in a folder (an advisory lock held for the whole run), and no
//! fresh run over the files of another run unless asked (`--force`), checked before anything is written.

use std::fs::File;
use std::path::{Path, PathBuf};

use sr_compiler::plan::Plan;

use crate::engine::checkpoint::{self, PlanKeys};
use crate::error::{Result, RuntimeError};

/// The lock file inside a run folder.
pub const LOCK: &str = ".sr-lock";

/// The files and folders a run writes (and `--force` removes before a fresh run).
pub const RUN_FILES: [&str; 6] =
    ["plan.json", "metrics.jsonl", "checkpoints", "loss.png", "results.json", "results.md"];

/// How a run treats a folder that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A fresh run; refused when the folder holds another run's files.
    Fresh,
    /// A fresh run that first removes another run's files.
    Force,
    /// Continue from the folder's latest checkpoint.
    Resume,
}

/// An exclusive advisory lock on a run folder, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

fn folder_error(path: &Path, what: impl Into<String>, help: impl Into<String>) -> RuntimeError {
    RuntimeError::RunFolder { path: path.to_path_buf(), what: what.into(), help: help.into() }
}

impl RunLock {
    /// Creates `root` if needed and locks it; another process holding the lock is an error (R0105).
    pub fn acquire(root: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(root).map_err(|e| RuntimeError::io(root, e))?;
        let path = root.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| RuntimeError::io(&path, e))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: `flock` on a descriptor this function owns; LOCK_NB makes it return at once.
            let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            if !locked {
                return Err(folder_error(
                    root,
                    "another `sr run` is using this folder",
                    "wait for it to finish, or choose another folder with `--out`",
                ));
            }
        }
        Ok(RunLock { _file: file })
    }
}

/// Checks that a run may start in `root` as `start` says, for `plan`, before anything is written: a fresh
/// run needs a folder without another run's files (or `--force`, which removes them); a resumed run needs
/// a checkpoint of the same model and objective. Returns the step a resumed run continues from.
pub fn prepare(root: &Path, plan: &Plan, start: Start) -> Result<u64> {
    let present: Vec<&str> = RUN_FILES.iter().copied().filter(|f| root.join(f).exists()).collect();
    match start {
        Start::Fresh if !present.is_empty() => Err(folder_error(
            root,
            format!("holds another run ({})", present.join(", ")),
            "continue it with `--resume`, replace it with `--force`, or choose another folder with `--out`",
        )),
        Start::Fresh => Ok(0),
        Start::Force => {
            for f in present {
                let p = root.join(f);
                let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                removed.map_err(|e| RuntimeError::io(&p, e))?;
            }
            Ok(0)
        }
        Start::Resume => {
            let dir = root.join("checkpoints");
            let Some(step_dir) = checkpoint::latest(&dir)? else {
                return Err(RuntimeError::NoCheckpoint {
                    path: dir,
                    what: "nothing to resume from (start the run without `--resume`)".into(),
                });
            };
            let (step, recorded) = checkpoint::verify(&step_dir)?;
            PlanKeys::check(recorded.as_ref(), plan, &step_dir, true)?;
            Ok(step)
        }
    }
}

/// The default run folder of an experiment: `runs/<experiment>`.
pub fn default_out(plan: &Plan) -> PathBuf {
    Path::new("runs").join(&plan.experiment)
}
