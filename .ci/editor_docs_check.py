"""Checks the Helix and Zed set-ups of docs/EDITORS.md: every TOML block parses, Helix starts `sr lsp`
for `.srx` files and builds the grammar from editors/tree-sitter-srx, Zed's extension points at that
grammar and its config names it; the queries they copy exist. Usage: python3 .ci/editor_docs_check.py"""
import pathlib
import re
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parent.parent
doc = (root / "docs/EDITORS.md").read_text()


def blocks(section):
    text = re.search(rf"### {section}\n(.*?)(?=\n### |\Z)", doc, re.S)
    assert text, f"docs/EDITORS.md has no {section} section"
    return [tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", text.group(1), re.S)]


[helix] = blocks("Helix")
assert helix["language-server"]["sr"] == {"command": "sr", "args": ["lsp"]}, helix["language-server"]
[lang] = helix["language"]
assert lang["name"] == "srx" and lang["file-types"] == ["srx"] and lang["language-servers"] == ["sr"], lang
[grammar] = helix["grammar"]
assert grammar["name"] == "srx" and grammar["source"]["path"].endswith("editors/tree-sitter-srx"), grammar

extension, config = blocks("Zed")
g = extension["grammars"]["srx"]
assert (root / g["path"] / "src/parser.c").is_file() and (root / g["path"] / "grammar.js").is_file(), g
assert config["grammar"] == "srx" and config["path_suffixes"] == ["srx"], config

for query in ("highlights", "folds", "locals"):
    assert (root / f"editors/tree-sitter-srx/queries/{query}.scm").is_file(), query
print("editor docs: the Helix and Zed TOML blocks parse and point at sr lsp and editors/tree-sitter-srx")
