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
}
