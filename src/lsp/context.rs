//! What the cursor is on: a light scan of the text (robust to the half-written text an editor holds)
//! finds the enclosing experiment, blocks and components and whether a word is a key or a value;
//! the catalogue and the presets in view then give hover text, completions and definitions.

use super::analysis::{path_to_uri, BufferLoader, LineIndex};
use lsp_types::{
    CompletionItem, CompletionItemKind, Documentation, Location, MarkupContent, MarkupKind, Range,
};
use sr_compiler::catalogue::{self, Component, Kind, Param, Ty};
use sr_compiler::resolve::{relative_to, stdlib};
use sr_compiler::syntax::ast::{ExprKind, Item, UseTarget};
use sr_compiler::{parse, Loader, SourceId};
use std::collections::HashMap;

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    Word,
    Str,
    Num,
    Punct,
    /// A body or group that was opened and closed before the cursor.
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: K,
    start: usize,
    end: usize,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Tokens of `text` (comments and blanks skipped), tolerant of unterminated strings and comments.
fn lex(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if b[i..].starts_with(b"//") {
            i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            continue;
        } else if b[i..].starts_with(b"/*") {
            i = sr_compiler::syntax::block_comment_end(text, i);
            continue;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            K::Str
        } else if c.is_ascii_digit() {
            while i < b.len()
                && (is_ident(b[i]) || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            K::Num
        } else if is_ident(c) {
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            K::Word
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            K::Punct
        };
        toks.push(Tok { kind, start, end: i.min(b.len()) });
    }
    toks
}

// ---------------------------------------------------------------- frames

/// Where a value goes: the key it is assigned to, or a declaration.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    None,
    Key(Vec<String>),
    Data,
    Sampler,
    Metric,
}

/// What an open bracket belongs to.
#[derive(Debug, Clone, PartialEq)]
enum Head {
    File,
    Experiment,
    Component { name: String, slot: Slot },
    Block { path: Vec<String> },
    Group { slot: Slot },
}

struct Frame {
    head: Head,
    toks: Vec<Tok>,
}

/// The brackets open at `upto`, outermost first, each with its tokens before `upto`.
fn frames(text: &str, upto: usize) -> Vec<Frame> {
    let mut stack = vec![Frame { head: Head::File, toks: vec![] }];
    for t in lex(text).into_iter().take_while(|t| t.start < upto) {
        let s = &text[t.start..t.end];
        let top = stack.len() - 1;
        match (t.kind, s) {
            (K::Punct, "{") => {
                let head = head_of(text, &stack[top]);
                stack.push(Frame { head, toks: vec![] });
            }
            (K::Punct, "(" | "[") => {
                let f = &stack[top];
                let slot = match f.toks.last() {
                    Some(p) if &text[p.start..p.end] == "=" => {
                        slot_before_eq(text, &f.toks[..f.toks.len() - 1], &f.head)
                    }
                    _ => match &f.head {
                        Head::Group { slot } => slot.clone(),
                        _ => Slot::None,
                    },
                };
                stack.push(Frame { head: Head::Group { slot }, toks: vec![] });
            }
            (K::Punct, "}" | ")" | "]") if top > 0 => {
                let open = stack.pop().map_or(t.start, |f| f.toks.first().map_or(t.start, |x| x.start));
                stack[top - 1].toks.push(Tok { kind: K::Closed, start: open, end: t.end });
            }
            _ => stack[top].toks.push(t),
        }
    }
    stack
}

fn word<'t>(text: &'t str, t: Option<&Tok>) -> Option<&'t str> {
    t.filter(|t| t.kind == K::Word).map(|t| &text[t.start..t.end])
}

fn punct(text: &str, t: Option<&Tok>, p: &str) -> bool {
    t.is_some_and(|t| t.kind == K::Punct && &text[t.start..t.end] == p)
}

