//! Front-end speed: parse + resolve + check (+ plan) of every example and of a generated file of
//! 5,000 lines with many experiments and presets. A small hand-written harness: each case runs a few
//! times to warm up, then `ITERS` timed times; median and minimum per iteration are printed.
//!
//! Then `sr check`'s cost on hostile inputs of 5,000 and 50,000 items (unknown keys, `use` lists,
//! experiments), with the ratio between the two sizes.
//!
//! `cargo bench -p sr-compiler --bench check` measures; without `--bench` (as `cargo test --benches`
//! runs it) every case runs once, as a smoke test.

use sr_compiler::{compile_text, render, FsLoader};
use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const WARMUP: usize = 5;
const ITERS: usize = 50;
const GENERATED_LINES: usize = 5_000;

/// One benchmark input: a file name (imports are resolved relative to it) and its text.
struct Case {
    name: String,
    text: String,
}

/// Compiles `case` once; an error message if the front end reported any error.
fn compile(case: &Case) -> Result<usize, String> {
    let c = compile_text(&case.name, &case.text, &FsLoader, &[]);
    if c.has_errors() {
        return Err(render(&c.diagnostics, &c.sources, false));
    }
    Ok(black_box(c.plans.len()))
}

/// Median and minimum of `iters` timed runs after `warmup` untimed ones, and the number of plans.
fn measure(case: &Case, warmup: usize, iters: usize) -> Result<(Duration, Duration, usize), String> {
    let plans = compile(case)?;
    for _ in 0..warmup {
        compile(case)?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        compile(case)?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    Ok((times[times.len() / 2], times[0], plans))
}

/// One experiment of the generated file, in the style of the examples; `i` varies names and sizes.
fn experiment(i: usize) -> String {
    let heads = [2, 4, 8][i % 3];
    let width = heads * 16 * (1 + i % 4);
    let seed = i * 7 + 1;
    let steps = 1_000 * (1 + i % 20);
    let body = match i % 4 {
        0 => format!(
            "  data train  = sudoku_train\n  \
             data easy   = sudoku {{ split = \"test\", givens = {lo}..81, count = 100 }}\n  \
             data hard   = sudoku_hard\n  \
             variables = f32[81, 9]                        // checked against the inferred shape\n  \
             mapper    = grid_cells\n  \
             flow      = rectified {{ predict = velocity }}\n  \
             denoiser  = net_{i} {{ uncertainty = true }}\n  \
             train {{\n    steps = {steps}\n    batch = 64\n    \
             optimizer = adamw {{ lr = 5e-4, betas = (0.9, 0.999), weight_decay = 0.01 }}\n    \
             lr_schedule = cosine {{ final = 0.1 }}\n    warmup = 200\n    ema = 0.999\n    clip = 1.0\n    \
             time = mean_beta {{ sharpness = 1.0 }}\n    loss = mse + 0.01 * nll\n  }}\n  \
             sampler parallel = parallel_sampler {{ schedule.steps = 50 }}\n  \
             sampler adaptive = adaptive_sequential_sampler {{ schedule.steps = {sampling} }}\n  \
             evaluate sudoku_accuracy on easy with parallel, adaptive\n  \
             evaluate sudoku_accuracy on hard with parallel, adaptive\n",
            lo = 40 + i % 30,
            sampling = 20 + i % 80,
        ),
        1 => format!(
            "  data train = even_pixels {{ split = \"train\" }}\n  \
             data test  = even_pixels {{ split = \"test\", count = 256 }}\n  \
             mapper   = image_patches {{ patch = {patch} }}\n  \
             flow     = rectified {{ predict = velocity }}\n  \
             denoiser = net_{i} {{ uncertainty = true }}\n  \
             train {{\n    steps = {steps}\n    batch = 64\n    optimizer = adamw {{ lr = 2e-4 }}\n    \
             warmup = 500\n    time = mean_beta\n    loss = mse + 0.01 * nll\n  }}\n  \
             sampler parallel = parallel_sampler {{ schedule.steps = 50 }}\n  \
             sampler adaptive = adaptive_sequential_sampler {{ schedule.steps = 100, schedule.parallel = 4 }}\n  \
             evaluate even_pixels_balance on test with parallel, adaptive\n",
            patch = [2, 4, 8][i % 3],
        ),
        2 => format!(
            "  data train = counting_stars {{ split = \"train\", size = 64, max_count = {max} }}\n  \
             data test  = counting_stars {{ split = \"test\", size = 64, max_count = {max}, count = 128 }}\n  \
             mapper   = image_patches {{ patch = 8 }}\n  \
             flow     = rectified {{ predict = velocity }}\n  \
             denoiser = unet {{ channels = {channels}, mults = [1, 2, 2], uncertainty = true }}\n  \
             train {{\n    steps = {steps}\n    batch = 32\n    optimizer = adamw {{ lr = 2e-4 }}\n    \
             warmup = 500\n    time = mean_beta\n    loss = mse + 0.01 * nll\n  }}\n  \
             sampler parallel = parallel_sampler {{ schedule.steps = 50 }}\n  \
             sampler adaptive = adaptive_sequential_sampler {{ schedule.steps = 100, schedule.parallel = 4 }}\n  \
             evaluate counting_consistency on test with parallel, adaptive\n",
            max = 2 + i % 7,
            channels = 32 * (1 + i % 2),
        ),
        _ => format!(
            "  data train = moving_shapes {{ split = \"train\", frames = {frames}, size = 32 }}\n  \
             data test  = moving_shapes {{ split = \"test\", frames = {frames}, size = 32, count = 64 }}\n  \
             mapper   = video_frames\n  \
             flow     = rectified {{ predict = velocity }}\n  \
             denoiser = uvit {{ width = {width}, depth = 6, heads = {heads}, patch = 4 }}\n  \
             train {{\n    steps = {steps}\n    batch = 16\n    optimizer = adamw {{ lr = 2e-4 }}\n    \
             warmup = 500\n    time = independent\n  }}\n  \
             sampler parallel = parallel_sampler {{ schedule.steps = 50 }}\n  \
             sampler raster   = raster_sampler {{ schedule.steps = 10 }}\n  \
             evaluate frame_consistency on test with parallel, raster\n",
            frames = 4 + i % 5,
        ),
    };
    format!(
        "/// A denoiser size for experiment {i}.\n\
         preset net_{i} = transformer {{ width = {width}, depth = {depth}, heads = {heads} }}\n\n\
         /// Generated experiment {i}.\n\
         experiment exp_{i} {{\n  seed = {seed}\n\n{body}}}\n\n",
        depth = 2 + i % 6,
    )
}

/// A file of at least `lines` lines: standard-library imports, then presets and experiments.
fn generated(lines: usize) -> String {
    let mut text = String::from(
        "// Generated for the compiler benchmark: many experiments in the style of the examples.\n\
         use std.sudoku.{sudoku_train, sudoku_hard}\n\
         use std.samplers.{parallel_sampler, adaptive_sequential_sampler, raster_sampler}\n\n",
    );
    let mut i = 0;
    while text.lines().count() < lines {
        text.push_str(&experiment(i));
        i += 1;
    }
    text
}

/// Hostile inputs of `n` items, each as `sr check` sees it: unknown keys (about 100 bytes each, so 50,000
/// make a 5 MB file), a `use {...}` list of unknown names, and many experiments, all with errors.
fn hostile(n: usize) -> Vec<Case> {
    let keys: String = (0..n).map(|i| format!("  unknown_key_{i:08}_{} = {i}\n", "x".repeat(70))).collect();
    let names: Vec<String> = (0..n).map(|i| format!("missing_{i}")).collect();
    let experiments: String = (0..n).map(|i| format!("experiment e{i} {{ seed = {i} }}\n")).collect();
    vec![
        Case { name: format!("keys-{n}"), text: format!("experiment e {{\n{keys}}}\n") },
        Case {
            name: format!("use-{n}"),
            text: format!("use std.samplers.{{parallel_sampler, {}}}\n", names.join(", ")),
        },
        Case { name: format!("experiments-{n}"), text: experiments },
    ]
}

/// Median and minimum time of `sr check` (compile and render the diagnostics) on `case`.
fn measure_check(case: &Case, warmup: usize, iters: usize) -> (Duration, Duration, usize) {
    let once = || {
        let c = compile_text(&case.name, &case.text, &FsLoader, &[]);
        black_box(render(&c.diagnostics, &c.sources, false));
        c.diagnostics.len()
    };
    let diags = once();
    for _ in 0..warmup {
        once();
    }
    let mut times: Vec<Duration> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    (times[times.len() / 2], times[0], diags)
}

/// `sr check` on hostile inputs of 5,000 and 50,000 items: the time for 50,000 and the ratio of the two
/// (10 for a cost linear in the input).
fn hostile_cases(measuring: bool) {
    let iters = if measuring { 5 } else { 1 };
    println!("\nsr check on hostile inputs (compile + render), {iters} iterations, minimum:");
    println!("{:<16} {:>10} {:>12} {:>12} {:>8}", "case", "bytes", "diagnostics", "50,000", "÷ 5,000");
    for (small, large) in hostile(5_000).iter().zip(hostile(50_000).iter()) {
        let (_, t_small, _) = measure_check(small, 1, iters);
        let (_, t_large, diags) = measure_check(large, 1, iters);
        let kind = large.name.split('-').next().unwrap_or_default();
        println!(
            "{kind:<16} {:>10} {diags:>12} {t_large:>12.3?} {:>8.1}",
            large.text.len(),
            t_large.as_secs_f64() / t_small.as_secs_f64().max(1e-9)
        );
    }
}

fn main() -> ExitCode {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (warmup, iters) = if measuring { (WARMUP, ITERS) } else { (0, 1) };
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut paths: Vec<_> = match std::fs::read_dir(&examples) {
        Ok(dir) => dir.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(e) => {
            eprintln!("cannot list {}: {e}", examples.display());
            return ExitCode::FAILURE;
        }
    };
    paths.retain(|p| p.extension().is_some_and(|e| e == "srx"));
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => cases.push(Case { name: path.display().to_string(), text }),
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let example_count = cases.len();
    // Named inside the examples folder so that nothing differs but the text.
    let big =
        Case { name: examples.join("generated.srx").display().to_string(), text: generated(GENERATED_LINES) };
    cases.push(big);

    println!("parse + resolve + check + plan, {iters} iterations after {warmup} warm-up, per iteration:");
    println!("{:<20} {:>6} {:>6} {:>12} {:>12} {:>8}", "case", "lines", "plans", "median", "min", "µs/line");
    // The ratio uses minimums: on a shared machine they are the least disturbed by other work.
    let mut minimums = Vec::new();
    for case in &cases {
        let lines = case.text.lines().count();
        let (median, min, plans) = match measure(case, warmup, iters) {
            Ok(times) => times,
            Err(diags) => {
                eprintln!("{} does not compile:\n{diags}", case.name);
                return ExitCode::FAILURE;
            }
        };
        let short =
            Path::new(&case.name).file_name().map_or(case.name.clone(), |f| f.to_string_lossy().into());
        let per_line = median.as_secs_f64() * 1e6 / lines as f64;
        println!("{short:<20} {lines:>6} {plans:>6} {median:>12.3?} {min:>12.3?} {per_line:>8.2}");
        minimums.push((lines, min));
    }
    let (example_lines, example_time) = minimums[..example_count]
        .iter()
        .fold((0, Duration::ZERO), |(l, t), &(lines, min)| (l + lines, t + min));
    let (big_lines, big_time) = minimums[example_count];
    println!(
        "ratio of minimums: generated / all examples = {:.1}x the time for {:.1}x the lines ({} vs {} lines)",
        big_time.as_secs_f64() / example_time.as_secs_f64(),
        big_lines as f64 / example_lines as f64,
        big_lines,
        example_lines
    );
    hostile_cases(measuring);
    ExitCode::SUCCESS
}
