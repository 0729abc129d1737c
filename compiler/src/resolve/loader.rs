//! Reading source files: the [`Loader`] used for `use "file.srx"`, and [`read_source`].

use crate::diagnostic::Diagnostic;
use crate::syntax::MAX_SOURCE_LEN;
use std::collections::HashMap;
use std::path::Path;

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
#[derive(Debug, Clone, Copy, Default)]
pub struct FsLoader;

impl Loader for FsLoader {
    fn load(&self, importer: &str, path: &str) -> Result<(String, String), String> {
        let name = relative_to(importer, path);
        match read_source(Path::new(&name)) {
            Ok(text) => Ok((name, text)),
            Err(d) => Err(d.message),
        }
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

/// Reads a source file, refusing files over the size limit (E0108), folders and unreadable files (E0119) and
/// text that is not UTF-8 (E0100, with the byte offset of the first bad byte).
pub fn read_source(path: &Path) -> Result<String, Diagnostic> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| Diagnostic::bare("E0119", format!("cannot read `{shown}`: {}", io_reason(&e))))?;
    if meta.is_dir() {
        return Err(Diagnostic::bare("E0119", format!("cannot read `{shown}`: it is a folder, not a file"))
            .with_help("give the path of a `.srx` file"));
    }
    if meta.len() > MAX_SOURCE_LEN as u64 {
        return Err(Diagnostic::bare("E0108", format!("`{shown}` is too large ({} bytes)", meta.len()))
            .with_help(format!("source files may be at most {} MiB", MAX_SOURCE_LEN >> 20)));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Diagnostic::bare("E0119", format!("cannot read `{shown}`: {}", io_reason(&e))))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Diagnostic::bare("E0100", format!("`{shown}` is not valid UTF-8 (first bad byte at offset {at})"))
            .with_help("save the file as UTF-8 text; `.srx` files cannot hold binary data")
    })
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
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
}
