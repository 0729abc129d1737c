//! The editor grammar stays in sync with the language.
//!
//! `editors/vscode/syntaxes/srx.tmLanguage.json` must highlight every word literal of `grammar/srx.pest`
//! (keywords, booleans, dtypes) and every component name, enum word and enum-typed key of the compiler's
//! catalogue. Words are found in the TextMate regexes as literal alternatives (`\b(?:a|b|c)\b`) of groups
//! whose scope is the expected one, so the grammar must list each word literally (no factoring such as
//! `sudoku(?:_image)?`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;
use sr_compiler::catalogue::{self, Ty};

const TM_GRAMMAR: &str = "editors/vscode/syntaxes/srx.tmLanguage.json";
const PEST_GRAMMAR: &str = "grammar/srx.pest";

fn read(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn tm_grammar() -> Value {
    serde_json::from_str(&read(TM_GRAMMAR)).unwrap_or_else(|e| panic!("{TM_GRAMMAR} is not JSON: {e}"))
}

// ---------------------------------------------------------------------------------------------------
// Pest: word literals.

/// Every quoted literal of a pest grammar that looks like a word (`[A-Za-z_][A-Za-z0-9_]*`, two or more
/// characters): keywords such as `"experiment"`, `^"true"`, dtypes such as `"f32"`. Literals inside pest
/// comments are skipped, as are character literals (`'a'`) and single letters (exponent `"e"`, escape
/// letters `"n"`), which are lexical details rather than words of the language.
fn pest_word_literals(pest: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    let chars: Vec<char> = pest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1).copied()) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            (quote @ ('"' | '\''), _) => {
                let mut lit = String::new();
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    if chars[i] == '\\' {
                        lit.push(chars[i]);
                        i += 1;
                    }
                    if let Some(&c) = chars.get(i) {
                        lit.push(c);
                    }
                    i += 1;
                }
                i += 1;
                if quote == '"' && lit.len() >= 2 && is_word(&lit) {
                    words.insert(lit);
                }
            }
            _ => i += 1,
        }
    }
    words
}

