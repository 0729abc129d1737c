//! The composite path of every fused kernel (the code a CUDA device runs) against the fused CPU
//! kernel: values and gradients of every input and parameter, in f32 and in bf16, for each building
//! block, each denoiser and the optimizer updates. In a `cuda` build on a machine with a GPU the
//! same cases also run on the GPU against the CPU's fused kernels (set `SR_EXPECT_GPU=1` to make a
//! missing GPU a failure rather than a skip).

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use sr_compiler::plan::PValue;

use super::kernels::{with_kernels, Kernels};
use super::test_util::params;
use super::{conv, fused, linear, ops, Geometry};
use crate::optimizers::{named_vars, AdamW, AdamWConfig, Ema, Optimizer};
use crate::registry::build_denoiser;

/// Deterministic values in about [-scale, scale] (the same in every run, whatever the dtype).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn tensor(dims: &[usize], seed: u64, scale: f32, dtype: DType, dev: &Device) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(values(n, seed, scale), dims, dev).unwrap().to_dtype(dtype).unwrap()
}

/// The first GPU of a `cuda` build, if the machine has one.
fn gpu() -> Option<Device> {
    #[cfg(feature = "cuda")]
    match Device::new_cuda(0) {
        Ok(dev) => return Some(dev),
        Err(e) => assert!(std::env::var_os("SR_EXPECT_GPU").is_none(), "SR_EXPECT_GPU is set but: {e}"),
    }
    None
}

type Forward = Box<dyn Fn(&Tensor) -> Result<Tensor>>;

/// One run: outputs and the gradients of `sum(y · r)` by name (`x` = the input), all in f32.
struct Run {
    y: Tensor,
    grads: Vec<(String, Tensor)>,
}

/// Build a case under `dtype` with `kernels`, give every parameter deterministic non-trivial
/// values in [-0.25, 0.25] (about the scale of a width-16 layer's initialisation: larger values
/// saturate the attention and amplify bf16 rounding past what a trained network sees), run forward
/// and backward.
fn run(
    build: &dyn Fn(VarBuilder) -> Result<Forward>,
    input: &[usize],
    dtype: DType,
    kernels: Kernels,
    dev: &Device,
) -> Run {
    with_kernels(kernels, || {
        let vm = VarMap::new();
        let f = build(VarBuilder::from_varmap(&vm, dtype, dev)).unwrap();
        let vars = named_vars(&vm);
        for (i, (_, v)) in vars.iter().enumerate() {
            v.set(&tensor(v.dims(), 100 + i as u64, 0.25, dtype, dev)).unwrap();
        }
        let x = Var::from_tensor(&tensor(input, 1, 1.5, dtype, dev)).unwrap();
        let y = f(x.as_tensor()).unwrap().to_dtype(DType::F32).unwrap();
        let r = tensor(y.dims(), 2, 1.0, DType::F32, dev);
        // The loss is reduced in f32, as in mixed-precision training.
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let grad = |name: &str, v: &Var| {
            let g = g.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            (name.to_string(), g.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap())
        };
        let mut grads = vec![grad("x", &x)];
        grads.extend(vars.iter().map(|(n, v)| grad(n, v)));
        Run { y: y.to_device(&Device::Cpu).unwrap(), grads }
    })
}

/// The largest magnitude of `t`.
fn largest(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Largest absolute difference relative to the largest magnitude of `want`, or to `floor` where that
/// is larger (NaN if either tensor has one).
fn rel_err_floored(got: &Tensor, want: &Tensor, floor: f32) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let d = largest(&(got - want).unwrap());
    if d.is_nan() {
        return f32::NAN;
    }
    d / largest(want).max(floor).max(1e-6)
}

/// [`rel_err_floored`] without a floor.
fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    rel_err_floored(got, want, 0.0)
}

/// Bounds on [`rel_err`]: composite f32 vs fused f32, composite bf16 vs fused f32. bf16 keeps 8
/// significant bits (relative rounding 2^-9 ≈ 0.002 per value); errors of a few rounding steps
/// accumulate over a block (bf16 bounds 2-3 %), more over a whole network (5 %; 8 % for the
/// attention and U-Net denoisers, whose backward passes measured up to 5.3 %).
const F32_TOL: f32 = 1e-4;

/// The floor of the scale a gradient's error is measured against, as a fraction of the largest
/// gradient entry of the case. Some gradients are zero in exact arithmetic and hold rounding noise
/// only: the MLP's `mix_bias` (a shift shared by a variable's channels, which every following layer
/// norm removes) and attention's key bias (a shift shared by a row's scores, which softmax ignores).
const GRAD_FLOOR: f32 = 0.05;

