//! A diverging run stops with R0401 and leaves its last good checkpoint intact and usable; pruning keeps
//! only the newest checkpoints.

mod common;

use candle_core::Device;
use common::*;

fn args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "tiny.srx", "--no-eval", "--out", out];
    a.extend(DIVERGING);
    a.extend(extra);
    a
}

#[test]
fn divergence_stops_with_r0401_and_keeps_the_last_good_checkpoint() {
    let dir = fresh_dir("diverge");
    write(&dir, "tiny.srx", TINY);
    let o = run(&dir, &args("run", &[]));
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("R0401") && err.contains("training diverged at step "), "{err}");
    let step: u64 = err
        .split("training diverged at step ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the step in the message");
    assert!(step >= 3, "diverged at step {step}: too early to have a good checkpoint; lower the lr");

    // Step `step` ran on the weights after step - 1 steps; those are not kept, the ones before are.
    let latest = latest_checkpoint(&dir.join("run")).expect("a checkpoint survives");
    assert_eq!(step_of(&latest), step - 2, "latest names the last checkpoint whose weights trained");
    assert!(!dir.join(format!("run/checkpoints/step-{:08}", step - 1)).exists());

    // It loads (sizes and hashes verified), holds finite weights, and equals the checkpoint a run
    // stopped at that step writes: divergence left it untouched.
    let ck = sr_runtime::engine::checkpoint::load_latest(&dir.join("run/checkpoints"), &Device::Cpu)
        .expect("the last good checkpoint loads")
        .expect("a checkpoint");
    for (name, t) in &ck.model {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "weight `{name}` is not finite");
    }
    let good = (step - 2).to_string();
    run_ok(&dir, &args("healthy", &["--steps", &good]));
    let healthy = latest_checkpoint(&dir.join("healthy")).unwrap();
    assert_same_tensors(&latest.join("model.safetensors"), &healthy.join("model.safetensors"));

    // `keep_checkpoints` leaves only the newest ones on disk, `latest` among them.
    let keep = [
        "run",
        "tiny.srx",
        "--no-eval",
        "--out",
        "pruned",
        "--steps",
        "5",
        "--set",
        "train.checkpoint_every=1",
        "--set",
        "train.keep_checkpoints=2",
    ];
    run_ok(&dir, &keep);
    let mut kept: Vec<String> = std::fs::read_dir(dir.join("pruned/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    kept.sort();
    assert_eq!(kept, ["step-00000004", "step-00000005"]);
    assert_eq!(step_of(&latest_checkpoint(&dir.join("pruned")).unwrap()), 5);

    // The commands that read checkpoints accept it.
    run_ok(
        &dir,
        &["sample", "tiny.srx", "--checkpoint", "run", "-n", "2", "--sampler", "fixed", "--out", "s"],
    );
    assert!(dir.join("s/samples.png").is_file());
}