fn is_word(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------------------------------
// TextMate: rules, their regexes and the scopes of their capture groups.

/// One regex of the grammar with the scope names given to its capture groups (0 = the whole match).
#[derive(Debug)]
struct Rule {
    regex: String,
    scopes: BTreeMap<usize, Vec<String>>,
}

/// Every `match`, `begin`, `end` and `while` regex anywhere in the grammar (patterns and repository,
/// however deeply nested), with the scopes that apply to its groups.
fn tm_rules(grammar: &Value) -> Vec<Rule> {
    let mut out = Vec::new();
    collect_rules(grammar, &mut out);
    out
}

fn collect_rules(v: &Value, out: &mut Vec<Rule>) {
    match v {
        Value::Object(map) => {
            let name = map.get("name").and_then(Value::as_str);
            for (key, caps_key) in [
                ("match", "captures"),
                ("begin", "beginCaptures"),
                ("end", "endCaptures"),
                ("while", "whileCaptures"),
            ] {
                let Some(regex) = map.get(key).and_then(Value::as_str) else { continue };
                let mut scopes: BTreeMap<usize, Vec<String>> = BTreeMap::new();
                if let Some(name) = name {
                    scopes.entry(0).or_default().extend(split_scopes(name));
                }
                for caps in [map.get(caps_key), map.get("captures")].into_iter().flatten() {
                    let Some(caps) = caps.as_object() else { continue };
                    for (n, cap) in caps {
                        let (Ok(n), Some(cname)) =
                            (n.parse::<usize>(), cap.get("name").and_then(Value::as_str))
                        else {
                            continue;
                        };
                        scopes.entry(n).or_default().extend(split_scopes(cname));
                    }
                }
                out.push(Rule { regex: regex.to_owned(), scopes });
            }
            for child in map.values() {
                collect_rules(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| collect_rules(x, out)),
        _ => {}
    }
}

fn split_scopes(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split_whitespace().map(str::to_owned)
}

/// One group of a regex: the top level (capture 0) or a parenthesised group.
#[derive(Debug, Default)]
struct Group {
    /// Capture number, for capturing groups.
    capture: Option<usize>,
    parent: Option<usize>,
    /// Lookahead/lookbehind: its text is not part of the match.
    lookaround: bool,
    /// Where the group sits in its parent: the index of the parent's alternative and the byte offset of
    /// the `(` that stands for this group in that alternative's text.
    at: (usize, usize),
    /// The source text of each `|`-separated alternative directly in this group; a nested group shows
    /// as `(` and a character class as `[`.
    alternatives: Vec<String>,
}

/// Splits a regex (Oniguruma syntax as used by TextMate) into its groups and their alternatives.
fn regex_groups(regex: &str) -> Vec<Group> {
    let chars: Vec<char> = regex.chars().collect();
    let mut groups = vec![Group { capture: Some(0), ..Group::default() }];
    let mut current = vec![String::new()];
    let mut stack = vec![0usize];
    let mut next_capture = 1;
    let mut i = 0;
    while i < chars.len() {
        let top = *stack.last().unwrap_or(&0);
        match chars[i] {
            '\\' => {
                current[top].push('\\');
                if let Some(&c) = chars.get(i + 1) {
                    current[top].push(c);
                }
                i += 2;
            }
            '[' => {
                current[top].push('[');
                i = skip_class(&chars, i);
            }
            '|' => {
                let alt = std::mem::take(&mut current[top]);
                groups[top].alternatives.push(alt);
                i += 1;
            }
            '(' => {
                let at = (groups[top].alternatives.len(), current[top].len());
                current[top].push('(');
                let rest: String = chars[i + 1..chars.len().min(i + 4)].iter().collect();
                let (capture, lookaround, skip) = if rest.starts_with("?<=") || rest.starts_with("?<!") {
                    (None, true, 3)
                } else if rest.starts_with("?=") || rest.starts_with("?!") {
                    (None, true, 2)
                } else if rest.starts_with("?<") || rest.starts_with("?P<") || rest.starts_with("?'") {
                    // Named group: capturing; skip its name.
                    let close = if rest.starts_with("?'") { '\'' } else { '>' };
                    let end =
                        chars[i + 1..].iter().position(|&c| c == close).map_or(chars.len(), |p| i + 1 + p);
                    next_capture += 1;
                    (Some(next_capture - 1), false, end - i)
                } else if rest.starts_with('?') {
                    // Non-capturing, atomic, or inline options: `(?:`, `(?>`, `(?i:`, `(?i)`.
                    let end = chars[i + 1..]
                        .iter()
                        .position(|&c| c == ':' || c == '>' || c == ')')
                        .map_or(chars.len(), |p| i + 1 + p);
                    let skip = if chars.get(end) == Some(&')') { end - i - 1 } else { end - i };
                    (None, false, skip)
                } else {
                    next_capture += 1;
                    (Some(next_capture - 1), false, 0)
                };
                groups.push(Group { capture, parent: Some(top), lookaround, at, alternatives: Vec::new() });
                current.push(String::new());
                stack.push(groups.len() - 1);
                i += 1 + skip;
            }
            ')' if stack.len() > 1 => {
                let alt = std::mem::take(&mut current[top]);
                groups[top].alternatives.push(alt);
                stack.pop();
                i += 1;
            }
            c => {
                current[top].push(c);
                i += 1;
            }
        }
    }
    // Close the top level and any group left open by an unbalanced regex.
    while let Some(g) = stack.pop() {
        let alt = std::mem::take(&mut current[g]);
        groups[g].alternatives.push(alt);
    }
    groups
}

/// Index just past the character class that starts at `chars[start] == '['` (nested classes included).
fn skip_class(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => depth += 1,
            ']' if i > start + 1 && !(i == start + 2 && chars[start + 1] == '^') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// Whether a group stands for whole words in its parent: no word character right before it and no word
/// character or quantifier right after it (`sudoku(?:_image)?` holds the fragment `_image`, not a word).
fn isolated(groups: &[Group], group: &Group) -> bool {
    let Some(parent) = group.parent else { return true };
    let (alt, offset) = group.at;
    let Some(text) = groups[parent].alternatives.get(alt) else { return false };
    let before = &text[..offset];
    let after = &text[offset + 1..];
    let mut back = before.chars().rev();
    let word_before = match (back.next(), back.next()) {
        (Some(c), prev) => (c.is_ascii_alphanumeric() || c == '_') && prev != Some('\\'),
        (None, _) => false,
    };
    let word_after = after.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || "_?*+{".contains(c));
    !word_before && !word_after
}

/// The alternatives of a group that are a single literal word, with any `\b` around it removed.
fn word_alternatives(group: &Group) -> impl Iterator<Item = &str> {
    group.alternatives.iter().filter_map(|alt| {
        let w = alt.strip_prefix("\\b").unwrap_or(alt);
        let w = w.strip_suffix("\\b").unwrap_or(w);
        is_word(w).then_some(w)
    })
}

/// Every literal word alternative of every regex group whose scopes (its own capture's and those of the
/// enclosing captures) include one accepted by `wanted`. Lookaround groups are not part of the match
/// and contribute nothing.
fn words_with_scope(rules: &[Rule], wanted: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for rule in rules {
        let groups = regex_groups(&rule.regex);
        for group in &groups {
            let mut scoped = false;
            let mut in_lookaround = false;
            let mut fragment = false;
            let mut at = Some(group);
            while let Some(g) = at {
                in_lookaround |= g.lookaround;
                fragment |= !isolated(&groups, g);
                let scopes = g.capture.and_then(|c| rule.scopes.get(&c));
                scoped |= scopes.is_some_and(|s| s.iter().any(|s| wanted(s)));
                at = g.parent.map(|p| &groups[p]);
            }
            if scoped && !in_lookaround && !fragment {
                words.extend(word_alternatives(group).map(str::to_owned));
            }
        }
    }
    words
}

fn is_keyword_scope(s: &str) -> bool {
    s.starts_with("keyword.") || s.starts_with("storage.type.") || s.starts_with("constant.language.")
}

fn missing<'a>(wanted: impl IntoIterator<Item = &'a str>, have: &BTreeSet<String>) -> Vec<&'a str> {
    let mut out: Vec<&str> = wanted.into_iter().filter(|w| !have.contains(*w)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------------------------
// The sync checks.

#[test]
fn every_pest_keyword_is_highlighted() {
    let literals = pest_word_literals(&read(PEST_GRAMMAR));
    assert!(
        ["experiment", "preset", "use"].iter().all(|k| literals.contains(*k)),
        "found no keywords in {PEST_GRAMMAR}: {literals:?}"
    );
    let rules = tm_rules(&tm_grammar());
    let keywords = words_with_scope(&rules, is_keyword_scope);
    // A fixed word the grammar spells out where a key goes (e.g. `train { ... }`) may be highlighted
    // as a key instead of a keyword.
    let keys = words_with_scope(&rules, |s| s.starts_with("variable.other.key"));
    let highlighted: BTreeSet<String> = keywords.union(&keys).cloned().collect();
    let absent = missing(literals.iter().map(String::as_str), &highlighted);
    assert!(
        absent.is_empty(),
        "{TM_GRAMMAR} does not highlight these words of {PEST_GRAMMAR}: {absent:?}; list each literally \
         in a regex scoped keyword.*, storage.type.* or constant.language.*"
    );
}

#[test]
fn every_catalogue_component_is_highlighted() {
    let components = catalogue::all();
    assert!(!components.is_empty(), "the catalogue is empty");
    let rules = tm_rules(&tm_grammar());
    let highlighted = words_with_scope(&rules, |s| s.starts_with("support.function.component"));
    let absent = missing(components.iter().map(|c| c.name), &highlighted);
    assert!(
        absent.is_empty(),
        "{TM_GRAMMAR} does not highlight these catalogue components: {absent:?}; add them to the \
         `components` regex (scope support.function.component.srx)"
    );
}

#[test]
fn every_catalogue_enum_word_and_enum_key_is_highlighted() {
    let rules = tm_rules(&tm_grammar());
    let enum_words = words_with_scope(&rules, |s| s.starts_with("constant.other.enum"));
    let keys = words_with_scope(&rules, |s| s.starts_with("variable.other.key"));
    let mut words = Vec::new();
    let mut enum_keys = Vec::new();
    for component in catalogue::all() {
        for param in component.params {
            if let Ty::Enum(values) = param.ty {
                words.extend(values.iter().copied());
                enum_keys.push(param.name);
            }
        }
    }
    let absent_words = missing(words, &enum_words);
    assert!(
        absent_words.is_empty(),
        "{TM_GRAMMAR} does not highlight these enum words: {absent_words:?}; add them to the \
         `enum-assignment` regex (scope constant.other.enum.srx)"
    );
    let absent_keys = missing(enum_keys, &keys);
    assert!(
        absent_keys.is_empty(),
        "{TM_GRAMMAR} does not know these enum-typed keys: {absent_keys:?}; add them to the key group \
         of the `enum-assignment` regex"
    );
}

// ---------------------------------------------------------------------------------------------------
// The tree-sitter grammar (editors/tree-sitter-srx): same keywords, every component highlighted.

const TS_GRAMMAR: &str = "editors/tree-sitter-srx/grammar.js";

/// The captures of the tree-sitter highlight query on `text`, as `(captured text, capture name)`.
fn ts_captures(text: &str) -> BTreeSet<(String, String)> {
    use tree_sitter::StreamingIterator;
    let language: tree_sitter::Language = tree_sitter_srx::LANGUAGE.into();
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&language).expect("the grammar loads");
    let tree = parser.parse(text, None).expect("parses");
    assert!(
        !tree.root_node().has_error(),
        "tree-sitter cannot parse:\n{text}\n{}",
        tree.root_node().to_sexp()
    );
    let query =
        tree_sitter::Query::new(&language, tree_sitter_srx::HIGHLIGHTS_QUERY).expect("query compiles");
    let mut cursor = tree_sitter::QueryCursor::new();
    let mut out = BTreeSet::new();
    let mut matches = cursor.matches(&query, tree.root_node(), text.as_bytes());
    while let Some(m) = matches.next() {
        for c in m.captures {
            let word = c.node.utf8_text(text.as_bytes()).unwrap_or_default().to_string();
            out.insert((word, query.capture_names()[c.index as usize].to_string()));
        }
    }
    out
}

#[test]
fn tree_sitter_grammar_knows_every_pest_keyword() {
    let grammar = read(TS_GRAMMAR);
    let highlights = read("editors/tree-sitter-srx/queries/highlights.scm");
    for word in pest_word_literals(&read(PEST_GRAMMAR)) {
        let quoted = format!("'{word}'");
        assert!(grammar.contains(&quoted), "{TS_GRAMMAR} lacks the keyword {quoted} of {PEST_GRAMMAR}");
        // Booleans and dtypes have their own captures; every other word is a keyword.
        let literal = ["true", "false", "f32", "f16", "bf16", "f64", "u8", "i64"];
        if !literal.contains(&word.as_str()) {
            assert!(
                highlights.contains(&format!("\"{word}\"")),
                "highlights.scm does not highlight `{word}`"
            );
        }
    }
    let caps = ts_captures("use std.samplers.{parallel_sampler}\nexperiment e extends base {\n  data train = sudoku { flag = true }\n  x = f32[2]\n  evaluate sudoku_accuracy on train with s\n}\n");
    for (word, capture) in [
        ("use", "keyword"),
        ("extends", "keyword"),
        ("data", "keyword"),
        ("on", "keyword"),
        ("with", "keyword"),
        ("true", "boolean"),
        ("f32", "type.builtin"),
        ("e", "type"),
    ] {
        assert!(
            caps.contains(&(word.to_string(), capture.to_string())),
            "`{word}` is not @{capture}: {caps:?}"
        );
    }
}

#[test]
fn tree_sitter_highlights_every_catalogue_component() {
    let mut text = String::new();
    for (i, c) in catalogue::all().iter().enumerate() {
        text += &format!("preset p{i} = {} {{ }}\n", c.name);
    }
    let caps = ts_captures(&text);
    let absent: Vec<&str> = catalogue::all()
        .iter()
        .map(|c| c.name)
        .filter(|n| !caps.contains(&(n.to_string(), "function".to_string())))
        .collect();
    assert!(absent.is_empty(), "tree-sitter does not highlight these components as @function: {absent:?}");
}

// ---------------------------------------------------------------------------------------------------
// The helpers themselves.

#[test]
fn pest_literals_skip_comments_chars_and_single_letters() {
    let pest = r#"
        // "commented" is not a keyword
        /* nor "blocked" */
        kw_use = @{ "use" ~ !ident_char }
        boolean = { ^"true" | "false" }
        dtype = { "bf16" | "f32" }
        float = @{ ASCII_DIGIT+ ~ ("e" | "E") ~ ("+" | "-")? ~ ASCII_DIGIT+ }
        escape = @{ "\\" ~ ("\"" | "\\" | "n" | "t") }
        alpha = { 'a'..'z' }
        comment = { "//" ~ (!NEWLINE ~ ANY)* }
        range = { ".." ~ "=" }
    "#;
    let words: Vec<String> = pest_word_literals(pest).into_iter().collect();
    assert_eq!(words, ["bf16", "f32", "false", "true", "use"]);
}

#[test]
fn regex_groups_number_captures_and_split_alternatives() {
    let groups = regex_groups(r"\b(experiment)\b(?:\s+([A-Za-z_]\w*))?(?=\s*\{|a|b)|(?<name>x|y)");
    let summary: Vec<(Option<usize>, bool, Vec<&str>)> = groups
        .iter()
        .map(|g| (g.capture, g.lookaround, g.alternatives.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some(0), false, vec![r"\b(\b(?(", "("]),
            (Some(1), false, vec!["experiment"]),
            (None, false, vec![r"\s+("]),
            (Some(2), false, vec![r"[\w*"]),
            (None, true, vec![r"\s*\{", "a", "b"]),
            (Some(3), false, vec!["x", "y"]),
        ]
    );
}

#[test]
fn character_classes_hide_their_pipes_and_parens() {
    let groups = regex_groups(r"(a|[|()\]]|b)");
    assert_eq!(groups[1].alternatives, ["a", "[", "b"]);
    let groups = regex_groups(r"(?i:yes|no)[^]|]");
    assert_eq!(groups[1].alternatives, ["yes", "no"]);
    assert_eq!(groups[0].alternatives, ["(["]);
}

#[test]
fn words_are_found_only_under_the_wanted_scope() {
    let grammar: Value = serde_json::json!({
        "repository": {
            "kw": { "name": "keyword.control.srx", "match": "\\b(?:use|with)\\b(?=\\s*(?:later))" },
            "decl": {
                "match": "\\b(preset)\\s+(name|other)",
                "captures": { "1": { "name": "keyword.declaration.srx" }, "2": { "name": "entity.name.srx" } }
            },
            "block": {
                "begin": "\\b(data)\\b", "end": "(done)",
                "beginCaptures": { "1": { "name": "keyword.declaration.srx" } },
                "patterns": [ { "name": "constant.language.srx", "match": "\\b(true|false)\\b" } ]
            },
            "factored": { "name": "keyword.other.srx", "match": "\\bsudoku(?:_image)?\\b|x(?:y|z)" }
        }
    });
    let words = words_with_scope(&tm_rules(&grammar), is_keyword_scope);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    assert_eq!(words, ["data", "false", "preset", "true", "use", "with"]);
}