/// Compare composite (f32, bf16) with fused (f32) for one case.
fn check(name: &str, input: &[usize], bf16_tol: f32, build: impl Fn(VarBuilder) -> Result<Forward>) {
    let cpu = Device::Cpu;
    let fused = run(&build, input, DType::F32, Kernels::Fused, &cpu);
    let mut others = vec![
        ("f32 composite", F32_TOL, run(&build, input, DType::F32, Kernels::Composite, &cpu)),
        ("bf16 composite", bf16_tol, run(&build, input, DType::BF16, Kernels::Composite, &cpu)),
    ];
    if let Some(gpu) = gpu() {
        // cuBLAS may sum in another order than the CPU's gemm.
        others.push(("f32 on the GPU", 1e-3, run(&build, input, DType::F32, Kernels::Fused, &gpu)));
        others.push(("bf16 on the GPU", bf16_tol, run(&build, input, DType::BF16, Kernels::Fused, &gpu)));
    }
    let floor = GRAD_FLOOR * fused.grads.iter().map(|(_, g)| largest(g)).fold(0.0, f32::max);
    for (what, tol, other) in &others {
        let e = rel_err(&other.y, &fused.y);
        assert!(e <= *tol, "{name}: {what} output differs from the fused f32 kernels by {e}");
        assert_eq!(fused.grads.len(), other.grads.len());
        for ((n, want), (_, got)) in fused.grads.iter().zip(&other.grads) {
            let e = rel_err_floored(got, want, floor);
            assert!(e <= *tol, "{name}: {what} gradient of {n} differs from the fused f32 kernels by {e}");
        }
    }
}

#[test]
fn the_switch_turns_the_fused_kernels_off() {
    let x = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    with_kernels(Kernels::Fused, || {
        assert!(fused::supported(&x));
        assert!(!fused::supported(&x.to_dtype(DType::BF16).unwrap()), "bf16 always takes the composite path");
        assert!(!with_kernels(Kernels::Composite, || fused::supported(&x)));
        assert!(with_kernels(Kernels::Composite, || with_kernels(Kernels::Fused, || fused::supported(&x))));
        assert!(fused::supported(&x), "the previous choice is restored");
    });
}

#[test]
fn layer_norm_and_group_norm() {
    check("layer_norm", &[3, 5, 16], 0.02, |_| Ok(Box::new(|x: &Tensor| ops::layer_norm(x, 1e-5))));
    check("layer_norm_affine", &[3, 5, 16], 0.02, |vb| {
        let ln = ops::LayerNorm::new(16, true, 1e-5, vb)?;
        Ok(Box::new(move |x: &Tensor| ln.forward(x)))
    });
    check("group_norm", &[2, 6, 3, 3], 0.02, |_| Ok(Box::new(|x: &Tensor| ops::group_norm(x, 3, 1e-5))));
    check("GroupNorm", &[2, 6, 3, 3], 0.02, |vb| {
        let gn = ops::GroupNorm::new(6, 3, 1e-5, vb)?;
        Ok(Box::new(move |x: &Tensor| gn.forward(x)))
    });
}

#[test]
fn softmax_masked_softmax_and_attention() {
    check("softmax", &[2, 3, 7], 0.02, |_| Ok(Box::new(ops::softmax_last_dim)));
    check("masked_softmax", &[2, 2, 6, 6], 0.02, |_| {
        Ok(Box::new(|x: &Tensor| {
            let mask = ops::block_causal_mask(6, 2, x.dtype(), x.device())?;
            ops::masked_softmax_last_dim(x, &mask)
        }))
    });
    check("attention", &[2, 2, 6, 8], 0.03, |vb| {
        let k = vb.get((2, 2, 6, 8), "k")?;
        let v = vb.get((2, 2, 6, 8), "v")?;
        Ok(Box::new(move |q: &Tensor| {
            let mask = ops::block_causal_mask(6, 3, q.dtype(), q.device())?;
            ops::attention(q, &k, &v, Some(&mask))
        }))
    });
}

#[test]
fn gelu_modulate_and_gated_residual() {
    check("gelu", &[4, 33], 0.02, |_| Ok(Box::new(ops::gelu)));
    check("modulate", &[2, 4, 8], 0.02, |vb| {
        let shift = vb.get((2, 4, 8), "shift")?;
        let scale = vb.get((2, 4, 8), "scale")?;
        Ok(Box::new(move |x: &Tensor| ops::modulate(x, &shift, &scale)))
    });
    check("gated_residual", &[2, 4, 8], 0.02, |vb| {
        let h = vb.get((2, 4, 8), "h")?;
        let gate = vb.get((2, 4, 8), "gate")?;
        Ok(Box::new(move |x: &Tensor| ops::gated_residual(x, &h, &gate)))
    });
}

#[test]
fn linear_and_conv2d() {
    check("linear", &[3, 4, 8], 0.02, |vb| {
        let l = linear::linear(8, 5, vb)?;
        Ok(Box::new(move |x: &Tensor| l.forward(x)))
    });
    // The bias gradient sums 72 output positions in bf16 (candle sums bf16 in bf16, on the CPU as
    // on CUDA): up to 2.2 % off.
    check("conv2d", &[2, 3, 6, 6], 0.03, |vb| {
        let c = conv::conv2d(3, 4, 3, 1, 1, vb)?;
        Ok(Box::new(move |x: &Tensor| c.forward(x)))
    });
    check("conv2d_stride2", &[2, 3, 7, 7], 0.03, |vb| {
        let c = conv::conv2d(3, 4, 3, 2, 0, vb)?;
        Ok(Box::new(move |x: &Tensor| c.forward(x)))
    });
}

