#!/usr/bin/env bash
# Installs the extension's npm dependencies and runs its tests (grammar assertions and unit tests).
# Usage: bash editors/vscode/test.sh   (from anywhere; needs node >= 18 and npm)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v npm >/dev/null 2>&1; then
  echo "editors/vscode: npm not found; install Node.js >= 18 to run the editor tests" >&2
  exit 1
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
npm test
