//! `SR_KERNELS=composite`: a whole training run, its evaluation and `sr sample` on the code path a
//! GPU runs (candle's primitive ops instead of the fused CPU kernels), compared with the default;
//! a bad value and an unusable `--device cuda` are coded errors.

mod common;

use common::{fresh_dir, metrics, run, run_ok, sr, text, write, TINY};

fn loss(v: &serde_json::Value) -> f64 {
    v["loss"].as_f64().unwrap_or_else(|| panic!("no loss in {v}"))
}

#[test]
fn composite_path_trains_samples_and_matches_the_fused_kernels() {
    let dir = fresh_dir("kernels-composite");
    write(&dir, "tiny.srx", TINY);
    let args = |out: &'static str| ["run", "tiny.srx", "--steps", "12", "--eval-samples", "4", "--out", out];
    run_ok(&dir, &args("fused"));
    let o = sr(&dir).env("SR_KERNELS", "composite").args(args("composite")).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "composite run failed\nstdout:\n{out}\nstderr:\n{err}");

    let (fused, composite) = (metrics(&dir.join("fused")), metrics(&dir.join("composite")));
    assert_eq!(fused.len(), 12);
    assert_eq!(composite.len(), 12);
    // The two paths round differently; over 12 AdamW steps the losses stay within 1 %.
    for (f, c) in fused.iter().zip(&composite) {
        let (f, c) = (loss(f), loss(c));
        assert!(c.is_finite() && (f - c).abs() <= 0.01 * f.abs(), "loss {c} (composite) vs {f} (fused)");
    }

    let o = sr(&dir)
        .env("SR_KERNELS", "composite")
        .args(["sample", "tiny.srx", "--checkpoint", "composite", "-n", "3", "--out", "samples"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "composite sampling failed\nstdout:\n{out}\nstderr:\n{err}");
    assert!(dir.join("samples/samples.png").is_file());
}

#[test]
fn bad_kernel_choice_is_a_coded_error() {
    let dir = fresh_dir("kernels-bad");
    write(&dir, "tiny.srx", TINY);
    let o = sr(&dir)
        .env("SR_KERNELS", "fast")
        .args(["run", "tiny.srx", "--steps", "1", "--out", "r"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("R0503") && err.contains("SR_KERNELS"), "stdout:\n{out}\nstderr:\n{err}");
}

/// Without the `cuda` feature: R0501. With it, on a machine without a GPU or driver (the link stubs
/// on the library path): R0502, never a crash; on a GPU it trains. With `SR_EXPECT_GPU=1` (GPU
/// machines) a failure is never accepted.
#[test]
fn cuda_device_runs_or_fails_with_a_code() {
    let dir = fresh_dir("kernels-cuda");
    write(&dir, "tiny.srx", TINY);
    let o = run(
        &dir,
        &["run", "tiny.srx", "--steps", "2", "--eval-samples", "2", "--device", "cuda", "--out", "r"],
    );
    let (out, err) = text(&o);
    if o.status.success() {
        if !cfg!(feature = "cuda") {
            panic!("a build without CUDA ran on `cuda`\nstdout:\n{out}\nstderr:\n{err}");
        }
        return;
    }
    assert!(std::env::var_os("SR_EXPECT_GPU").is_none(), "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    let code = if cfg!(feature = "cuda") { "R0502" } else { "R0501" };
    assert!(err.contains(code), "expected {code}\nstdout:\n{out}\nstderr:\n{err}");
}