/// The dotted key `a.b.c` ending the tokens, and how many tokens it takes.
fn dotted_tail(text: &str, toks: &[Tok]) -> (Vec<String>, usize) {
    let mut path = Vec::new();
    let mut n = 0;
    while let Some(w) = word(text, toks.len().checked_sub(n + 1).map(|i| &toks[i])) {
        path.push(w.to_string());
        n += 1;
        if !punct(text, toks.len().checked_sub(n + 1).map(|i| &toks[i]), ".") {
            break;
        }
        n += 1;
    }
    path.reverse();
    (path, n)
}

/// The slot of a value whose `=` ends `toks` (the `=` already removed).
fn slot_before_eq(text: &str, toks: &[Tok], head: &Head) -> Slot {
    let (path, n) = dotted_tail(text, toks);
    let before = word(text, toks.len().checked_sub(n + 1).map(|i| &toks[i]));
    match (head, before, path.len()) {
        (Head::Experiment, Some("data"), 1) => Slot::Data,
        (Head::Experiment, Some("sampler"), 1) => Slot::Sampler,
        (Head::File, Some("preset"), 1) => Slot::None,
        (_, _, 0) => Slot::None,
        _ => Slot::Key(path),
    }
}

/// What a `{` opens, from the tokens before it.
fn head_of(text: &str, f: &Frame) -> Head {
    let toks = &f.toks;
    let n = toks.len();
    let at = |back: usize| n.checked_sub(back).map(|i| &toks[i]);
    let Some(name) = word(text, at(1)) else { return Head::Block { path: vec![] } };
    if word(text, at(2)) == Some("experiment")
        || (word(text, at(4)) == Some("experiment") && word(text, at(2)) == Some("extends"))
    {
        return Head::Experiment;
    }
    if punct(text, at(2), "=") {
        let slot = slot_before_eq(text, &toks[..n - 2], &f.head);
        return Head::Component { name: name.to_string(), slot };
    }
    if word(text, at(2)) == Some("evaluate") {
        return Head::Component { name: name.to_string(), slot: Slot::Metric };
    }
    if let Head::Group { slot } = &f.head {
        return Head::Component { name: name.to_string(), slot: slot.clone() };
    }
    Head::Block { path: dotted_tail(text, toks).0 }
}

// ---------------------------------------------------------------- presets and definitions

/// A preset or experiment in view of a document.
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    /// The component or preset a preset applies (`None` for experiments).
    pub target: Option<String>,
    pub doc: Option<String>,
    /// Where it is defined: a file on disk, or `None` for an embedded module with no file.
    pub location: Option<Location>,
    /// The file it comes from, for display (`std/sudoku.srx`, a path).
    pub file: String,
    /// A preset's value as written (`transformer { depth = 2 }`), shown on hover.
    pub source: Option<String>,
}

/// The definitions a document can see, and every standard-library preset to follow preset chains.
pub struct Scope {
    visible: Vec<Definition>,
    all_std: HashMap<String, Definition>,
}

/// A read-only copy of the embedded module `std.<name>` for go-to-definition, written on first use
/// under the user's cache folder (`$XDG_CACHE_HOME/sr` or `~/.cache/sr`, else the temporary folder), in
/// a folder named by the content's hash: never a path of the machine that built `sr`, and never a
/// file whose edits would be silently ignored.
fn std_path(module: &str) -> Option<String> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    std_path_in(module, &cache)
}

/// [`std_path`] under the cache folder `cache`.
fn std_path_in(module: &str, cache: &std::path::Path) -> Option<String> {
    let text = stdlib::module(module)?;
    let hash =
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let dir = cache.join("sr").join(format!("stdlib-{hash:016x}"));
    let path = dir.join(format!("{module}.srx"));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(&dir).ok()?;
        let tmp = dir.join(format!(".{module}.srx.{}", std::process::id()));
        std::fs::write(&tmp, text).ok()?;
        let mut perms = std::fs::metadata(&tmp).ok()?.permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&tmp, perms).ok()?;
        std::fs::rename(&tmp, &path).ok()?;
    }
    Some(path.display().to_string())
}

