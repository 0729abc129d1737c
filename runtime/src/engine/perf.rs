//! Process-wide settings that make CPU training and sampling faster.

/// Environment variable that turns [`tune_allocator`] off when set to `0`.
pub const ALLOCATOR_TUNING_ENV: &str = "SR_MALLOC_TUNING";

/// Keeps freed tensor buffers in the process heap for reuse instead of handing them back to the kernel.
///
/// A training step allocates and frees hundreds of megabyte-sized tensors. glibc serves such blocks with
/// fresh `mmap`s (or trims the heap after freeing them), so every step pays page faults and page
/// clearing for memory it just released; in a VM this costs as much as the arithmetic. Raising the
/// `mmap` threshold to 32 MiB and the trim threshold to 1 GiB lets the heap recycle the buffers.
///
/// Call it once at start-up, before heavy allocation. Returns whether the settings were applied: only
/// with glibc on Linux, and not when `SR_MALLOC_TUNING=0`.
pub fn tune_allocator() -> bool {
    if std::env::var(ALLOCATOR_TUNING_ENV).is_ok_and(|v| v == "0") {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: `mallopt` only changes allocator parameters and is thread-safe in glibc.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

/// The environment variable that sets sr's compute threads (candle's products and element-wise ops and
/// the fused kernels); `RAYON_NUM_THREADS`, when also set, wins.
pub const THREADS_ENV: &str = "CANDLE_NUM_THREADS";

/// Makes `CANDLE_NUM_THREADS` size every compute thread pool, returning the thread count it set.
///
/// candle sizes only its element-wise pool from `CANDLE_NUM_THREADS`; its products, the fused kernels and
/// `gemm` run on rayon pools sized by `RAYON_NUM_THREADS`. Without this, `CANDLE_NUM_THREADS=1` still ran
/// the products on every core. Call it first thing in `main`, before any thread starts: it sets
/// `RAYON_NUM_THREADS` when only `CANDLE_NUM_THREADS` is set.
pub fn configure_threads() -> Option<usize> {
    let read =
        |v: &str| std::env::var(v).ok().and_then(|s| s.trim().parse::<usize>().ok()).filter(|n| *n > 0);
    if read("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let n = read(THREADS_ENV)?;
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_applies_on_glibc_and_allocation_still_works() {
        let wanted = !std::env::var(ALLOCATOR_TUNING_ENV).is_ok_and(|v| v == "0");
        let applied = tune_allocator();
        assert_eq!(applied, wanted && cfg!(all(target_os = "linux", target_env = "gnu")));
        let big = vec![1.0f32; 4 << 20];
        assert_eq!(big.iter().sum::<f32>(), (4 << 20) as f32);
    }

    /// Run in a child process (the environment is process-wide): `CANDLE_NUM_THREADS` alone sizes
    /// candle's products and the rayon pool of the fused kernels.
    #[test]
    fn candle_num_threads_sizes_every_pool() {
        if std::env::var_os("SR_THREADS_CHILD").is_some() {
            assert_eq!(configure_threads(), Some(1));
            assert_eq!(candle_core::utils::get_num_threads(), 1);
            assert_eq!(rayon::current_num_threads(), 1);
            assert_eq!(crate::denoisers::par::threads(), 1);
            return;
        }
        // This test's own name, as the harness knows it: the module path without the crate's name.
        let name = module_path!().split_once("::").map_or(String::new(), |(_, module)| module.to_string())
            + "::candle_num_threads_sizes_every_pool";
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", &name, "--test-threads=1"])
            .env("SR_THREADS_CHILD", "1")
            .env(THREADS_ENV, "1")
            .env_remove("RAYON_NUM_THREADS")
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
