//! `sr-extend`: the `sr` command line with the spiral components of this crate.

fn main() -> std::process::ExitCode {
    sr::cli::main_with(sr_extend::registry())
}