fn definitions(file: &str, text: &str, on_disk: Option<&str>) -> Vec<Definition> {
    let (module, _) = parse(SourceId(0), text);
    let index = LineIndex::new(text);
    let uri = on_disk.and_then(path_to_uri);
    module
        .items
        .iter()
        .filter_map(|item| {
            let (name, target, doc, source) = match item {
                Item::Preset(p) => {
                    let target = match &p.value.kind {
                        ExprKind::Name(n) => Some(n.clone()),
                        ExprKind::Component { name, .. } => Some(name.name.clone()),
                        _ => None,
                    };
                    let source = text.get(p.value.span.start..p.value.span.end).map(str::to_string);
                    (&p.name, target, p.doc.clone(), source)
                }
                Item::Experiment(e) => (&e.name, None, e.doc.clone(), None),
                Item::Use(_) => return None,
            };
            let range = index.range(name.span.start, name.span.end);
            Some(Definition {
                name: name.name.clone(),
                target,
                doc,
                location: uri.clone().map(|u| Location::new(u, range)),
                file: file.to_string(),
                source,
            })
        })
        .collect()
}

impl Scope {
    /// The definitions of the document `name` (text `text`) and of what it imports.
    pub fn new(name: &str, text: &str, open: &HashMap<String, String>) -> Scope {
        let mut visible =
            definitions(name, text, Some(name).filter(|n| n.starts_with('/') || n.contains(':')));
        let (module, _) = parse(SourceId(0), text);
        let std_defs = |m: &str| {
            let file = stdlib::file_name(m);
            stdlib::module(m).map_or_else(Vec::new, |t| definitions(&file, t, std_path(m).as_deref()))
        };
        for item in &module.items {
            let Item::Use(u) = item else { continue };
            match &u.target {
                UseTarget::Module { path, names } => {
                    let segs: Vec<&str> = path.iter().map(|i| i.name.as_str()).collect();
                    let (m, only): (&str, Option<Vec<String>>) = match (segs.as_slice(), names) {
                        (["std", m], None) => (m, None),
                        (["std", m], Some(ns)) => (m, Some(ns.iter().map(|n| n.name.clone()).collect())),
                        (["std", m, one], None) => (m, Some(vec![one.to_string()])),
                        _ => continue,
                    };
                    visible.extend(
                        std_defs(m).into_iter().filter(|d| only.as_ref().is_none_or(|o| o.contains(&d.name))),
                    );
                }
                UseTarget::File { path, .. } => {
                    if let Ok((file, t)) = (BufferLoader { open }).load(name, path) {
                        visible.extend(definitions(&file, &t, Some(&file)));
                    }
                }
            }
        }
        let all_std =
            stdlib::MODULES.iter().flat_map(|(m, _)| std_defs(m)).map(|d| (d.name.clone(), d)).collect();
        Scope { visible, all_std }
    }

    /// The definition called `name`: the document's own first, then imports, then the standard library.
    pub fn get(&self, name: &str) -> Option<&Definition> {
        self.visible.iter().find(|d| d.name == name).or_else(|| self.all_std.get(name))
    }

    /// The catalogue component `name` stands for, following presets; `kind` narrows the catalogue.
    fn component(&self, name: &str, kind: Option<Kind>) -> Option<&'static Component> {
        let mut name = name.to_string();
        for _ in 0..sr_compiler::resolve::MAX_CHAIN {
            let found = match kind {
                Some(k) => catalogue::lookup(k, &name),
                None => catalogue::by_name(&name).into_iter().next(),
            };
            if found.is_some() {
                return found;
            }
            name = self.get(&name)?.target.clone()?;
        }
        None
    }
}

// ---------------------------------------------------------------- owners

