//! Data parallelism: the ranks of one training run and the collective operations between them.
//!
//! `sr run` started by an MPI launcher (`mpirun -np N`, Slurm's `srun`) in a build with the `mpi`
//! feature trains one model on every rank. Each rank draws its contiguous slice of every global batch,
//! the gradients are summed by one all-reduce of a single flat buffer per step, and every rank applies
//! the same update. MPI (through the `mpi` crate, i.e. Open MPI or MPICH) does launch, bootstrap and
//! the CPU collectives, so sr adds no protocol of its own. Without a launcher the world is this one
//! process and every collective is the identity.
//!
//! Every collective runs under a watchdog: one that waits longer than `SR_COLLECTIVE_TIMEOUT` seconds
//! (default [`DEFAULT_TIMEOUT_S`]) ends the process with R0412, so a rank that died or hangs never
//! keeps the others waiting until the cluster's wall clock runs out.

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(all(feature = "mpi", feature = "cuda"))]
mod nccl;

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::error::{Result, RuntimeError};

/// Seconds a collective may wait for the other ranks before the process stops with R0412.
pub const DEFAULT_TIMEOUT_S: u64 = 300;

/// Environment variable overriding [`DEFAULT_TIMEOUT_S`].
pub const TIMEOUT_ENV: &str = "SR_COLLECTIVE_TIMEOUT";

/// Environment variables by which MPI launchers announce the number of processes.
const LAUNCHER_SIZE_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];

/// The processes of one run: this process's rank among `size`, and its place on its machine.
#[derive(Debug)]
pub struct World {
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
    host: String,
    #[cfg(feature = "mpi")]
    mpi: bool,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The world of this process: the one [`init`] joined, or a single process.
pub fn world() -> &'static World {
    WORLD.get_or_init(World::single)
}

/// Keeps MPI initialised; finalises it when dropped (at the end of `main`).
pub struct Guard {
    #[cfg(feature = "mpi")]
    universe: Option<::mpi::environment::Universe>,
}

/// Set once this rank's failure is known to the other ranks (see [`World::agree`]).
static FAILURE_SHARED: AtomicBool = AtomicBool::new(false);

impl Guard {
    /// Passes `result` through in a single process. With several ranks, an error becomes `Err(None)`
    /// when another rank reports it (a failure every rank reached together is printed by rank 0 alone,
    /// one another rank reported is not printed again); every other error is printed and ends every
    /// rank at once (`MPI_Abort`), since the other ranks may be waiting for this one in a collective
    /// and a normal exit would wait for them in `MPI_Finalize`.
    pub fn check<T>(&self, result: Result<T>) -> std::result::Result<T, Option<RuntimeError>> {
        let e = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let world = world();
        if world.size() == 1 {
            return Err(Some(e));
        }
        match e {
            RuntimeError::RankStopped { .. } => Err(None),
            e if reached_by_all(&e) => Err(world.is_root().then_some(e)),
            e if FAILURE_SHARED.load(Ordering::SeqCst) => Err(Some(e)),
            e => {
                #[cfg(feature = "mpi")]
                if self.universe.is_some() {
                    eprintln!("rank {}: {:?}", world.rank(), miette::Report::new(e));
                    mpi::abort(1)
                }
                Err(Some(e))
            }
        }
    }
}

/// Whether every rank stops with this same error at the same step: the values it depends on were
/// exchanged between the ranks first (interrupts and losses in the gradient all-reduce, weight hashes).
fn reached_by_all(e: &RuntimeError) -> bool {
    matches!(
        e,
        RuntimeError::Interrupted { .. } | RuntimeError::Diverged { .. } | RuntimeError::RanksDiverged { .. }
    )
}

/// Joins the ranks of an MPI launch, when this process was started by one; otherwise the world is
/// this process alone. Call once, first thing, before any other thread starts: it also sets the
/// compute threads of each rank to its share of the machine's cores (unless `CANDLE_NUM_THREADS` or
/// `RAYON_NUM_THREADS` is set).
pub fn init() -> Result<Guard> {
    let launched = launcher_size().is_some_and(|n| n > 1);
    #[cfg(feature = "mpi")]
    {
        if launched {
            let (universe, world) = mpi::init()?;
            share_cores(&world);
            let _ = WORLD.set(world);
            mpi::start_watchdog(timeout());
            return Ok(Guard { universe: Some(universe) });
        }
        let _ = WORLD.set(World::single());
        Ok(Guard { universe: None })
    }
    #[cfg(not(feature = "mpi"))]
    {
        if launched {
            return Err(RuntimeError::Distributed(
                "started by an MPI launcher with several processes, but this sr was built without the `mpi` \
                 feature: every process would train its own copy. Rebuild with `--features mpi`"
                    .into(),
            ));
        }
        let _ = WORLD.set(World::single());
        Ok(Guard {})
    }
}

