//! Reading source files: the [`Loader`] used for `use "file.srx"`, and [`read_source`].

use crate::diagnostic::Diagnostic;
use crate::syntax::MAX_SOURCE_LEN;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Finds and reads user files imported with `use "path"`.
pub trait Loader {
    /// Loads `path` as imported from the file named `importer`. Returns the imported file's name
    /// (its identity in the [`SourceMap`](crate::SourceMap), also shown in messages) and its text,
    /// or a short reason why it cannot be read.
    fn load(&self, importer: &str, path: &str) -> Result<(String, String), String>;
}

/// `path` relative to the folder of `importer`, normalised lexically (`.` and `..` folded).
pub fn relative_to(importer: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        match importer.rfind('/') {
            Some(i) => format!("{}/{path}", &importer[..i]),
            None => path.to_string(),
        }
    };
    let absolute = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    if absolute {
        format!("/{body}")
    } else {
        body
    }
}

/// Loads imports from the file system, relative to the importing file.
///
/// A path is resolved as the file system resolves it (`dir/../x.srx` through a symlinked `dir` follows
/// the link) and canonicalised once; the canonical path is the file's identity, so links and link loops
/// never load one file under several names. Names under the working folder are shown relative to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsLoader;

/// The canonical path of `path` imported from the file named `importer`, or why it cannot be found.
pub fn locate(importer: &str, path: &str) -> Result<PathBuf, String> {
    let base = Path::new(importer).parent().unwrap_or(Path::new(""));
    std::fs::canonicalize(base.join(path)).map_err(|e| io_reason(&e))
}

/// `path` relative to the working folder when it lies under it, else as it is.
fn display_name(path: &Path) -> String {
    let relative = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative.as_deref().unwrap_or(path).to_string_lossy().into_owned()
}

impl Loader for FsLoader {
    fn load(&self, importer: &str, path: &str) -> Result<(String, String), String> {
        let real = locate(importer, path)?;
        let text = read_source(&real).map_err(|d| d.message)?;
        Ok((display_name(&real), text))
    }
}

/// Loads imports from an in-memory map of file name → text (tests, editors with unsaved buffers).
#[derive(Debug, Clone, Default)]
pub struct MemLoader {
    files: HashMap<String, String>,
}

impl MemLoader {
    /// An empty loader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file under `name` (a path such as `dir/common.srx`).
    pub fn with(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.files.insert(name.into(), text.into());
        self
    }
}

impl Loader for MemLoader {
    fn load(&self, importer: &str, path: &str) -> Result<(String, String), String> {
        let name = relative_to(importer, path);
        match self.files.get(&name) {
            Some(text) if text.len() > MAX_SOURCE_LEN => Err("the file is too large".into()),
            Some(text) => Ok((name, text.clone())),
            None => Err("no such file".into()),
        }
    }
}