/// What the keys of a body are.
#[derive(Debug, Clone, Copy)]
enum Owner {
    File,
    Experiment,
    Train,
    Comp(&'static Component),
    /// A component of a known kind whose name is not known here (`schedule { }` blocks).
    Kind(Kind),
    Unknown,
}

/// The keys of an experiment body besides `data`, `sampler` and `evaluate`.
const EXPERIMENT_KEYS: &[(&str, &str)] = &[
    ("seed", "integer: the seed of every random stream"),
    ("device", "string: `\"cpu\"`, `\"cuda\"`, `\"cuda:1\"`"),
    ("variables", "optional shape assertion of the inferred `[V, F]`: `variables = f32[81, 9]`"),
    ("mapper", "the mapper component: raw sample ↔ variables"),
    ("flow", "the flow component: noising process and parameterization (`predict`)"),
    ("tokenizer", "the tokenizer component (optional; defaults to the one the denoiser needs)"),
    ("denoiser", "the denoiser component: the network"),
    ("train", "the training block: steps, batch, optimizer, lr schedule, time sampler, loss, ema, ..."),
];

fn experiment_key_kind(key: &str) -> Option<Kind> {
    match key {
        "mapper" => Some(Kind::Mapper),
        "flow" => Some(Kind::Flow),
        "tokenizer" => Some(Kind::Tokenizer),
        "denoiser" => Some(Kind::Denoiser),
        _ => None,
    }
}

/// The parameter `key` of an owner.
fn param_of(owner: Owner, key: &str) -> Option<&'static Param> {
    match owner {
        Owner::Train => catalogue::train_keys().iter().find(|p| p.name == key),
        Owner::Comp(c) => c.param(key),
        Owner::Kind(k) => catalogue::of_kind(k).find_map(|c| c.param(key)),
        _ => None,
    }
}

fn kind_of_ty(ty: Ty) -> Option<Kind> {
    match ty {
        Ty::Component(k) | Ty::Mixture(k) => Some(k),
        _ => None,
    }
}

/// The owner of the keys of block `key { }` inside `owner`.
fn navigate(owner: Owner, key: &str) -> Owner {
    match owner {
        Owner::Experiment if key == "train" => Owner::Train,
        Owner::Experiment => experiment_key_kind(key).map_or(Owner::Unknown, Owner::Kind),
        _ => param_of(owner, key).and_then(|p| kind_of_ty(p.ty)).map_or(Owner::Unknown, Owner::Kind),
    }
}

fn navigate_path(mut owner: Owner, path: &[String]) -> Owner {
    for key in path {
        owner = navigate(owner, key);
    }
    owner
}

/// The component kind a slot takes inside `owner`, and the parameter it is, if any.
fn slot_kind(owner: Owner, slot: &Slot) -> (Option<Kind>, Option<&'static Param>) {
    match slot {
        Slot::Data => (Some(Kind::Dataset), None),
        Slot::Sampler => (Some(Kind::Sampler), None),
        Slot::Metric => (Some(Kind::Metric), None),
        Slot::None => (None, None),
        Slot::Key(path) => {
            let Some((last, prefix)) = path.split_last() else { return (None, None) };
            let owner = navigate_path(owner, prefix);
            if let Owner::Experiment = owner {
                return (experiment_key_kind(last), None);
            }
            let p = param_of(owner, last);
            (p.and_then(|p| kind_of_ty(p.ty)), p)
        }
    }
}

/// The owner of the keys of each frame, innermost last.
fn owners(frames: &[Frame], scope: &Scope) -> Vec<Owner> {
    let mut out: Vec<Owner> = Vec::with_capacity(frames.len());
    for f in frames {
        let parent = out.last().copied().unwrap_or(Owner::File);
        let o = match &f.head {
            Head::File => Owner::File,
            Head::Experiment => Owner::Experiment,
            Head::Block { path } => navigate_path(parent, path),
            Head::Group { .. } => parent,
            Head::Component { name, slot } => {
                let (kind, _) = slot_kind(parent, slot);
                match scope.component(name, kind) {
                    Some(c) => Owner::Comp(c),
                    None => kind.map_or(Owner::Unknown, Owner::Kind),
                }
            }
        };
        out.push(o);
    }
    out
}

// ---------------------------------------------------------------- the cursor

/// The role of the word at the cursor.
enum Role {
    /// A key (or the segment of a dotted key) with the segments before it.
    Key { prefix: Vec<String> },
    /// A value in a slot.
    Value { slot: Slot },
    /// Something else (a declared name, `on`/`with` names, a use path).
    Other,
}

