//! docs/COMPONENTS.md documents the catalogue: every component under the heading of its kind, and every
//! parameter of it in that section.

use sr_compiler::catalogue;

/// The text of each `## kind` section of docs/COMPONENTS.md, by the heading's first word.
fn sections(doc: &str) -> Vec<(&str, &str)> {
    doc.split("\n## ").skip(1).map(|s| (s.split_whitespace().next().unwrap_or_default(), s)).collect()
}

#[test]
fn every_component_and_parameter_of_the_catalogue_is_documented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/COMPONENTS.md");
    let doc = std::fs::read_to_string(path).expect("docs/COMPONENTS.md");
    let sections = sections(&doc);
    let mut missing = Vec::new();
    for c in catalogue::all() {
        let kind = c.kind.as_str();
        let Some((_, text)) = sections.iter().find(|(k, _)| *k == kind) else {
            missing.push(format!("no `## {kind}` section"));
            continue;
        };
        if !text.contains(&format!("`{}`", c.name)) {
            missing.push(format!("{kind}.{}", c.name));
        }
        for p in c.params {
            if !text.contains(&format!("`{}`", p.name)) {
                missing.push(format!("{kind}.{} parameter `{}`", c.name, p.name));
            }
        }
    }
    assert!(missing.is_empty(), "docs/COMPONENTS.md does not document:\n{}", missing.join("\n"));
}