/// Reads a source file, refusing folders, FIFOs, devices and other files that are not regular, and unreadable
/// files (E0119), files over the size limit (E0108) and text that is not UTF-8 (E0100, with the byte offset
/// of the first bad byte). At most the limit plus one byte is read, whatever the metadata says.
pub fn read_source(path: &Path) -> Result<String, Diagnostic> {
    let shown = path.display();
    let cannot =
        |e: &std::io::Error| Diagnostic::bare("E0119", format!("cannot read `{shown}`: {}", io_reason(e)));
    let meta = std::fs::metadata(path).map_err(|e| cannot(&e))?;
    if meta.is_dir() {
        return Err(Diagnostic::bare("E0119", format!("cannot read `{shown}`: it is a folder, not a file"))
            .with_help("give the path of a `.srx` file"));
    }
    if !meta.is_file() {
        return Err(Diagnostic::bare(
            "E0119",
            format!("cannot read `{shown}`: it is not a regular file (a pipe, socket or device)"),
        )
        .with_help("give the path of a `.srx` file; save piped text to a file first"));
    }
    let too_large = |len: u64| {
        Diagnostic::bare("E0108", format!("`{shown}` is too large ({len} bytes)"))
            .with_help(format!("source files may be at most {} MiB", MAX_SOURCE_LEN >> 20))
    };
    if meta.len() > MAX_SOURCE_LEN as u64 {
        return Err(too_large(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    // The file may have been replaced or grown since `metadata`: check the handle, bound the read.
    if !file.metadata().map_err(|e| cannot(&e))?.is_file() {
        return Err(Diagnostic::bare("E0119", format!("cannot read `{shown}`: it is not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_LEN as u64 + 1).read_to_end(&mut bytes).map_err(|e| cannot(&e))?;
    if bytes.len() > MAX_SOURCE_LEN {
        return Err(too_large(bytes.len() as u64).with_help(format!(
            "source files may be at most {} MiB (this one grew while it was read)",
            MAX_SOURCE_LEN >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Diagnostic::bare("E0100", format!("`{shown}` is not valid UTF-8 (first bad byte at offset {at})"))
            .with_help("save the file as UTF-8 text; `.srx` files cannot hold binary data")
    })
}

/// The error number of a loop of symbolic links, where it is known.
const ELOOP: Option<i32> = if cfg!(target_os = "linux") {
    Some(40)
} else if cfg!(any(target_os = "macos", target_os = "freebsd", target_os = "openbsd")) {
    Some(62)
} else {
    None
};

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ if ELOOP.is_some() && e.raw_os_error() == ELOOP => {
            "a loop of symbolic links (too many levels of links)".into()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative_to("dir/main.srx", "common.srx"), "dir/common.srx");
        assert_eq!(relative_to("dir/main.srx", "../x/./y.srx"), "x/y.srx");
        assert_eq!(relative_to("main.srx", "a/b.srx"), "a/b.srx");
        assert_eq!(relative_to("/abs/main.srx", "../../c.srx"), "/c.srx");
        assert_eq!(relative_to("main.srx", "../up.srx"), "../up.srx");
    }

    #[test]
    fn unreadable_sources_are_refused() {
        let dir = std::env::temp_dir().join(format!("sr-read-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.srx");
        std::fs::write(&file, b"seed = 1\n\xff\xfe").unwrap();
        let d = read_source(&file).unwrap_err();
        assert_eq!(d.code, "E0100");
        assert!(d.message.contains("offset 9"), "{}", d.message);
        assert_eq!(read_source(&dir.join("missing.srx")).unwrap_err().code, "E0119");
        let folder = read_source(&dir).unwrap_err();
        assert_eq!(folder.code, "E0119");
        assert!(folder.message.contains("folder"), "{}", folder.message);
        let big = dir.join("big.srx");
        std::fs::write(&big, vec![b' '; MAX_SOURCE_LEN + 1]).unwrap();
        let d = read_source(&big).unwrap_err();
        assert_eq!(d.code, "E0108");
        assert!(d.message.contains(&format!("{} bytes", MAX_SOURCE_LEN + 1)), "{}", d.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn pipes_devices_and_links_are_handled() {
        use crate::{compile_path, diagnostic::has_errors};
        let dir = std::env::temp_dir().join(format!("sr-read-special-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real/sub")).unwrap();
        // A FIFO without a writer would block a plain `read`; /dev/zero has length 0 in its metadata.
        let fifo = dir.join("pipe.srx");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc_mkfifo(c_path.as_ptr(), 0o600) }, 0);
        for special in [fifo.as_path(), Path::new("/dev/zero")] {
            let d = read_source(special).unwrap_err();
            assert_eq!(d.code, "E0119", "{}", d.message);
            assert!(d.message.contains("not a regular file"), "{}", d.message);
        }
        std::fs::write(dir.join("main.srx"), "use \"pipe.srx\"\n").unwrap();
        let c = compile_path(&dir.join("main.srx"), &[]);
        assert!(c.diagnostics.iter().any(|d| d.code == "E0203" && d.message.contains("not a regular file")));
        // `link/../x.srx` through a symlinked folder is the `x.srx` beside the link's target.
        std::os::unix::fs::symlink(dir.join("real/sub"), dir.join("link")).unwrap();
        std::fs::write(dir.join("real/x.srx"), "preset p = mlp { width = 8 }\n").unwrap();
        std::fs::write(dir.join("x.srx"), "preset q = mlp { width = 8 }\n").unwrap();
        std::fs::write(dir.join("uses.srx"), "use \"link/../x.srx\"\nexperiment e {}\n").unwrap();
        let c = compile_path(&dir.join("uses.srx"), &[]);
        let imported = c.sources.get(crate::SourceId(1));
        assert!(imported.text.contains("preset p "), "imported {}: {}", imported.name, imported.text);
        // A link loop: every path through it names the same file, which loads once.
        std::os::unix::fs::symlink(&dir, dir.join("loop")).unwrap();
        std::fs::write(dir.join("a.srx"), "use \"loop/a.srx\"\nuse \"loop/loop/b.srx\"\n").unwrap();
        std::fs::write(dir.join("b.srx"), "use \"loop/a.srx\"\nuse \"loop/loop/loop/b.srx\"\n").unwrap();
        let c = compile_path(&dir.join("a.srx"), &[]);
        assert!(has_errors(&c.diagnostics));
        assert!(c.diagnostics.iter().all(|d| d.code == "E0204"), "{:?}", c.diagnostics);
        assert!(c.diagnostics.len() <= 4, "{:?}", c.diagnostics);
        // A link to itself cannot be resolved: a coded error, not a hang.
        std::os::unix::fs::symlink("self.srx", dir.join("self.srx")).unwrap();
        let d = read_source(&dir.join("self.srx")).unwrap_err();
        assert_eq!(d.code, "E0119", "{}", d.message);
        assert!(d.message.contains("symbolic links"), "{}", d.message);
        std::fs::write(dir.join("uses_self.srx"), "use \"self.srx\"\nexperiment e {}\n").unwrap();
        let c = compile_path(&dir.join("uses_self.srx"), &[]);
        assert!(c.diagnostics.iter().any(|d| d.code == "E0203"), "{:?}", c.diagnostics);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    extern "C" {
        #[link_name = "mkfifo"]
        fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
    }
}