struct At {
    owner: Owner,
    /// The owner of the frame holding the slot (for values in groups, the frame around the group).
    slot_owner: Owner,
    role: Role,
}

/// The span of the identifier around (or just before) `offset`.
fn word_at(text: &str, offset: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let offset = offset.min(b.len());
    let mut s = offset;
    while s > 0 && is_ident(b[s - 1]) {
        s -= 1;
    }
    let mut e = offset;
    while e < b.len() && is_ident(b[e]) {
        e += 1;
    }
    (s < e && !b[s].is_ascii_digit()).then_some((s, e))
}

/// Analyses the position of a word starting at `start` and ending at `end`.
fn at(text: &str, start: usize, end: usize, scope: &Scope) -> At {
    let frames = frames(text, start);
    let owners = owners(&frames, scope);
    let n = frames.len();
    let owner = owners[n - 1];
    let slot_owner = if n >= 2 { owners[n - 2] } else { owner };
    let f = &frames[n - 1];
    let toks = &f.toks;
    let prev = toks.last();
    let next = text[end..].trim_start().chars().next();
    let value_in = |slot: Slot| Role::Value { slot };
    let group_slot = match &f.head {
        Head::Group { slot } => Some(slot.clone()),
        _ => None,
    };
    let role = if punct(text, prev, "=") {
        value_in(slot_before_eq(text, &toks[..toks.len() - 1], &f.head))
    } else if word(text, prev) == Some("evaluate") {
        value_in(Slot::Metric)
    } else if punct(text, prev, ".") {
        let (path, _) = dotted_tail(text, &toks[..toks.len() - 1]);
        let first = toks.len().checked_sub(2 * path.len() + 1).map(|i| &toks[i]);
        if word(text, first) == Some("use") || matches!(f.head, Head::File) {
            Role::Other
        } else {
            Role::Key { prefix: path }
        }
    } else if prev.is_some_and(|p| p.kind == K::Punct && "+-*/".contains(&text[p.start..p.end])) {
        // A term of a mixture: the slot is the key before the nearest `=`.
        match toks.iter().rposition(|t| punct(text, Some(t), "=")) {
            Some(i) => value_in(slot_before_eq(text, &toks[..i], &f.head)),
            None => group_slot.map_or(Role::Other, value_in),
        }
    } else if matches!(
        word(text, prev),
        Some("on" | "with" | "data" | "sampler" | "preset" | "experiment" | "extends")
    ) || punct(text, prev, ",") && matches!(f.head, Head::Experiment)
    {
        Role::Other
    } else if matches!(next, Some('=' | '{' | '.')) || !matches!(f.head, Head::Group { .. }) {
        Role::Key { prefix: vec![] }
    } else {
        group_slot.map_or(Role::Other, value_in)
    };
    let slot_owner = if matches!(f.head, Head::Group { .. }) { slot_owner } else { owner };
    At { owner, slot_owner, role }
}

// ---------------------------------------------------------------- hover

fn markdown(value: String) -> MarkupContent {
    MarkupContent { kind: MarkupKind::Markdown, value }
}

/// Markdown for a parameter: its doc, type, default and range.
pub fn param_markdown(owner: &str, p: &Param) -> String {
    let mut s = format!("**{}** — parameter of {owner}\n\n{}\n\n- type: `{}`\n", p.name, p.doc, p.ty);
    match p.default {
        None => s.push_str("- required\n"),
        Some(d) => s.push_str(&format!("- default: `{d}`\n")),
    }
    let integral = matches!(p.ty, Ty::Int | Ty::Range | Ty::IntList);
    let num = |x: f64| if integral { format!("{}", x as i64) } else { format!("{x}") };
    match (p.min, p.max) {
        (Some(lo), Some(hi)) => s.push_str(&format!("- range: `{}..={}`\n", num(lo), num(hi))),
        (Some(lo), None) => s.push_str(&format!("- range: `≥ {}`\n", num(lo))),
        (None, Some(hi)) => s.push_str(&format!("- range: `≤ {}`\n", num(hi))),
        (None, None) => {}
    }
    s
}

