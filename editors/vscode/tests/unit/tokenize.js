'use strict';
/** Test helper: loads the srx TextMate grammar with vscode-textmate and tokenizes text. */

const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const GRAMMAR = path.join(__dirname, '..', '..', 'syntaxes', 'srx.tmLanguage.json');
let grammarPromise = null;

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === 'source.srx' ? vsctm.parseRawGrammar(fs.readFileSync(GRAMMAR, 'utf8'), GRAMMAR) : null,
  });
  return registry.loadGrammar('source.srx');
}

/**
 * Tokenizes `text` line by line.
 * @returns {Promise<{ line: number, text: string, scopes: string[] }[]>}
 */
async function tokenize(text) {
  grammarPromise = grammarPromise || loadGrammar();
  const grammar = await grammarPromise;
  const out = [];
  let stack = vsctm.INITIAL;
  text.split('\n').forEach((src, line) => {
    const r = grammar.tokenizeLine(src, stack);
    stack = r.ruleStack;
    for (const t of r.tokens) {
      out.push({ line, text: src.slice(t.startIndex, t.endIndex), scopes: t.scopes });
    }
  });
  return out;
}

/** Scopes of the first token whose text is exactly `word` on `line` of `text`. */
async function scopesOf(text, word, line = 0) {
  const tok = (await tokenize(text)).find((t) => t.line === line && t.text === word);
  return tok ? tok.scopes : null;
}

module.exports = { tokenize, scopesOf };
