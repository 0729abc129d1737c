//! `sr`: check, compile, train and sample spatial-reasoning experiments written in `.srx`.

fn main() -> std::process::ExitCode {
    sr::cli::main()
}
