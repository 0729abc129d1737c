'use strict';
/**
 * The grammar highlights every keyword, dtype and component that the docs define (docs/LANGUAGE.md,
 * docs/COMPONENTS.md). The Rust test tests/editor_sync.rs checks the same against the pest grammar and
 * the compiler's catalogue.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { scopesOf } = require('./tokenize');

const DOCS = path.join(__dirname, '..', '..', '..', '..', 'docs');

/** Keywords listed after "Keywords:" in the Lexical section of LANGUAGE.md. */
function documentedKeywords() {
  const text = fs.readFileSync(path.join(DOCS, 'LANGUAGE.md'), 'utf8');
  const m = /Keywords:([\s\S]*?)(?:\n-|\n\n)/.exec(text);
  assert.ok(m, 'LANGUAGE.md has a "Keywords:" list');
  return [...m[1].matchAll(/`([A-Za-z_]+)`/g)].map((x) => x[1]);
}

/** Dtypes listed as "(dtypes `f32 f16 ...`)" in LANGUAGE.md. */
function documentedDtypes() {
  const text = fs.readFileSync(path.join(DOCS, 'LANGUAGE.md'), 'utf8');
  const m = /dtypes `([^`]+)`/.exec(text);
  assert.ok(m, 'LANGUAGE.md lists dtypes');
  return m[1].split(/\s+/).filter((x) => x);
}

/** Removes parenthesised text (nested) and upstream names in brackets from a bullet. */
function stripAsides(s) {
  let out = '';
  let depth = 0;
  for (const c of s) {
    if (c === '(') depth++;
    else if (c === ')') depth = Math.max(0, depth - 1);
    else if (depth === 0) out += c;
  }
  return out.replace(/ \[[a-z_]+\]/g, '');
}

/**
 * Component names of COMPONENTS.md: in every `## kind` section but the train keys, each bullet starts with
 * one or more backticked names (separated by commas), optionally followed by " — description"; a bullet
 * may hold several such entries separated by ";".
 */
function documentedComponents() {
  const text = fs.readFileSync(path.join(DOCS, 'COMPONENTS.md'), 'utf8');
  const names = new Set();
  let inComponents = false;
  // Join wrapped bullets: an indented line continues the line above.
  const lines = text.replace(/\n {2,}(?=\S)/g, ' ').split('\n');
  for (const line of lines) {
    if (line.startsWith('## ')) {
      inComponents = !/train block keys/.test(line);
      continue;
    }
    if (!inComponents || !line.startsWith('- ')) continue;
    for (const entry of stripAsides(line.slice(2)).split(';')) {
      const head = entry.split(' — ')[0].trim().replace(/\.$/, '');
      if (/^`[a-z0-9_]+`(\s*,\s*`[a-z0-9_]+`)*$/.test(head)) {
        for (const m of head.matchAll(/`([a-z0-9_]+)`/g)) names.add(m[1]);
      }
    }
  }
  return [...names];
}

test('the docs parse into the expected lists', () => {
  assert.ok(documentedKeywords().length >= 11);
  assert.deepEqual(documentedDtypes(), ['f32', 'f16', 'bf16', 'f64', 'u8', 'i64']);
  const components = documentedComponents();
  for (const n of ['sudoku', 'counting_stars', 'linear', 'mse_to_data', 'cosine_logsnr', 'scheduled']) {
    assert.ok(components.includes(n), `parsed ${n}`);
  }
  for (const n of ['split', 'sudoku_distance', 'continuous_cosine_logsnr', 'steps']) {
    assert.ok(!components.includes(n), `did not parse ${n}`);
  }
});

test('every documented keyword is highlighted as a keyword or language constant', async () => {
  for (const kw of documentedKeywords()) {
    const scopes = await scopesOf(`${kw} `, kw);
    assert.ok(scopes, `${kw} is one token`);
    assert.ok(
      scopes.some((s) => s.startsWith('keyword.') || s.startsWith('constant.language.')),
      `${kw}: ${scopes.join(' ')}`,
    );
  }
});

test('every documented dtype is highlighted as a storage type in a shape', async () => {
  for (const dt of documentedDtypes()) {
    const scopes = await scopesOf(`variables = ${dt}[81, 9]`, dt);
    assert.ok(scopes && scopes.includes('storage.type.dtype.srx'), `${dt}: ${scopes}`);
  }
});

test('every documented component is highlighted as a component, bare and with overrides', async () => {
  const components = documentedComponents();
  assert.ok(components.length >= 50, `found ${components.length} components`);
  for (const name of components) {
    for (const src of [`x = ${name}`, `x = ${name} { a = 1 }`]) {
      const scopes = await scopesOf(src, name);
      assert.ok(scopes && scopes.includes('support.function.component.srx'), `${src}: ${scopes}`);
    }
  }
});
