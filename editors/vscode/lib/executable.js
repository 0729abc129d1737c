'use strict';
/**
 * Resolution of the `sr` binary named by the `sr.path` setting. Pure apart from file-system checks, which
 * go through an injectable `isExecutable` so tests need no real binaries.
 */

const fs = require('fs');
const os = require('os');
const path = require('path');

/**
 * Whether `file` exists, is a regular file and (off Windows) has an execute bit.
 * @param {string} file
 * @returns {boolean}
 */
function isExecutableFile(file) {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) return false;
    if (process.platform === 'win32') return true;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds the executable for `command`: a path (absolute, relative, or starting with `~`) is checked as is;
 * a bare name is looked up on `PATH` (with `PATHEXT` extensions on Windows).
 * @param {string} command the configured value, e.g. `sr` or `/opt/sr/bin/sr`
 * @param {{ env?: NodeJS.ProcessEnv, platform?: string, isExecutable?: (file: string) => boolean }} [opts]
 * @returns {string | null} the absolute path of the executable, or null when none is found
 */
function findExecutable(command, opts = {}) {
  const env = opts.env || process.env;
  const platform = opts.platform || process.platform;
  const isExecutable = opts.isExecutable || isExecutableFile;
  const p = platform === 'win32' ? path.win32 : path.posix;
  const name = (command || '').trim();
  if (name === '') return null;

  const exts =
    platform === 'win32'
      ? ['', ...(env.PATHEXT || '.COM;.EXE;.BAT;.CMD').split(';').filter((e) => e !== '')]
      : [''];
  const candidates = (base) => exts.map((e) => base + e);

  if (name === '~' || name.startsWith('~/') || name.startsWith('~\\')) {
    const full = p.join(env.HOME || os.homedir(), name.slice(1));
    return candidates(full).find(isExecutable) || null;
  }
  if (name.includes('/') || (platform === 'win32' && name.includes('\\'))) {
    const full = p.resolve(name);
    return candidates(full).find(isExecutable) || null;
  }
  const dirs = (env.PATH || env.Path || '').split(p.delimiter).filter((d) => d !== '');
  for (const dir of dirs) {
    const found = candidates(p.join(dir, name)).find(isExecutable);
    if (found) return found;
  }
  return null;
}

module.exports = { findExecutable, isExecutableFile };