fn component_markdown(c: &Component) -> String {
    format!("```text\n{}```", catalogue::describe(c))
}

fn owner_name(owner: Owner) -> String {
    match owner {
        Owner::Train => "the `train` block".to_string(),
        Owner::Comp(c) => format!("`{}` ({})", c.name, c.kind),
        Owner::Kind(k) => format!("a {k}"),
        _ => "the experiment".to_string(),
    }
}

/// Hover text for the word at `offset`, and the range of that word.
pub fn hover(text: &str, offset: usize, scope: &Scope) -> Option<(MarkupContent, (usize, usize))> {
    let (s, e) = word_at(text, offset)?;
    let word = &text[s..e];
    let at = at(text, s, e, scope);
    let md = match at.role {
        Role::Key { prefix } => {
            let owner = navigate_path(at.owner, &prefix);
            match owner {
                Owner::Experiment => {
                    let doc = EXPERIMENT_KEYS.iter().find(|(k, _)| *k == word)?.1;
                    format!("**{word}** — experiment key\n\n{doc}")
                }
                _ => param_markdown(&owner_name(owner), param_of(owner, word)?),
            }
        }
        Role::Value { slot } => {
            let (kind, param) = slot_kind(at.slot_owner, &slot);
            if let Some(Param { ty: Ty::Enum(words), doc, name, .. }) = param {
                if words.contains(&word) {
                    return Some((markdown(format!("**{word}** — value of `{name}`\n\n{doc}")), (s, e)));
                }
            }
            value_markdown(word, kind, scope)?
        }
        Role::Other => match scope.get(word) {
            Some(_) => value_markdown(word, None, scope)?,
            None => return None,
        },
    };
    Some((markdown(md), (s, e)))
}

fn value_markdown(word: &str, kind: Option<Kind>, scope: &Scope) -> Option<String> {
    let direct = match kind {
        Some(k) => catalogue::lookup(k, word).into_iter().collect::<Vec<_>>(),
        None => catalogue::by_name(word),
    };
    if !direct.is_empty() {
        return Some(direct.iter().map(|c| component_markdown(c)).collect::<Vec<_>>().join("\n\n"));
    }
    let def = scope.get(word)?;
    let mut s = match (&def.target, &def.source) {
        (Some(_), Some(src)) => format!("```srx\npreset {word} = {src}\n```\n(from `{}`)\n\n", def.file),
        (Some(t), None) => format!("**preset {word}** = `{t} {{ ... }}` (from `{}`)\n\n", def.file),
        (None, _) => format!("**experiment {word}** (from `{}`)\n\n", def.file),
    };
    if let Some(doc) = &def.doc {
        s.push_str(doc);
        s.push_str("\n\n");
    }
    if def.target.is_some() {
        if let Some(c) = scope.component(word, kind) {
            s.push_str(&component_markdown(c));
        }
    }
    Some(s)
}

// ---------------------------------------------------------------- completion

fn item(label: &str, kind: CompletionItemKind, detail: String, doc: &str) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail: Some(detail),
        documentation: (!doc.is_empty()).then(|| Documentation::String(doc.to_string())),
        ..Default::default()
    }
}

