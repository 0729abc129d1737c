"""Checks the Helix set-up of docs/EDITORS.md and the Zed extension in editors/zed: every TOML block or
file parses, Helix starts `sr lsp` for `.srx` files and builds the grammar from editors/tree-sitter-srx,
Zed's extension serves its language with the `sr` server, points at that grammar, and highlights with
the tree-sitter query; the queries exist. Usage: python3 .ci/editor_docs_check.py"""
import json
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

zed = root / "editors/zed"
extension = tomllib.loads((zed / "extension.toml").read_text())
config = tomllib.loads((zed / "languages/srx/config.toml").read_text())
g = extension["grammars"]["srx"]
assert (root / g["path"] / "src/parser.c").is_file() and (root / g["path"] / "grammar.js").is_file(), g
[doc_grammar] = blocks("Zed")
assert doc_grammar["grammars"]["srx"]["path"] == g["path"], doc_grammar
assert config["grammar"] == "srx" and config["path_suffixes"] == ["srx"], config
assert extension["language_servers"]["sr"]["languages"] == [config["name"]], extension["language_servers"]
assert 'const SERVER: &str = "sr";' in (zed / "src/lib.rs").read_text()
zed_section = re.search(r"### Zed\n(.*?)(?=\n### |\n## |\Z)", doc, re.S).group(1)
[settings] = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", zed_section, re.S)]
assert settings["lsp"]["sr"]["binary"]["arguments"] == ["lsp"], settings
highlights = zed / "languages/srx/highlights.scm"
assert highlights.resolve() == (root / "editors/tree-sitter-srx/queries/highlights.scm").resolve(), highlights

for query in ("highlights", "folds", "locals"):
    assert (root / f"editors/tree-sitter-srx/queries/{query}.scm").is_file(), query
print("editor docs: the Helix block and the Zed extension parse and point at sr lsp and editors/tree-sitter-srx")