/// The world size an MPI launcher announced in the environment, if any.
fn launcher_size() -> Option<usize> {
    LAUNCHER_SIZE_VARS.iter().find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// The collective timeout in seconds (`SR_COLLECTIVE_TIMEOUT`, else the default).
#[cfg(feature = "mpi")]
fn timeout() -> u64 {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_TIMEOUT_S)
}

/// Compute threads of a rank: all the cores its launcher bound it to, or, when it is not bound, the
/// machine's cores divided by the ranks on the machine.
pub fn threads_per_rank(bound: usize, online: usize, local_size: usize) -> usize {
    if bound < online {
        bound.max(1)
    } else {
        (online / local_size.max(1)).max(1)
    }
}

/// Sets the compute threads of this rank for candle's products (`CANDLE_NUM_THREADS`) and the fused
/// kernels' thread pool (`RAYON_NUM_THREADS`): the one the user set, else this rank's share of the cores.
#[cfg(feature = "mpi")]
fn share_cores(world: &World) {
    let set = |v: &str| std::env::var(v).ok().and_then(|s| s.trim().parse::<usize>().ok()).filter(|n| *n > 0);
    let threads = set("RAYON_NUM_THREADS").or_else(|| set("CANDLE_NUM_THREADS")).unwrap_or_else(|| {
        let bound = std::thread::available_parallelism().map_or(1, |n| n.get());
        threads_per_rank(bound, online_cpus().unwrap_or(bound), world.local_size)
    });
    // Before sr starts a thread (see `init`), so none of its threads reads the environment meanwhile.
    for v in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        if set(v).is_none() {
            std::env::set_var(v, threads.to_string());
        }
    }
}

#[cfg(all(feature = "mpi", target_os = "linux", target_env = "gnu"))]
fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf only reads a system setting.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|n| *n > 0)
}

#[cfg(all(feature = "mpi", not(all(target_os = "linux", target_env = "gnu"))))]
fn online_cpus() -> Option<usize> {
    None
}

impl World {
    /// A world of one process.
    pub fn single() -> World {
        World {
            rank: 0,
            size: 1,
            local_rank: 0,
            local_size: 1,
            host: host_name(),
            #[cfg(feature = "mpi")]
            mpi: false,
        }
    }

    /// This process's rank, 0-based.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0, the one that writes the run folder.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// This process's rank among the ranks on its machine.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Number of ranks on this process's machine.
    pub fn local_size(&self) -> usize {
        self.local_size
    }

    /// The machine's name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// This rank's contiguous slice of `n` items (`n / size` each, the first `n % size` ranks one more).
    pub fn shard(&self, n: usize) -> Range<usize> {
        shard(n, self.rank, self.size)
    }

    #[cfg(feature = "mpi")]
    fn distributed(&self) -> bool {
        self.mpi && self.size > 1
    }

    /// Sums `buf` element-wise over all ranks, in place (one all-reduce).
    pub fn sum_f32(&self, what: &'static str, buf: &mut [f32]) -> Result<()> {
        #[cfg(feature = "mpi")]
        if self.distributed() {
            return mpi::sum_f32(what, buf);
        }
        let _ = (what, buf);
        Ok(())
    }

    /// Sums `buf` element-wise over all ranks, in place (one all-reduce).
    pub fn sum_f64(&self, what: &'static str, buf: &mut [f64]) -> Result<()> {
        #[cfg(feature = "mpi")]
        if self.distributed() {
            return mpi::sum_f64(what, buf);
        }
        let _ = (what, buf);
        Ok(())
    }

    /// Every rank's `value`, in rank order, on every rank.
    pub fn all_gather_u64(&self, what: &'static str, value: u64) -> Result<Vec<u64>> {
        #[cfg(feature = "mpi")]
        if self.distributed() {
            return mpi::all_gather_u64(what, value, self.size);
        }
        let _ = what;
        Ok(vec![value])
    }

    /// Every rank's `bytes`, in rank order, on rank 0 (`None` on the other ranks).
    pub fn gather_bytes(&self, what: &'static str, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        #[cfg(feature = "mpi")]
        if self.distributed() {
            return mpi::gather_bytes(what, bytes, self.rank, self.size);
        }
        let _ = what;
        Ok(Some(vec![bytes.to_vec()]))
    }

    /// Tells every rank whether any rank's `local` result failed: returns `local` when it failed, or
    /// R0413 naming the first rank that failed, so that all ranks stop together (one collective).
    pub fn agree<T>(&self, what: &'static str, local: Result<T>) -> Result<T> {
        if self.size == 1 {
            return local;
        }
        let failed = self.all_gather_u64(what, u64::from(local.is_err()))?;
        if local.is_err() {
            FAILURE_SHARED.store(true, Ordering::SeqCst);
        }
        match failed.iter().position(|f| *f != 0) {
            Some(rank) if local.is_ok() => Err(RuntimeError::RankStopped { rank, what: what.into() }),
            _ => local,
        }
    }

