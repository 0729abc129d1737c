'use strict';
/**
 * Folding ranges for `.srx` text, computed without the language server: multi-line `{}`, `[]` and `()`
 * groups, multi-line block comments, runs of line comments and runs of `use` imports. Brackets inside
 * strings and comments are ignored. Pure (no `vscode` dependency) so it can be unit tested.
 */

const OPENERS = { '{': '}', '[': ']', '(': ')' };
const CLOSERS = new Set(['}', ']', ')']);

/**
 * @typedef {{ start: number, end: number, kind?: 'comment' | 'imports' }} Range
 *   Zero-based lines; `end` is the last line hidden-or-shown inside the fold (the closing bracket's line
 *   stays visible when it starts with the bracket).
 */

/**
 * Computes folding ranges for a whole document.
 * @param {string} text
 * @returns {Range[]} ranges sorted by start line
 */
function foldingRanges(text) {
  const lines = text.split(/\r?\n/);
  const ranges = [];
  const stack = [];
  let commentDepth = 0;
  let commentStart = 0;

  for (let line = 0; line < lines.length; line++) {
    const s = lines[line];
    let inString = false;
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      const next = s[i + 1];
      if (commentDepth > 0) {
        if (c === '/' && next === '*') {
          commentDepth++;
          i++;
        } else if (c === '*' && next === '/') {
          commentDepth--;
          i++;
          if (commentDepth === 0 && line > commentStart) {
            ranges.push({ start: commentStart, end: line, kind: 'comment' });
          }
        }
      } else if (inString) {
        if (c === '\\') {
          i++;
        } else if (c === '"') {
          inString = false;
        }
      } else if (c === '"') {
        inString = true;
      } else if (c === '/' && next === '/') {
        break;
      } else if (c === '/' && next === '*') {
        commentDepth = 1;
        commentStart = line;
        i++;
      } else if (OPENERS[c]) {
        stack.push({ close: OPENERS[c], line });
      } else if (CLOSERS.has(c)) {
        // Pop to the matching opener; a stray closer with no opener on the stack is skipped.
        const at = findLast(stack, (o) => o.close === c);
        if (at >= 0) {
          const open = stack[at];
          stack.length = at;
          const closesLine = s.slice(0, i).trim() === '';
          const end = closesLine ? line - 1 : line;
          if (end > open.line) {
            ranges.push({ start: open.line, end });
          }
        }
      }
    }
  }

  ranges.push(...runs(lines, (s) => /^\s*\/\//.test(s), 'comment'));
  ranges.push(...runs(lines, (s) => /^\s*use\b/.test(s), 'imports'));
  return ranges.sort((a, b) => a.start - b.start || b.end - a.end);
}

/** Index of the last element satisfying `pred`, or -1. */
function findLast(xs, pred) {
  for (let i = xs.length - 1; i >= 0; i--) {
    if (pred(xs[i])) return i;
  }
  return -1;
}

/** Ranges over maximal runs (two lines or more) of consecutive lines matching `pred`. */
function runs(lines, pred, kind) {
  const out = [];
  let start = -1;
  for (let line = 0; line <= lines.length; line++) {
    const hit = line < lines.length && pred(lines[line]);
    if (hit && start < 0) {
      start = line;
    } else if (!hit && start >= 0) {
      if (line - 1 > start) out.push({ start, end: line - 1, kind });
      start = -1;
    }
  }
  return out;
}

module.exports = { foldingRanges };
