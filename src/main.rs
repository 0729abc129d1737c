//! `sr`: check, compile, train and sample spatial-reasoning experiments written in `.srx`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sr_compiler::catalogue::{self, Kind};
use sr_compiler::{
    compile_path, parse_override, render, select_plan, to_dot, to_json, Compilation, Diagnostic, Override,
};

#[derive(Parser)]
#[command(
    name = "sr",
    version,
    about = "Spatial reasoning with generative denoisers: check, compile, train and sample .srx experiments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that compiles a file.
#[derive(clap::Args, Clone)]
struct CompileArgs {
    /// Override a key of the experiment: `--set train.steps=200` (repeatable; later wins).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The experiment to use when the file defines several.
    #[arg(long, short = 'e')]
    experiment: Option<String>,
    /// Diagnostics as human-readable text or JSON lines.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Parse a file and print its syntax tree (for debugging the language).
    Parse { file: PathBuf },
    /// Check files: names, types, ranges, shapes and semantic rules. Exit 1 on errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        args: CompileArgs,
    },
    /// Compile a file into its plan (JSON).
    Compile {
        file: PathBuf,
        /// Write the plan here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[command(flatten)]
        args: CompileArgs,
    },
    /// Print the plan's graph in Graphviz DOT.
    Graph {
        file: PathBuf,
        #[command(flatten)]
        args: CompileArgs,
    },
    /// List the component catalogue, or document one entry (`sr components flow.rectified`).
    Components {
        /// `name` or `kind.name`; a kind alone (`flow`) lists that kind.
        name: Option<String>,
    },
    /// Compile, train, sample and evaluate an experiment.
    Run {
        file: PathBuf,
        #[command(flatten)]
        args: CompileArgs,
        /// Folder for checkpoints, metrics, pictures and results.
        #[arg(long, default_value = "runs")]
        out: PathBuf,
        /// Shortcut for `--set train.steps=N`.
        #[arg(long)]
        steps: Option<u64>,
        /// Continue from the latest checkpoint in the run folder.
        #[arg(long)]
        resume: bool,
        /// `cpu`, `cuda` or `cuda:N` (overrides the experiment's `device`).
        #[arg(long)]
        device: Option<String>,
        /// Train only; skip sampling and evaluation.
        #[arg(long)]
        no_eval: bool,
        /// Evaluate at most N samples of each data split.
        #[arg(long, value_name = "N")]
        eval_samples: Option<u64>,
    },
    /// Sample from a trained checkpoint: a PNG grid, an animated GIF of the denoising, optional trace.
    Sample {
        file: PathBuf,
        #[command(flatten)]
        args: CompileArgs,
        /// A run folder (uses its latest checkpoint) or a checkpoint folder.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Number of samples.
        #[arg(short, default_value_t = 16)]
        n: usize,
        /// Sampler to use (default: the first declared).
        #[arg(long)]
        sampler: Option<String>,
        /// Data split whose givens condition the samples (default: the first evaluated split).
        #[arg(long)]
        split: Option<String>,
        /// Output folder.
        #[arg(long, default_value = "samples")]
        out: PathBuf,
        /// Also write the per-step t and σ of every variable (trace.json).
        #[arg(long)]
        trace: bool,
        #[arg(long)]
        device: Option<String>,
    },
    /// Format files in place in the canonical layout (`--check`: only list files that would change).
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        check: bool,
    },
    /// Run the language server over standard input/output.
    Lsp,
}