/// Completions at `offset`: component names and presets in a value slot (of the slot's kind when it
/// is known), enum words, or the keys of the enclosing body.
pub fn complete(text: &str, offset: usize, scope: &Scope) -> Vec<CompletionItem> {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let b = text.as_bytes();
    let mut s = offset;
    while s > 0 && is_ident(b[s - 1]) {
        s -= 1;
    }
    let at = at(text, s, offset, scope);
    let mut out = Vec::new();
    match at.role {
        Role::Value { slot } => {
            let (kind, param) = slot_kind(at.slot_owner, &slot);
            if let Some(Param { ty: Ty::Enum(words), doc, .. }) = param {
                for w in *words {
                    out.push(item(w, CompletionItemKind::ENUM_MEMBER, "value".into(), doc));
                }
                return out;
            }
            for c in catalogue::all().iter().filter(|c| kind.is_none_or(|k| c.kind == k)) {
                out.push(item(c.name, CompletionItemKind::CLASS, c.kind.to_string(), c.doc));
            }
            for d in &scope.visible {
                let Some(target) = &d.target else { continue };
                let Some(c) = scope.component(target, kind) else { continue };
                if kind.is_none_or(|k| c.kind == k) && !out.iter().any(|i| i.label == d.name) {
                    let detail = format!("preset of {} ({})", c.name, c.kind);
                    out.push(item(
                        &d.name,
                        CompletionItemKind::CONSTANT,
                        detail,
                        d.doc.as_deref().unwrap_or(""),
                    ));
                }
            }
        }
        Role::Key { prefix } => {
            let owner = navigate_path(at.owner, &prefix);
            let params: Vec<&Param> = match owner {
                Owner::Train => catalogue::train_keys().iter().collect(),
                Owner::Comp(c) => c.params.iter().collect(),
                Owner::Kind(k) => {
                    let mut ps: Vec<&Param> = Vec::new();
                    for p in catalogue::of_kind(k).flat_map(|c| c.params.iter()) {
                        if !ps.iter().any(|q| q.name == p.name) {
                            ps.push(p);
                        }
                    }
                    ps
                }
                Owner::Experiment => {
                    for (k, doc) in EXPERIMENT_KEYS {
                        out.push(item(k, CompletionItemKind::FIELD, "experiment key".into(), doc));
                    }
                    for kw in ["data", "sampler", "evaluate"] {
                        out.push(item(kw, CompletionItemKind::KEYWORD, "declaration".into(), ""));
                    }
                    return out;
                }
                Owner::File => {
                    for kw in ["use", "preset", "experiment"] {
                        out.push(item(kw, CompletionItemKind::KEYWORD, "item".into(), ""));
                    }
                    return out;
                }
                Owner::Unknown => vec![],
            };
            for p in params {
                out.push(item(p.name, CompletionItemKind::FIELD, p.ty.to_string(), p.doc));
            }
        }
        Role::Other => {}
    }
    out
}

// ---------------------------------------------------------------- definitions

