//! Running a plan: the pipeline of built components, training, evaluation, checkpoints, run folders,
//! data parallelism, interruption and the hooks an embedder watches it with.

pub mod checkpoint;
pub mod distributed;
pub mod folder;
pub mod hooks;
pub mod interrupt;
pub mod perf;
pub mod pipeline;
pub mod precision;
pub mod run;
pub mod train;
