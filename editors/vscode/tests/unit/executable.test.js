'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { findExecutable, isExecutableFile } = require('../../lib/executable');

test('a bare name is looked up on PATH in order', () => {
  const present = new Set(['/b/sr', '/c/sr']);
  const found = findExecutable('sr', {
    env: { PATH: '/a:/b:/c' },
    platform: 'linux',
    isExecutable: (f) => present.has(f),
  });
  assert.equal(found, '/b/sr');
});

test('a missing binary gives null', () => {
  const opts = { env: { PATH: '/a:/b' }, platform: 'linux', isExecutable: () => false };
  assert.equal(findExecutable('sr', opts), null);
  assert.equal(findExecutable('', opts), null);
  assert.equal(findExecutable('/opt/sr', opts), null);
});

test('paths are checked as given; ~ expands to HOME', () => {
  const seen = [];
  const isExecutable = (f) => {
    seen.push(f);
    return true;
  };
  assert.equal(findExecutable('/opt/sr/bin/sr', { env: {}, platform: 'linux', isExecutable }), '/opt/sr/bin/sr');
  assert.equal(findExecutable('~/bin/sr', { env: { HOME: '/home/u' }, platform: 'linux', isExecutable }), '/home/u/bin/sr');
});

test('Windows tries PATHEXT extensions', () => {
  const found = findExecutable('sr', {
    env: { PATH: 'C:\\tools;C:\\cargo\\bin', PATHEXT: '.COM;.EXE' },
    platform: 'win32',
    isExecutable: (f) => f === 'C:\\cargo\\bin\\sr.EXE',
  });
  assert.equal(found, 'C:\\cargo\\bin\\sr.EXE');
});

test('isExecutableFile needs a regular file with an execute bit', { skip: process.platform === 'win32' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srx-exe-'));
  try {
    const file = path.join(dir, 'sr');
    fs.writeFileSync(file, '#!/bin/sh\n');
    fs.chmodSync(file, 0o644);
    assert.equal(isExecutableFile(file), false);
    fs.chmodSync(file, 0o755);
    assert.equal(isExecutableFile(file), true);
    assert.equal(isExecutableFile(dir), false);
    assert.equal(isExecutableFile(path.join(dir, 'missing')), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