/// A whole denoiser: `x` is `z [B, V, F]`, the noise levels are fixed.
fn denoiser(name: &'static str, p: &[(&str, PValue)], g: Geometry, bf16_tol: f32) {
    let input = [2, g.variables, g.features];
    let p = params(name, p);
    check(name, &input, bf16_tol, move |vb| {
        let net: std::sync::Arc<dyn super::Denoiser> =
            build_denoiser(name, &p, &g, vb).map_err(|e| candle_core::Error::Msg(e.to_string()))?.into();
        Ok(Box::new(move |z: &Tensor| {
            let t = Tensor::from_vec(values(2 * z.dim(1)?, 3, 0.5), (2, z.dim(1)?), z.device())?;
            // The noise levels stay f32, as in mixed-precision training.
            let t = (t + 0.5)?;
            let pred = net.forward(z, &t).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            match pred.log_var {
                Some(lv) => Tensor::cat(&[pred.out.flatten_all()?, lv.flatten_all()?], 0),
                None => pred.out.flatten_all(),
            }
        }))
    });
}

#[test]
fn every_denoiser() {
    let small = [
        ("width", PValue::Int(16)),
        ("depth", PValue::Int(2)),
        ("heads", PValue::Int(2)),
        ("time_dim", PValue::Int(8)),
        ("uncertainty", PValue::Bool(true)),
    ];
    denoiser("mlp", &[("width", PValue::Int(16)), ("depth", PValue::Int(2))], Geometry::flat(5, 3), 0.05);
    denoiser("transformer", &small, Geometry::flat(6, 3), 0.08);
    let mut causal = small.to_vec();
    causal.push(("block", PValue::Int(2)));
    denoiser("block_causal_transformer", &causal, Geometry::flat(6, 3), 0.08);
    let unet = [
        ("channels", PValue::Int(8)),
        ("mults", PValue::List(vec![PValue::Int(1), PValue::Int(2)])),
        ("blocks", PValue::Int(1)),
        ("attention", PValue::List(vec![PValue::Int(1)])),
        ("time_dim", PValue::Int(8)),
        ("uncertainty", PValue::Bool(true)),
    ];
    denoiser("unet", &unet, Geometry::image(2, 8, 8, 2).unwrap(), 0.08);
    let uvit = [
        ("width", PValue::Int(16)),
        ("depth", PValue::Int(2)),
        ("heads", PValue::Int(2)),
        ("patch", PValue::Int(2)),
        ("uncertainty", PValue::Bool(true)),
    ];
    denoiser("uvit", &uvit, Geometry::video(3, 1, 4, 4), 0.05);
}

/// AdamW and the EMA: the composite update (what CUDA runs) equals the fused one.
#[test]
fn optimizer_and_ema_updates() {
    let step = |kernels, dev: &Device| {
        with_kernels(kernels, || {
            let vars: Vec<(String, Var)> = (0..3)
                .map(|i| {
                    (
                        format!("p{i}"),
                        Var::from_tensor(&tensor(&[4, 5], 10 + i, 1.0, DType::F32, dev)).unwrap(),
                    )
                })
                .collect();
            let cfg = AdamWConfig { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
            let mut opt = AdamW::new(vars.clone(), cfg).unwrap();
            let mut ema = Ema::new(&vars, 0.9).unwrap();
            for k in 0..3 {
                let loss = vars
                    .iter()
                    .map(|(_, v)| {
                        (v.as_tensor().sqr().unwrap() * (k as f64 + 1.0)).unwrap().sum_all().unwrap()
                    })
                    .reduce(|a, b| (a + b).unwrap())
                    .unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
                ema.update().unwrap();
            }
            let mut out: Vec<Tensor> = vars.iter().map(|(_, v)| v.as_tensor().copy().unwrap()).collect();
            out.extend(ema.tensors().into_iter().map(|(_, t)| t));
            for (n, _) in &vars {
                let (m, v) = opt.moments(n).unwrap();
                out.extend([m, v]);
            }
            out.into_iter().map(|t| t.to_device(&Device::Cpu).unwrap()).collect::<Vec<_>>()
        })
    };
    let fused = step(Kernels::Fused, &Device::Cpu);
    let mut others = vec![step(Kernels::Composite, &Device::Cpu)];
    others.extend(gpu().map(|gpu| step(Kernels::Fused, &gpu)));
    for other in others {
        for (f, c) in fused.iter().zip(&other) {
            let e = rel_err(c, f);
            assert!(e <= 1e-5, "optimizer state differs by {e}");
        }
    }
}