/// The definition of the word or `use "file"` string at `offset` in document `name`.
pub fn definition(
    name: &str,
    text: &str,
    offset: usize,
    scope: &Scope,
    open: &HashMap<String, String>,
) -> Option<Location> {
    // `use "file.srx"`: the string under the cursor.
    if let Some(t) = lex(text).into_iter().find(|t| t.kind == K::Str && t.start <= offset && offset < t.end) {
        let lit = text[t.start..t.end].trim_matches('"');
        let file = relative_to(name, lit);
        let exists = open.contains_key(&file) || std::path::Path::new(&file).is_file();
        return exists.then(|| path_to_uri(&file)).flatten().map(|u| Location::new(u, Range::default()));
    }
    let (s, e) = word_at(text, offset)?;
    scope.get(&text[s..e])?.location.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Scope {
        Scope::new("/nowhere/main.srx", text, &HashMap::new())
    }

    fn labels(text: &str, marker: &str) -> Vec<String> {
        let offset = text.find(marker).unwrap() + marker.len();
        complete(text, offset, &scope(text)).into_iter().map(|i| i.label).collect()
    }

    fn hover_at(text: &str, marker: &str) -> Option<String> {
        let offset = text.find(marker).unwrap();
        hover(text, offset, &scope(text)).map(|(m, _)| m.value)
    }

    #[test]
    fn completes_components_of_the_slot_kind() {
        let l = labels("experiment e {\n  flow = \n}\n", "flow = ");
        assert!(l.contains(&"rectified".to_string()), "{l:?}");
        assert!(!l.contains(&"transformer".to_string()), "{l:?}");
        let l = labels("use std.denoisers\nexperiment e {\n  denoiser = tr\n}\n", "= tr");
        assert!(l.contains(&"transformer".to_string()) && l.contains(&"transformer_s".to_string()), "{l:?}");
        let l = labels("experiment e {\n  train { time = \n}\n", "time = ");
        assert!(l.contains(&"mean_beta".to_string()), "{l:?}");
    }

    #[test]
    fn completes_keys_and_enum_words() {
        let l = labels("experiment e {\n  flow = rectified { pr }\n}\n", "{ pr");
        assert!(l.contains(&"predict".to_string()), "{l:?}");
        let l = labels("experiment e {\n  flow = rectified { predict = v }\n}\n", "= v");
        assert!(l.contains(&"velocity".to_string()), "{l:?}");
        let l = labels("experiment e {\n  train {\n    st\n  }\n}\n", "    st");
        assert!(l.contains(&"steps".to_string()) && l.contains(&"batch".to_string()), "{l:?}");
        let l = labels("experiment e {\n  se\n}\n", "  se");
        assert!(l.contains(&"seed".to_string()), "{l:?}");
    }

    #[test]
    fn hovers_keys_components_and_presets() {
        let h = hover_at("experiment e {\n  flow = cosine { skew = 0.1 }\n}\n", "skew").unwrap();
        assert!(h.contains("offset that keeps a(t) away from 0") && h.contains("0.5"), "{h}");
        let h = hover_at("experiment e {\n  train { lr_schedule = cosine { final = 0.1 } }\n}\n", "cosine")
            .unwrap();
        assert!(h.contains("(lr_schedule)") && !h.contains("(flow)"), "{h}");
        let h = hover_at("experiment e {\n  train { steps = 10 }\n}\n", "steps").unwrap();
        assert!(h.contains("optimizer steps"), "{h}");
        let h = hover_at(
            "use std.denoisers\nexperiment e {\n  denoiser = transformer_s { depth = 4 }\n}\n",
            "transformer_s",
        )
        .unwrap();
        assert!(h.contains("preset transformer_s") && h.contains("transformer (denoiser)"), "{h}");
        let h = hover_at(
            "preset tiny = transformer { depth = 2, width = 48 }\nexperiment e {\n  denoiser = tiny\n}\n",
            "tiny\n",
        )
        .unwrap();
        assert!(
            h.contains("```srx\npreset tiny = transformer { depth = 2, width = 48 }\n```"),
            "the preset's own values: {h}"
        );
        let h = hover_at(
            "use std.denoisers\nexperiment e {\n  denoiser = transformer_s { depth = 4 }\n}\n",
            "depth",
        )
        .unwrap();
        assert!(h.contains("`transformer` (denoiser)"), "{h}");
        let h = hover_at("experiment e {\n  sampler s = scheduled { schedule.steps = 5 }\n}\n", "steps =")
            .unwrap();
        assert!(h.contains("a schedule"), "{h}");
    }

    #[test]
    fn definitions_into_the_standard_library_open_a_read_only_copy() {
        let cache = std::env::temp_dir().join(format!("sr-lsp-cache-{}", std::process::id()));
        let path = std::path::PathBuf::from(std_path_in("denoisers", &cache).unwrap());
        assert!(path.starts_with(&cache), "{}", path.display());
        assert!(!path.starts_with(env!("CARGO_MANIFEST_DIR")), "not a path of the build machine");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), stdlib::module("denoisers").unwrap());
        assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
        // A second call reuses the copy.
        assert_eq!(std_path_in("denoisers", &cache).unwrap(), path.display().to_string());
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).unwrap();
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn definitions_of_local_presets() {
        let text = "preset tiny = transformer { depth = 2 }\nexperiment e {\n  denoiser = tiny\n}\n";
        let sc = Scope::new("/w/main.srx", text, &HashMap::new());
        let loc = definition("/w/main.srx", text, text.rfind("tiny").unwrap(), &sc, &HashMap::new()).unwrap();
        assert_eq!(loc.uri.as_str(), "file:///w/main.srx");
        assert_eq!(loc.range.start, lsp_types::Position::new(0, 7));
    }
}
