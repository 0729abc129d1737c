//! Zed extension for sr's `.srx` experiment files: highlighting comes from the tree-sitter grammar
//! (extension.toml, languages/srx/), and this code tells Zed how to start `sr lsp` for `.srx` buffers.

use zed_extension_api::{self as zed, settings::CommandSettings, settings::LspSettings};

/// The language server's name, in extension.toml and under `lsp` in Zed's settings.
const SERVER: &str = "sr";

struct SrExtension;

impl zed::Extension for SrExtension {
    fn new() -> Self {
        SrExtension
    }

    fn language_server_command(
        &mut self,
        _id: &zed::LanguageServerId,
        worktree: &zed::Worktree,
    ) -> zed::Result<zed::Command> {
        let binary = LspSettings::for_worktree(SERVER, worktree).ok().and_then(|s| s.binary);
        server_command(binary, || worktree.which("sr"), worktree.shell_env())
    }
}

zed::register_extension!(SrExtension);

/// The command that starts the server. `lsp.sr.binary` in Zed's settings wins (`path`, `arguments`,
/// `env`); without a path, `sr` is looked up on the worktree's `PATH` (`which`); the arguments are `lsp`
/// unless the settings give others; the settings' environment is added to the shell's (`shell_env`).
fn server_command(
    settings: Option<CommandSettings>,
    which: impl FnOnce() -> Option<String>,
    mut shell_env: Vec<(String, String)>,
) -> zed::Result<zed::Command> {
    let settings = settings.unwrap_or(CommandSettings { path: None, arguments: None, env: None });
    let command = match settings.path {
        Some(path) => path,
        None => which().ok_or_else(|| {
            "sr was not found on the PATH: install it (`cargo install --path .` in a checkout of sr) \
             or set `lsp.sr.binary.path` in Zed's settings"
                .to_string()
        })?,
    };
    let mut env: Vec<(String, String)> = settings.env.unwrap_or_default().into_iter().collect();
    env.sort();
    shell_env.retain(|(key, _)| !env.iter().any(|(k, _)| k == key));
    shell_env.extend(env);
    Ok(zed::Command { command, args: settings.arguments.unwrap_or_else(|| vec!["lsp".into()]), env: shell_env })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sr_on_the_path_runs_lsp_with_the_shell_environment() {
        let c = server_command(None, || Some("/usr/local/bin/sr".into()), env(&[("PATH", "/usr/bin")]))
            .expect("a command");
        assert_eq!(c.command, "/usr/local/bin/sr");
        assert_eq!(c.args, ["lsp"]);
        assert_eq!(c.env, env(&[("PATH", "/usr/bin")]));
    }

    #[test]
    fn the_settings_path_arguments_and_environment_win() {
        let settings = CommandSettings {
            path: Some("/opt/sr/bin/sr".into()),
            arguments: Some(vec!["lsp".into(), "--color".into(), "never".into()]),
            env: Some(HashMap::from([("RUST_LOG".to_string(), "debug".to_string())])),
        };
        let looked_up = std::cell::Cell::new(false);
        let c = server_command(
            Some(settings),
            || {
                looked_up.set(true);
                None
            },
            env(&[("PATH", "/usr/bin"), ("RUST_LOG", "warn")]),
        )
        .expect("a command");
        assert!(!looked_up.get(), "a configured path is not looked up on the PATH");
        assert_eq!(c.command, "/opt/sr/bin/sr");
        assert_eq!(c.args, ["lsp", "--color", "never"]);
        assert_eq!(c.env, env(&[("PATH", "/usr/bin"), ("RUST_LOG", "debug")]));
    }

    #[test]
    fn without_sr_the_error_says_how_to_get_it() {
        let e = server_command(None, || None, Vec::new()).expect_err("no sr");
        assert!(e.contains("not found on the PATH") && e.contains("lsp.sr.binary.path"), "{e}");
    }
}
