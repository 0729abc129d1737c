//! The `sr` command line as a library function: [`main`] runs sr with its own components, [`main_with`]
//! with the components of an extension crate as well (see docs/EXTENDING.md).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use sr_compiler::catalogue::{self, Kind};
use sr_compiler::{
    compile_path, parse_override, render, select_plan, to_dot, to_json, Compilation, Diagnostic, Override,
};
use sr_runtime::registry::Registry;

#[derive(Parser)]
#[command(
    name = "sr",
    version,
    about = "Spatial reasoning with generative denoisers: check, compile, train and sample .srx experiments"
)]
struct Cli {
    /// Colour in diagnostics: `auto` follows the terminal, `NO_COLOR` and `CLICOLOR_FORCE`.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
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
    /// Output as human-readable text, or JSON lines on standard output (diagnostics, results, paths).
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
    Parse {
        /// The `.srx` file (`-` reads standard input).
        file: PathBuf,
    },
    /// Check files: names, types, ranges, shapes and semantic rules. Exit 1 on errors.
    Check {
        /// The `.srx` files (`-` reads standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        args: CompileArgs,
    },
    /// Compile a file into its plan (JSON).
    Compile {
        /// The `.srx` file (`-` reads standard input).
        file: PathBuf,
        /// Write the plan here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[command(flatten)]
        args: CompileArgs,
    },
    /// Print the plan's graph in Graphviz DOT.
    Graph {
        /// The `.srx` file (`-` reads standard input).
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
        /// The `.srx` file.
        file: PathBuf,
        #[command(flatten)]
        args: CompileArgs,
        /// Folder for checkpoints, metrics, pictures and results (default: `runs/<experiment>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Shortcut for `--set train.steps=N` (a deliberately short run: no W0310 about `log_every`).
        #[arg(long, value_name = "N")]
        steps: Option<u64>,
        /// Continue from the latest checkpoint in the run folder.
        #[arg(long, conflicts_with = "force")]
        resume: bool,
        /// Start afresh even if the run folder holds another run (its files are removed).
        #[arg(long)]
        force: bool,
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
        /// The `.srx` file the checkpoint was trained from.
        file: PathBuf,
        #[command(flatten)]
        args: CompileArgs,
        /// A run folder (uses its latest checkpoint) or a checkpoint folder.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Number of samples.
        #[arg(short, value_name = "N", default_value_t = 16)]
        n: usize,
        /// Sampler to use (default: the first in alphabetical order).
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
        /// `cpu`, `cuda` or `cuda:N` (overrides the experiment's `device`).
        #[arg(long)]
        device: Option<String>,
    },
    /// Format files in place in the canonical layout (`-` formats standard input to standard output).
    Fmt {
        /// The `.srx` files (`-` reads standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing; list the files that would change and exit 1 if any would.
        #[arg(long, conflicts_with_all = ["diff", "stdout"])]
        check: bool,
        /// Change nothing; print a unified diff of the changes and exit 1 if there are any.
        #[arg(long, conflicts_with = "stdout")]
        diff: bool,
        /// Print the formatted text to standard output instead of writing the files.
        #[arg(long)]
        stdout: bool,
    },
    /// Run the language server over standard input/output.
    Lsp,
    /// Print a shell completion script (`sr completions bash > ~/.local/share/bash-completion/completions/sr`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff (`sr man > sr.1; man ./sr.1`).
    Man,
}

/// Runs the `sr` command line with sr's own components.
pub fn main() -> ExitCode {
    main_with(Registry::builtin())
}

