//! Recycled buffers for the activations the fused kernels keep between a forward and its backward.
//!
//! A training step keeps tens of megabytes per block (the Sudoku benchmark model: about 60 MB a block).
//! Allocations that large are `mmap`ed by the C allocator and given back to the kernel when freed, so every
//! step page-faulted all of them in again, the kernel zeroing each page. Buffers given back here are
//! handed out again to the next forward of about the same size. The pool holds no more buffers than were
//! live at once (each comes back only when its activations are dropped); one that [`MISSES`] requests in a
//! row did not use is freed, and training frees them all when it ends ([`release`]).

use std::sync::Mutex;

/// A kept buffer and the number of requests since it came back that it did not serve.
struct Kept {
    buf: Vec<f32>,
    misses: usize,
}

static FREE: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

/// Requests a kept buffer may miss before it is freed: more than the blocks of any model, so that a
/// training step finds every buffer of the previous one.
const MISSES: usize = 256;

/// An empty vector with room for at least `len` values: the smallest kept buffer that holds `len` values
/// and is at most twice as large, or a new one.
pub fn take(len: usize) -> Vec<f32> {
    let Ok(mut free) = FREE.lock() else { return Vec::with_capacity(len) };
    let best = free
        .iter()
        .enumerate()
        .filter(|(_, k)| k.buf.capacity() >= len && k.buf.capacity() / 2 <= len)
        .min_by_key(|(_, k)| k.buf.capacity())
        .map(|(i, _)| i);
    let found = best.map(|i| free.swap_remove(i).buf);
    free.iter_mut().for_each(|k| k.misses += 1);
    free.retain(|k| k.misses <= MISSES);
    drop(free);
    match found {
        Some(mut buf) => {
            buf.clear();
            buf
        }
        None => Vec::with_capacity(len),
    }
}

/// Keeps `buf` for a later [`take`].
pub fn give(buf: Vec<f32>) {
    if buf.capacity() == 0 {
        return;
    }
    if let Ok(mut free) = FREE.lock() {
        free.push(Kept { buf, misses: 0 });
    }
}

/// Frees every kept buffer.
pub fn release() {
    if let Ok(mut free) = FREE.lock() {
        free.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes no other test uses, so that tests running at the same time do not take these buffers.
    const BIG: usize = 1_234_567;

    fn holds(ptr: *const f32) -> bool {
        FREE.lock().map(|f| f.iter().any(|k| k.buf.as_ptr() == ptr)).unwrap_or(false)
    }

    #[test]
    fn buffers_are_reused_by_size_and_freed_when_unused() {
        let a = take(BIG);
        let pa = a.as_ptr();
        give(a);
        assert!(holds(pa));
        let b = take(BIG - 1000);
        assert_eq!(b.as_ptr(), pa, "a kept buffer that fits is reused");
        assert!(b.is_empty() && b.capacity() >= BIG);
        give(b);
        let c = take(BIG / 3);
        assert_ne!(c.as_ptr(), pa, "a buffer more than twice too large is not handed out");
        assert!(holds(pa), "nor freed at once");
        for _ in 0..MISSES {
            drop(take(BIG / 3));
        }
        assert!(!holds(pa), "a buffer that no request used for {MISSES} requests is freed");
    }
}