    /// Stops every rank with R0411 unless all ranks hold weights with the same `hash` after `step`.
    pub fn check_same_weights(&self, step: u64, hash: u64) -> Result<()> {
        let hashes = self.all_gather_u64("the weight check", hash)?;
        if hashes.iter().all(|h| *h == hashes[0]) {
            return Ok(());
        }
        let hashes =
            hashes.iter().enumerate().map(|(r, h)| format!("rank {r}: {h:016x}")).collect::<Vec<_>>();
        Err(RuntimeError::RanksDiverged { step, hashes: hashes.join(", ") })
    }
}

/// Sums the gradients of `vars` and the step statistics `sums` over the ranks of `world` with one
/// all-reduce of a single flat f32 buffer: every gradient, a has-gradient flag per variable, then the
/// statistics. Afterwards every rank holds the same gradients: those of the whole batch.
///
/// A model on a CUDA device is summed by NCCL on the GPUs (a build with both `cuda` and `mpi`), in the
/// same layout.
pub fn sum_gradients(world: &World, grads: &mut GradStore, vars: &[Var], sums: &mut [f64]) -> Result<()> {
    #[cfg(all(feature = "mpi", feature = "cuda"))]
    if let Some(device) = vars.first().map(|v| v.device()).filter(|d| d.is_cuda()) {
        if world.distributed() {
            return nccl::sum_gradients(world, &device.clone(), grads, vars, sums);
        }
    }
    let total: usize = vars.iter().map(|v| v.elem_count()).sum();
    let mut flat: Vec<f32> = Vec::with_capacity(total + vars.len() + sums.len());
    for v in vars {
        match grads.get(v.as_tensor()) {
            Some(g) => flat.extend(g.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?),
            None => flat.extend(std::iter::repeat_n(0.0, v.elem_count())),
        }
    }
    flat.extend(vars.iter().map(|v| if grads.get(v.as_tensor()).is_some() { 1.0 } else { 0.0 }));
    flat.extend(sums.iter().map(|s| *s as f32));
    world.sum_f32("the gradient all-reduce", &mut flat)?;
    let mut at = 0;
    for (i, v) in vars.iter().enumerate() {
        let n = v.elem_count();
        if flat[total + i] > 0.0 {
            let g = Tensor::from_slice(&flat[at..at + n], v.dims(), v.device())?.to_dtype(v.dtype())?;
            grads.insert(v.as_tensor(), g);
        }
        at += n;
    }
    for (s, f) in sums.iter_mut().zip(&flat[total + vars.len()..]) {
        *s = f64::from(*f);
    }
    Ok(())
}

/// Rank `rank`'s contiguous slice of `n` items split over `size` ranks.
pub fn shard(n: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// FNV-1a over the bit patterns of `values`: equal exactly when the values are bit-identical.
pub fn hash_f32(mut state: u64, values: &[f32]) -> u64 {
    for v in values {
        for b in v.to_bits().to_le_bytes() {
            state ^= u64::from(b);
            state = state.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    state
}

/// The FNV-1a starting state for [`hash_f32`].
pub const HASH_START: u64 = 0xCBF2_9CE4_8422_2325;

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order_without_overlap() {
        for n in [1usize, 2, 7, 64, 65] {
            for size in 1..=5usize.min(n) {
                let parts: Vec<Range<usize>> = (0..size).map(|r| shard(n, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1, "{lens:?}");
            }
        }
    }

    #[test]
    fn threads_split_the_cores_unless_the_launcher_bound_the_rank() {
        assert_eq!(threads_per_rank(16, 16, 4), 4);
        assert_eq!(threads_per_rank(2, 2, 2), 1);
        assert_eq!(threads_per_rank(2, 2, 3), 1);
        assert_eq!(threads_per_rank(1, 2, 2), 1);
        assert_eq!(threads_per_rank(4, 16, 2), 4);
    }

    #[test]
    fn the_single_world_is_the_identity() {
        let w = World::single();
        let mut buf = [1.0f32, 2.0];
        w.sum_f32("test", &mut buf).unwrap();
        assert_eq!(buf, [1.0, 2.0]);
        assert_eq!(w.all_gather_u64("test", 7).unwrap(), vec![7]);
        assert_eq!(w.gather_bytes("test", b"x").unwrap(), Some(vec![b"x".to_vec()]));
        assert!(w.check_same_weights(1, 3).is_ok());
        assert_eq!(w.shard(10), 0..10);
    }

    #[test]
    fn the_hash_sees_one_bit() {
        let a = hash_f32(HASH_START, &[1.0, 2.0]);
        assert_eq!(a, hash_f32(HASH_START, &[1.0, 2.0]));
        assert_ne!(a, hash_f32(HASH_START, &[1.0, f32::from_bits(2.0f32.to_bits() ^ 1)]));
    }
}
