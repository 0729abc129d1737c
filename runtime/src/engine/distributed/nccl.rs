//! The GPU backend of the gradient all-reduce: NCCL, through the cudarc bindings candle itself uses.
//!
//! The arrangement Horovod made standard: MPI launches the ranks and broadcasts NCCL's unique id from
//! rank 0; NCCL then sums the gradients on the GPUs, on the stream candle computes on, without a copy
//! through the host. Each rank holds one communicator, made on its first all-reduce for the GPU the
//! model lives on (with several ranks, a bare `cuda` is the GPU of the rank's index on its machine).

use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::backprop::GradStore;
use candle_core::cuda::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};

use super::{mpi, World};
use crate::error::{Result, RuntimeError};

thread_local! {
    /// This rank's communicator and the ordinal of the GPU it was made for. Only the main thread
    /// runs collectives (NCCL communicators are not `Send`).
    static COMM: RefCell<Option<(usize, Comm)>> = const { RefCell::new(None) };
}

/// Sums the gradients of `vars` (on a CUDA device) and the statistics `sums` over all ranks with one
/// NCCL all-reduce of a single flat f32 buffer laid out as the CPU path lays it out: every gradient,
/// a has-gradient flag per variable, then the statistics.
pub(super) fn sum_gradients(
    world: &World,
    device: &Device,
    grads: &mut GradStore,
    vars: &[Var],
    sums: &mut [f64],
) -> Result<()> {
    let total: usize = vars.iter().map(|v| v.elem_count()).sum();
    let mut parts = Vec::with_capacity(vars.len() + 1);
    let mut tail = Vec::with_capacity(vars.len() + sums.len());
    for v in vars {
        match grads.get(v.as_tensor()) {
            Some(g) => {
                parts.push(g.flatten_all()?.to_dtype(DType::F32)?);
                tail.push(1.0f32);
            }
            None => {
                parts.push(Tensor::zeros(v.elem_count(), DType::F32, device)?);
                tail.push(0.0);
            }
        }
    }
    tail.extend(sums.iter().map(|s| *s as f32));
    let n_tail = tail.len();
    parts.push(Tensor::from_vec(tail, n_tail, device)?);
    let flat = Tensor::cat(&parts, 0)?;
    let ordinal = match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id,
        other => return Err(RuntimeError::Distributed(format!("NCCL needs a CUDA device, not {other:?}"))),
    };
    let (summed, tail) = COMM.with(|cell| -> Result<(Tensor, Vec<f32>)> {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(o, _)| *o != ordinal) {
            *slot = Some((ordinal, communicator(world, device)?));
        }
        let (_, comm) = slot.as_ref().expect("the communicator was just made");
        // NCCL runs asynchronously on candle's stream; reading the tail back waits for it, so the
        // watchdog covers the whole collective.
        mpi::watch("the gradient all-reduce (NCCL)", || -> Result<(Tensor, Vec<f32>)> {
            let summed = flat.apply_op1_no_bwd(&AllReduce { comm })?;
            let tail = summed.narrow(0, total, n_tail)?.to_vec1::<f32>()?;
            Ok((summed, tail))
        })
    })?;
    let mut at = 0;
    for (i, v) in vars.iter().enumerate() {
        let n = v.elem_count();
        if tail[i] > 0.0 {
            let g = summed.narrow(0, at, n)?.reshape(v.dims())?.to_dtype(v.dtype())?;
            grads.insert(v.as_tensor(), g);
        }
        at += n;
    }
    for (s, f) in sums.iter_mut().zip(&tail[vars.len()..]) {
        *s = f64::from(*f);
    }
    Ok(())
}

/// Makes this rank's NCCL communicator on `device`'s stream: rank 0 creates the unique id, MPI
/// broadcasts it.
fn communicator(world: &World, device: &Device) -> Result<Comm> {
    let nccl = |e: candle_core::cuda::cudarc::nccl::result::NcclError| {
        RuntimeError::Distributed(format!(
            "NCCL: {e:?} (is libnccl installed, and does every rank see its own GPU?)"
        ))
    };
    let mut bytes = [0u8; 128];
    if world.is_root() {
        let id = Id::new().map_err(nccl)?;
        for (b, c) in bytes.iter_mut().zip(id.internal()) {
            *b = *c as u8;
        }
    }
    mpi::broadcast_bytes("the NCCL unique id", &mut bytes)?;
    let mut internal = [0 as std::ffi::c_char; 128];
    for (c, b) in internal.iter_mut().zip(bytes) {
        *c = b as std::ffi::c_char;
    }
    let stream = device.as_cuda_device()?.cuda_stream();
    mpi::watch("NCCL's set-up", || Comm::from_rank(stream, world.rank(), world.size(), Id::uninit(internal)))
        .map_err(nccl)
}

/// NCCL's sum over all ranks of a contiguous f32 tensor, as a candle operation on its GPU.
struct AllReduce<'a> {
    comm: &'a Comm,
}

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL all-reduce runs on CUDA tensors only")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the NCCL all-reduce needs a contiguous tensor")
        };
        let src = storage.as_cuda_slice::<f32>()?.slice(start..end);
        let device = storage.device().clone();
        let mut dst = device.alloc_zeros::<f32>(end - start)?;
        self.comm
            .all_reduce(&src, &mut dst, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("NCCL: {e:?}")))?;
        Ok((CudaStorage::wrap_cuda_slice(dst, device), layout.shape().clone()))
    }
}
