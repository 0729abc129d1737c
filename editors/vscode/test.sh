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

# Package the extension (bundled with esbuild) the way it is published, without prompts, and check the
# archive holds the bundle, the licence and the icon.
npm run --silent package
python3 - <<'PY'
import zipfile
names = set(zipfile.ZipFile("dist/srx.vsix").namelist())
need = {"extension/dist/extension.js", "extension/package.json", "extension/images/icon.png",
        "extension/syntaxes/srx.tmLanguage.json"}
missing = need - names
assert not missing, f"srx.vsix lacks {sorted(missing)}"
assert any(n.lower().startswith("extension/license") for n in names), "srx.vsix has no licence"
assert not any("node_modules" in n for n in names), "the bundle replaces node_modules"
print(f"srx.vsix: {len(names)} entries, bundle, licence and icon present")
PY