fn main() -> ExitCode {
    restore_sigpipe();
    sr_runtime::perf::tune_allocator();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> miette::Result<ExitCode> {
    match command {
        Command::Parse { file } => {
            let text = sr_compiler::read_source(&file).map_err(bare)?;
            let (module, diags) = sr_compiler::parse(sr_compiler::SourceId(0), &text);
            let mut sources = sr_compiler::SourceMap::new();
            sources.add(file.display().to_string(), text.as_str());
            println!("{}", serde_json::to_string_pretty(&module).expect("the AST serialises"));
            eprint!("{}", render(&diags, &sources, color()));
            Ok(exit(!sr_compiler::diagnostic::has_errors(&diags)))
        }
        Command::Check { files, args } => {
            let overrides = overrides(&args.set)?;
            let mut ok = true;
            for file in &files {
                let c = compile_path(file, &overrides);
                report(&c, args.format);
                ok &= !c.has_errors();
                if args.format == Format::Human && !c.has_errors() {
                    let names: Vec<&str> = c.plans.iter().map(|p| p.experiment.as_str()).collect();
                    eprintln!(
                        "{}: ok ({})",
                        file.display(),
                        if names.is_empty() { "no experiment".into() } else { names.join(", ") }
                    );
                }
            }
            Ok(exit(ok))
        }
        Command::Compile { file, output, args } => {
            let c = compile(&file, &args)?;
            let plan = select_plan(&c.plans, args.experiment.as_deref()).map_err(bare)?;
            let json = serde_json::to_string_pretty(plan).expect("plans serialise");
            match output {
                Some(path) => {
                    std::fs::write(&path, json + "\n").map_err(|e| {
                        miette::miette!(code = "C0001", "cannot write {}: {e}", path.display())
                    })?;
                    eprintln!("wrote {}", path.display());
                }
                None => println!("{json}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { file, args } => {
            let c = compile(&file, &args)?;
            let plan = select_plan(&c.plans, args.experiment.as_deref()).map_err(bare)?;
            print!("{}", to_dot(plan));
            Ok(ExitCode::SUCCESS)
        }
        Command::Components { name } => components(name.as_deref()),
        Command::Run { file, args, out, steps, resume, device, no_eval, eval_samples } => {
            let mut args = args;
            if let Some(n) = steps {
                args.set.push(format!("train.steps={n}"));
            }
            let c = compile(&file, &args)?;
            let plan = select_plan(&c.plans, args.experiment.as_deref()).map_err(bare)?;
            let options = sr_runtime::run::RunOptions {
                out: out.clone(),
                resume,
                device,
                evaluate: !no_eval,
                progress: std::io::stderr().is_terminal(),
                eval_limit: eval_samples,
                hooks: Default::default(),
            };
            let summary = sr_runtime::run::run(plan, &options).map_err(miette::Report::new)?;
            println!("{}", summary.table);
            eprintln!("run folder: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample { file, args, checkpoint, n, sampler, split, out, trace, device } => {
            let c = compile(&file, &args)?;
            let plan = select_plan(&c.plans, args.experiment.as_deref()).map_err(bare)?;
            let options = sr_runtime::run::SampleOptions {
                checkpoint,
                n,
                sampler,
                split,
                out: out.clone(),
                trace,
                device,
                progress: std::io::stderr().is_terminal(),
                hooks: Default::default(),
            };
            let written = sr_runtime::run::sample(plan, &options).map_err(miette::Report::new)?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fmt { files, check } => fmt(&files, check),
        Command::Lsp => {
            sr::lsp::run_stdio().map_err(|e| miette::miette!(code = "C0002", "language server: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Lets `sr graph FILE | head` end quietly when the reader closes the pipe, like other Unix tools,
/// instead of failing on the write.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A diagnostic without source as a miette report.
fn bare(d: Diagnostic) -> miette::Report {
    let help = d.help.clone().unwrap_or_default();
    miette::miette!(code = d.code, help = help, "{}", d.message)
}

fn overrides(set: &[String]) -> miette::Result<Vec<Override>> {
    set.iter().map(|s| parse_override(s).map_err(bare)).collect()
}

/// Prints the diagnostics of a compilation on standard error (human) or standard output (JSON).
fn report(c: &Compilation, format: Format) {
    match format {
        Format::Human => eprint!("{}", render(&c.diagnostics, &c.sources, color())),
        Format::Json => {
            if let serde_json::Value::Array(items) = to_json(&c.diagnostics, &c.sources) {
                for item in items {
                    println!("{item}");
                }
            }
        }
    }
}

/// Compiles a file, printing its diagnostics; errors end the command.
fn compile(file: &Path, args: &CompileArgs) -> miette::Result<Compilation> {
    let c = compile_path(file, &overrides(&args.set)?);
    report(&c, args.format);
    if c.has_errors() {
        let n = c.diagnostics.iter().filter(|d| d.is_error()).count();
        return Err(miette::miette!(
            code = "C0003",
            "{} has {n} error{}",
            file.display(),
            if n == 1 { "" } else { "s" }
        ));
    }
    Ok(c)
}

fn components(name: Option<&str>) -> miette::Result<ExitCode> {
    let Some(name) = name else {
        print!("{}", catalogue::list());
        return Ok(ExitCode::SUCCESS);
    };
    if let Ok(kind) = name.parse::<Kind>() {
        for c in catalogue::of_kind(kind) {
            println!("{:<28} {}", c.name, c.doc);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (kind, bare_name) = match name.split_once('.') {
        Some((k, n)) => {
            let kind = k.parse::<Kind>().map_err(|_| {
                let kinds = Kind::ALL.map(|k| k.as_str());
                let help = match sr_compiler::suggest::did_you_mean(k, kinds) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the kinds are {}", kinds.join(", ")),
                };
                miette::miette!(code = "C0004", help = help, "unknown component kind `{k}`")
            })?;
            (Some(kind), n)
        }
        None => (None, name),
    };
    let found: Vec<_> =
        catalogue::by_name(bare_name).into_iter().filter(|c| kind.is_none_or(|k| c.kind == k)).collect();
    if found.is_empty() {
        let names = catalogue::all().iter().map(|c| c.name);
        let help = match sr_compiler::suggest::did_you_mean(bare_name, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "`sr components` lists every component".into(),
        };
        return Err(miette::miette!(code = "C0005", help = help, "no component named `{name}`"));
    }
    for (i, c) in found.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", catalogue::describe(c));
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt(files: &[PathBuf], check: bool) -> miette::Result<ExitCode> {
    let mut changed = Vec::new();
    for file in files {
        let text = sr_compiler::read_source(file).map_err(bare)?;
        let mut sources = sr_compiler::SourceMap::new();
        let id = sources.add(file.display().to_string(), text.as_str());
        let (module, diags) = sr_compiler::parse(id, &text);
        if sr_compiler::diagnostic::has_errors(&diags) {
            eprint!("{}", render(&diags, &sources, color()));
            return Err(miette::miette!(
                code = "C0006",
                "{} has syntax errors; not formatted",
                file.display()
            ));
        }
        let formatted = sr_compiler::format(&module, &text);
        if formatted != text {
            changed.push(file);
            if !check {
                sr_runtime::checkpoint::write_atomic(file, formatted.as_bytes())
                    .map_err(miette::Report::new)?;
            }
        }
    }
    for file in &changed {
        println!("{}{}", if check { "would reformat " } else { "formatted " }, file.display());
    }
    Ok(exit(!check || changed.is_empty()))
}