/// Runs the `sr` command line with the components of `registry` (sr's own plus an extension's, see
/// [`Registry`]): `check`, `components`, `lsp`, `run` and `sample` all know them. An extension crate
/// calls this from its own `main`.
pub fn main_with(registry: Registry) -> ExitCode {
    restore_sigpipe();
    if let Err(e) = registry.install() {
        eprintln!("{:?}", miette::Report::new(e));
        return ExitCode::FAILURE;
    }
    sr_runtime::engine::perf::configure_threads();
    sr_runtime::engine::perf::tune_allocator();
    let cli = Cli::parse();
    let colored = color_enabled(cli.color, std::io::stderr().is_terminal(), |k| std::env::var_os(k));
    let _ = COLOR.set(colored);
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(miette::MietteHandlerOpts::new().color(colored).build())
    }));
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
            let (name, text) = read_input(&file)?;
            let (module, diags) = sr_compiler::parse(sr_compiler::SourceId(0), &text);
            let mut sources = sr_compiler::SourceMap::new();
            sources.add(name, text.as_str());
            println!("{}", serde_json::to_string_pretty(&module).expect("the AST serialises"));
            eprint!("{}", render(&diags, &sources, color()));
            Ok(exit(!sr_compiler::diagnostic::has_errors(&diags)))
        }
        Command::Check { files, args } => {
            let overrides = overrides(&args.set)?;
            let mut ok = true;
            for file in &files {
                let c = compile_input(file, &overrides)?;
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
            let c = compile(&file, &args, &[])?;
            let plan = select_plan(&c.plans, args.experiment.as_deref()).map_err(bare)?;
            eprintln!("estimate: {}", sr_compiler::estimate::estimate(plan).summary());
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
            let c = compile(&file, &args, &[])?;
            let plan = select_plan(&c.plans, args.experiment.as_deref()).map_err(bare)?;
            print!("{}", to_dot(plan));
            Ok(ExitCode::SUCCESS)
        }
        Command::Components { name } => components(name.as_deref()),
        Command::Run { file, args, out, steps, resume, force, device, no_eval, eval_samples } => {
            let mut args = args;
            if let Some(n) = steps {
                args.set.push(format!("train.steps={n}"));
            }
            // Under an MPI launcher this joins the other ranks (data parallelism); MPI is finalised
            // when `ranks` drops at the end of the command.
            let ranks = sr_runtime::engine::distributed::init().map_err(miette::Report::new)?;
            let root = sr_runtime::engine::distributed::world().is_root();
            // `--steps` shortens a run on purpose: `log_every` exceeding it is expected, not a mistake.
            let quiet: &[&str] = if steps.is_some() { &["W0310"] } else { &[] };
            let c = compile(&file, &args, quiet)?;
            let plan = select_plan(&c.plans, args.experiment.as_deref()).map_err(bare)?;
            let out = out.unwrap_or_else(|| sr_runtime::engine::folder::default_out(plan));
            let options = sr_runtime::engine::run::RunOptions {
                out: out.clone(),
                resume,
                force,
                device,
                evaluate: !no_eval,
                progress: std::io::stderr().is_terminal(),
                eval_limit: eval_samples,
                hooks: Default::default(),
            };
            // Errors are printed before MPI is finalised: a launcher may end the other ranks as soon as
            // one rank has exited with a failure.
            let summary = match ranks.check(sr_runtime::engine::run::run(plan, &options)) {
                Ok(summary) => summary,
                Err(Some(e)) => {
                    eprintln!("{:?}", miette::Report::new(e));
                    return Ok(ExitCode::FAILURE);
                }
                // Another rank printed the error.
                Err(None) => return Ok(ExitCode::FAILURE),
            };
            if root {
                match args.format {
                    Format::Human => println!("{}", summary.table),
                    Format::Json => {
                        eprintln!("{}", summary.table);
                        println!("{}", serde_json::to_string(&summary.results).expect("results serialise"));
                    }
                }
                eprintln!("run folder: {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample { file, args, checkpoint, n, sampler, split, out, trace, device } => {
            let c = compile(&file, &args, &[])?;
            let plan = select_plan(&c.plans, args.experiment.as_deref()).map_err(bare)?;
            let options = sr_runtime::engine::run::SampleOptions {
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
            let report = sr_runtime::engine::run::sample(plan, &options).map_err(miette::Report::new)?;
            match args.format {
                Format::Human => println!("{}", report.summary()),
                Format::Json => println!("{}", serde_json::to_string(&report).expect("a report serialises")),
            }
            for path in &report.written {
                match args.format {
                    Format::Human => println!("{}", path.display()),
                    Format::Json => println!("{}", serde_json::json!({ "written": path })),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fmt { files, check, diff, stdout } => {
            let mode = match (check, diff, stdout) {
                (true, _, _) => FmtMode::Check,
                (_, true, _) => FmtMode::Diff,
                (_, _, true) => FmtMode::Stdout,
                _ => FmtMode::Write,
            };
            fmt(&files, mode)
        }
        Command::Lsp => {
            crate::lsp::run_stdio().map_err(|e| miette::miette!(code = "C0002", "language server: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sr", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| miette::miette!(code = "C0008", "cannot write the manual page: {e}"))?;
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

/// Whether diagnostics on standard error are coloured (decided once in `main`).
static COLOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn color() -> bool {
    COLOR.get().copied().unwrap_or(false)
}

/// `--color`: `always` and `never` win; `auto` is off when `NO_COLOR` is set (non-empty), on when
/// `CLICOLOR_FORCE` is set (not `0`), otherwise on exactly for a terminal (<https://no-color.org>,
/// <https://bixense.com/clicolors/>).
fn color_enabled(
    choice: ColorChoice,
    terminal: bool,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> bool {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if set("NO_COLOR") => false,
        ColorChoice::Auto if set("CLICOLOR_FORCE") && env("CLICOLOR_FORCE").is_some_and(|v| v != "0") => true,
        ColorChoice::Auto => terminal,
    }
}

/// The name and text of an input file; `-` reads standard input (named `<stdin>`).
fn read_input(file: &Path) -> miette::Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| {
            miette::miette!(
                code = "C0009",
                help = "standard input must be UTF-8 text",
                "cannot read standard input: {e}"
            )
        })?;
        Ok(("<stdin>".into(), text))
    } else {
        Ok((file.display().to_string(), sr_compiler::read_source(file).map_err(bare)?))
    }
}

/// Compiles a file, or standard input for `-` (its imports resolve from the current folder).
fn compile_input(file: &Path, overrides: &[Override]) -> miette::Result<Compilation> {
    if file == Path::new("-") {
        let (name, text) = read_input(file)?;
        Ok(sr_compiler::compile_text(&name, &text, &sr_compiler::FsLoader, overrides))
    } else {
        Ok(compile_path(file, overrides))
    }
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

/// Compiles a file, printing its diagnostics except the warnings in `quiet`; errors end the command.
fn compile(file: &Path, args: &CompileArgs, quiet: &[&str]) -> miette::Result<Compilation> {
    let mut c = compile_input(file, &overrides(&args.set)?)?;
    c.diagnostics.retain(|d| d.is_error() || !quiet.contains(&d.code));
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

/// What `sr fmt` does with the formatted text.
#[derive(Copy, Clone, PartialEq, Eq)]
enum FmtMode {
    /// Write changed files in place (standard input goes to standard output).
    Write,
    /// List the files that would change.
    Check,
    /// Print a unified diff of the changes.
    Diff,
    /// Print the formatted text.
    Stdout,
}

fn fmt(files: &[PathBuf], mode: FmtMode) -> miette::Result<ExitCode> {
    let mut changed = Vec::new();
    for file in files {
        let stdin = file == Path::new("-");
        let (name, original) = read_input(file)?;
        // Formatting works on LF text; a file with CRLF line endings gets them back.
        let crlf = original.contains("\r\n");
        let text = if crlf { original.replace("\r\n", "\n") } else { original.clone() };
        let mut sources = sr_compiler::SourceMap::new();
        let id = sources.add(name.clone(), text.as_str());
        let (module, diags) = sr_compiler::parse(id, &text);
        if sr_compiler::diagnostic::has_errors(&diags) {
            eprint!("{}", render(&diags, &sources, color()));
            return Err(miette::miette!(code = "C0006", "{name} has syntax errors; not formatted"));
        }
        let mut formatted = sr_compiler::format(&module, &text);
        if crlf {
            formatted = formatted.replace('\n', "\r\n");
        }
        if formatted != original {
            changed.push(name.clone());
        }
        match mode {
            FmtMode::Stdout => print!("{formatted}"),
            FmtMode::Write if stdin => print!("{formatted}"),
            FmtMode::Write if formatted != original => {
                rewrite(file, formatted.as_bytes())?;
            }
            FmtMode::Diff if formatted != original => {
                let diff = similar::TextDiff::from_lines(&original, &formatted);
                print!("{}", diff.unified_diff().context_radius(3).header(&name, &name));
            }
            _ => {}
        }
    }
    let listed = match mode {
        FmtMode::Check => "would reformat ",
        FmtMode::Write => "formatted ",
        FmtMode::Diff | FmtMode::Stdout => return Ok(exit(mode == FmtMode::Stdout || changed.is_empty())),
    };
    for name in changed.iter().filter(|n| *n != "<stdin>") {
        println!("{listed}{name}");
    }
    Ok(exit(mode == FmtMode::Write || changed.is_empty()))
}

/// Replaces the contents of `file` atomically, keeping what the file system knows about it: a symbolic
/// link stays a link (its target is rewritten) and the permissions stay as they were.
fn rewrite(file: &Path, bytes: &[u8]) -> miette::Result<()> {
    let cannot =
        |e: std::io::Error| miette::miette!(code = "C0007", "cannot rewrite {}: {e}", file.display());
    let target = std::fs::canonicalize(file).map_err(cannot)?;
    let permissions = std::fs::metadata(&target).map_err(cannot)?.permissions();
    sr_runtime::engine::checkpoint::write_atomic(&target, bytes).map_err(miette::Report::new)?;
    std::fs::set_permissions(&target, permissions).map_err(cannot)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "sr", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
        Cli::command().debug_assert();
    }

    #[test]
    fn colour_follows_the_flag_then_no_color_then_clicolor_force_then_the_terminal() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| std::ffi::OsString::from(v))
        };
        let none: &[(&str, &str)] = &[];
        assert!(color_enabled(ColorChoice::Auto, true, env(none)));
        assert!(!color_enabled(ColorChoice::Auto, false, env(none)));
        assert!(!color_enabled(ColorChoice::Auto, true, env(&[("NO_COLOR", "1")])));
        assert!(
            color_enabled(ColorChoice::Auto, true, env(&[("NO_COLOR", "")])),
            "an empty NO_COLOR is unset"
        );
        assert!(color_enabled(ColorChoice::Auto, false, env(&[("CLICOLOR_FORCE", "1")])));
        assert!(!color_enabled(ColorChoice::Auto, false, env(&[("CLICOLOR_FORCE", "0")])));
        assert!(!color_enabled(ColorChoice::Auto, false, env(&[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")])));
        assert!(color_enabled(ColorChoice::Always, false, env(&[("NO_COLOR", "1")])));
        assert!(!color_enabled(ColorChoice::Never, true, env(&[("CLICOLOR_FORCE", "1")])));
    }
}
