//! In-place CPU kernels of the optimizers and the EMA: one dtype dispatch for f32 and f64 storages.

use candle_core::{CpuStorage, Layout};

/// The contiguous values of a read-only operand.
pub(crate) fn contiguous<'a, T: candle_core::WithDType>(
    name: &str,
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{name}: non-contiguous operand"),
    }
}

/// Runs `$body` on the contiguous slices of an in-place f32/f64 operand (`$d`, mutable) and a read-only
/// one (`$s`) of the same dtype, with `$t` the element type. Evaluates to `candle_core::Result<()>`.
macro_rules! float_kernel {
    ($name:expr, $dst:expr, $dl:expr, $src:expr, $sl:expr, |$d:ident, $s:ident, $t:ident| $body:block) => {{
        let name = $name;
        let (a, b) = $dl
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg(format!("{name}: non-contiguous")))?;
        match $dst {
            CpuStorage::F32(v) => {
                type $t = f32;
                let $d = &mut v[a..b];
                let $s = $crate::optimizers::kernel::contiguous::<f32>(name, $src, $sl)?;
                $body
            }
            CpuStorage::F64(v) => {
                type $t = f64;
                let $d = &mut v[a..b];
                let $s = $crate::optimizers::kernel::contiguous::<f64>(name, $src, $sl)?;
                $body
            }
            _ => candle_core::bail!("{name}: unsupported dtype"),
        }
        Ok(())
    }};
}

pub(crate) use float_kernel;
