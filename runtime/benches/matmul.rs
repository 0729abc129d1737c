//! Throughput of the matrix products that the fused transformer kernels run, on the layer shapes of the
//! three models of `benches/train.rs`, in GFLOP/s with the compute threads (`CANDLE_NUM_THREADS`).
//!
//! `cargo bench -p sr-runtime --bench matmul`; `bench/matmul_reference.py` times the same shapes with
//! PyTorch (`torch.nn.functional.linear`), so the two tables say how fast each side's product engine is
//! before any model code runs. Both print `shape m k n GFLOP/s`.

use std::time::Instant;

use sr_runtime::denoisers::par;

/// `(layer, m, k, n)`: rows (tokens in a batch), inputs and outputs of a linear layer.
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("sudoku qkv", 64 * 81, 128, 384),
    ("sudoku fc1", 64 * 81, 128, 512),
    ("sudoku fc2", 64 * 81, 512, 128),
    ("dit_s2 qkv", 8 * 256, 384, 1152),
    ("dit_s2 fc1", 8 * 256, 384, 1536),
    ("dit_s2 fc2", 8 * 256, 1536, 384),
    ("sudoku_dep fc1", 64 * 81, 64, 128),
];

fn main() {
    sr_runtime::engine::perf::configure_threads();
    println!("sr-runtime matmul benchmark: {} compute threads (gemm crate)", par::threads());
    println!("{:<16} {:>6} {:>6} {:>6} {:>10}", "shape", "m", "k", "n", "GFLOP/s");
    for &(name, m, k, n) in SHAPES {
        let src: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
        let bias = vec![0.1f32; n];
        let mut dst = vec![0.0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let reps = ((2e10 / flops) as usize).clamp(3, 200);
        for _ in 0..3 {
            par::linear_into(&mut dst, &src, m, k, &w, &bias);
        }
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let start = Instant::now();
            for _ in 0..reps {
                par::linear_into(&mut dst, &src, m, k, &w, &bias);
            }
            best = best.min(start.elapsed().as_secs_f64() / reps as f64);
        }
        println!("{name:<16} {m:>6} {k:>6} {n:>6} {:>10.1}", flops / best / 1e9);
    }
}
