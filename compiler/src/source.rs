//! Source files and byte spans shared by every compiler stage.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// Identifies one source file inside a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct SourceId(pub u32);

/// A half-open byte range `start..end` in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Span {
    pub source: SourceId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// A span in `source` from `start` to `end` (bytes).
    pub fn new(source: SourceId, start: usize, end: usize) -> Self {
        Span { source, start, end }
    }

    /// The smallest span covering both `self` and `other` (same source assumed).
    pub fn to(self, other: Span) -> Span {
        Span { source: self.source, start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True for an empty span.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.start, s.len()).into()
    }
}

/// One loaded source file: its display name (a path, or `std/<module>.srx`) and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<str>,
    /// Byte offsets at which lines start, computed on first use: positions cost a binary search, not a
    /// scan of the file.
    line_starts: OnceLock<Arc<[usize]>>,
}

impl SourceFile {
    /// Byte offsets at which the lines of the text start (the first is 0).
    pub fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0).chain(self.text.match_indices('\n').map(|(i, _)| i + 1)).collect()
        })
    }

    /// 0-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts().partition_point(|&s| s <= offset).saturating_sub(1)
    }
}

/// All source files of one compilation, user files and embedded standard-library modules alike.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<Arc<str>>) -> SourceId {
        self.files.push(SourceFile { name: name.into(), text: text.into(), line_starts: OnceLock::new() });
        SourceId((self.files.len() - 1) as u32)
    }

    /// The file with this id.
    pub fn get(&self, id: SourceId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The id of the file with this name, if loaded.
    pub fn find(&self, name: &str) -> Option<SourceId> {
        self.files.iter().position(|f| f.name == name).map(|i| SourceId(i as u32))
    }

    /// A miette source for the file with this id, carrying its name.
    pub fn named_source(&self, id: SourceId) -> miette::NamedSource<Arc<str>> {
        let f = self.get(id);
        miette::NamedSource::new(f.name.clone(), f.text.clone())
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, id: SourceId, offset: usize) -> (usize, usize) {
        let file = self.get(id);
        let text = &file.text;
        let offset = text.floor_char_boundary(offset.min(text.len()));
        let line = file.line_of(offset);
        let col = text[file.line_starts()[line]..offset].chars().count() + 1;
        (line + 1, col)
    }
}
