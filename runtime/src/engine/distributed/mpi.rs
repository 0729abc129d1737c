//! The MPI backend of [`super::World`]: initialisation, the collectives, and their watchdog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::mpi::collective::SystemOperation;
use ::mpi::datatype::PartitionMut;
use ::mpi::environment::Universe;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::*;
use ::mpi::{Count, Threading};

use super::{host_name, World};
use crate::error::{Result, RuntimeError};

/// Milliseconds since the epoch at which the running collective began; 0 when none runs.
static BUSY_SINCE_MS: AtomicU64 = AtomicU64::new(0);
/// What the running collective is for, for the timeout message.
static BUSY_WHAT: Mutex<&'static str> = Mutex::new("");

/// Initialises MPI and describes this process's place in the world.
pub(super) fn init() -> Result<(Universe, World)> {
    // Only the main thread calls MPI; candle's compute threads and the watchdog never do.
    let (universe, _) = ::mpi::initialize_with_threading(Threading::Funneled)
        .ok_or_else(|| RuntimeError::Distributed("MPI was initialised twice".into()))?;
    let comm = universe.world();
    let rank = comm.rank();
    let local = comm.split_shared(rank);
    let world = World {
        rank: rank as usize,
        size: comm.size() as usize,
        local_rank: local.rank() as usize,
        local_size: local.size() as usize,
        host: ::mpi::environment::processor_name().unwrap_or_else(|_| host_name()),
        mpi: true,
    };
    Ok((universe, world))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64).max(1)
}

/// Starts the thread that ends this process with R0412 when a collective waits longer than
/// `timeout_s` seconds.
pub(super) fn start_watchdog(timeout_s: u64) {
    let spawned = std::thread::Builder::new().name("sr-collective-watchdog".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        let since = BUSY_SINCE_MS.load(Ordering::Acquire);
        if since != 0 && now_ms().saturating_sub(since) > timeout_s * 1000 {
            let what = BUSY_WHAT.lock().map_or("a collective", |w| *w).to_string();
            let error = RuntimeError::CollectiveTimeout { what, seconds: timeout_s };
            eprintln!("{:?}", miette::Report::new(error));
            exit_now(1);
        }
    });
    if let Err(e) = spawned {
        eprintln!("warning: no collective watchdog ({e}): a dead rank may make this one wait");
    }
}

/// Ends the process at once: the main thread is blocked inside MPI, so no exit handler may run.
fn exit_now(code: i32) -> ! {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `_exit` ends the process without running handlers that could wait on MPI.
    unsafe {
        libc::_exit(code)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    std::process::exit(code)
}

/// Ends every rank of the world with exit code `code`.
pub(super) fn abort(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

/// Runs `f`, which waits for the other ranks, under the watchdog.
pub(super) fn watch<T>(what: &'static str, f: impl FnOnce() -> T) -> T {
    if let Ok(mut w) = BUSY_WHAT.lock() {
        *w = what;
    }
    BUSY_SINCE_MS.store(now_ms(), Ordering::Release);
    let out = f();
    BUSY_SINCE_MS.store(0, Ordering::Release);
    out
}

/// Runs MPI collective `f` under the watchdog.
fn watched<T>(what: &'static str, f: impl FnOnce(&SimpleCommunicator) -> T) -> T {
    watch(what, || f(&SimpleCommunicator::world()))
}

/// Rank 0's `bytes` on every rank.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(super) fn broadcast_bytes(what: &'static str, bytes: &mut [u8]) -> Result<()> {
    watched(what, |c| c.process_at_rank(0).broadcast_into(bytes));
    Ok(())
}

pub(super) fn sum_f32(what: &'static str, buf: &mut [f32]) -> Result<()> {
    let send = buf.to_vec();
    watched(what, |c| c.all_reduce_into(&send[..], buf, SystemOperation::sum()));
    Ok(())
}

pub(super) fn sum_f64(what: &'static str, buf: &mut [f64]) -> Result<()> {
    let send = buf.to_vec();
    watched(what, |c| c.all_reduce_into(&send[..], buf, SystemOperation::sum()));
    Ok(())
}

pub(super) fn all_gather_u64(what: &'static str, value: u64, size: usize) -> Result<Vec<u64>> {
    let mut out = vec![0u64; size];
    watched(what, |c| c.all_gather_into(&value, &mut out[..]));
    Ok(out)
}

pub(super) fn gather_bytes(
    what: &'static str,
    bytes: &[u8],
    rank: usize,
    size: usize,
) -> Result<Option<Vec<Vec<u8>>>> {
    let len = Count::try_from(bytes.len()).map_err(|_| {
        RuntimeError::Distributed(format!("{what}: {} bytes is too much to gather", bytes.len()))
    })?;
    watched(what, |c| {
        let root = c.process_at_rank(0);
        if rank != 0 {
            root.gather_into(&len);
            root.gather_varcount_into(bytes);
            return Ok(None);
        }
        let mut counts = vec![0 as Count; size];
        root.gather_into_root(&len, &mut counts[..]);
        let displs: Vec<Count> = counts
            .iter()
            .scan(0, |acc, n| {
                let d = *acc;
                *acc += n;
                Some(d)
            })
            .collect();
        let total: usize = counts.iter().map(|n| *n as usize).sum();
        let mut all = vec![0u8; total];
        {
            let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            root.gather_varcount_into_root(bytes, &mut part);
        }
        Ok(Some(
            counts.iter().zip(&displs).map(|(n, d)| all[*d as usize..(*d + *n) as usize].to_vec()).collect(),
        ))
    })
}
