//! Element-wise loops compiled for the vector units the CPU has.
//!
//! sr is built for the baseline x86-64 (SSE2), so a plain loop runs four lanes wide even on a CPU with
//! AVX-512. [`multiversion!`] compiles a function three times, for AVX-512, AVX2 and the baseline, and
//! picks one at run time (`is_x86_feature_detected!` reads a cached flag). Rust never fuses a multiply
//! and an add nor reorders a sum on its own, so the three versions compute the same bits: only the width
//! of the vector instructions differs.

/// Defines `fn name(args) -> ret { body }` compiled for AVX-512F, for AVX2 and for the baseline, with the
/// version chosen when called. The body must not be generic.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;
