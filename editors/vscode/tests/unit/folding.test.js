'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { foldingRanges } = require('../../lib/folding');

test('nested braces fold up to the line before the closing brace', () => {
  const text = ['experiment e {', '  train {', '    steps = 1', '  }', '}'].join('\n');
  assert.deepEqual(foldingRanges(text), [
    { start: 0, end: 3 },
    { start: 1, end: 2 },
  ]);
});

test('brackets in strings and comments are ignored', () => {
  const text = [
    'experiment e {',
    '  name = "{ not a block"  // } nor this',
    '  /* { */ x = [',
    '    1, 2',
    '  ]',
    '}',
  ].join('\n');
  assert.deepEqual(foldingRanges(text), [
    { start: 0, end: 4 },
    { start: 2, end: 3 },
  ]);
});

test('escaped quotes do not end a string', () => {
  const text = ['a = "\\" {"', 'b = {', '  c = 1', '}'].join('\n');
  assert.deepEqual(foldingRanges(text), [{ start: 1, end: 2 }]);
});

test('a closing bracket after content keeps its line inside the fold', () => {
  const text = ['x = (', '  1, 2)', 'y = 3'].join('\n');
  assert.deepEqual(foldingRanges(text), [{ start: 0, end: 1 }]);
});

test('nested block comments fold as one comment', () => {
  const text = ['/* a', '  /* b */', '  c */', 'x = 1'].join('\n');
  assert.deepEqual(foldingRanges(text), [{ start: 0, end: 2, kind: 'comment' }]);
});

test('runs of line comments and of imports fold; single lines do not', () => {
  const text = ['/// doc', '/// more', 'use std.a', 'use std.b', 'use std.c', '// one', 'x = 1'].join('\n');
  assert.deepEqual(foldingRanges(text), [
    { start: 0, end: 1, kind: 'comment' },
    { start: 2, end: 4, kind: 'imports' },
  ]);
});

test('unbalanced input yields no bogus ranges and does not throw', () => {
  assert.deepEqual(foldingRanges('}\n)\nexperiment e {\n  x = 1'), []);
  assert.deepEqual(foldingRanges(''), []);
  assert.deepEqual(foldingRanges('a = "unterminated {\nb = 1'), []);
});
