'use strict';
/**
 * VS Code entry point for `.srx` files: starts the `sr lsp` language server over stdio when the `sr`
 * binary (setting `sr.path`) can be found, and always provides bracket and comment folding. Highlighting,
 * snippets and editing rules are declarative (see package.json).
 */

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');
const { findExecutable } = require('./lib/executable');
const { foldingRanges } = require('./lib/folding');

/** @type {LanguageClient | null} */
let client = null;
/** @type {vscode.OutputChannel | null} */
let output = null;

const SELECTOR = [
  { scheme: 'file', language: 'srx' },
  { scheme: 'untitled', language: 'srx' },
];

/** Starts the language server if enabled and found; failures are logged, never thrown. */
async function startServer() {
  const config = vscode.workspace.getConfiguration('sr');
  if (!config.get('lsp.enable', true)) {
    output.appendLine('sr language server disabled by the setting sr.lsp.enable.');
    return;
  }
  const configured = config.get('path', 'sr') || 'sr';
  const command = findExecutable(configured);
  if (!command) {
    output.appendLine(
      `sr language server not started: "${configured}" was not found. ` +
        'Install sr (cargo install --path . in the sr repository) or set sr.path to the binary.',
    );
    return;
  }

  const serverOptions = { command, args: ['lsp'], transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: SELECTOR,
    outputChannel: output,
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/*.srx') },
  };
  const started = new LanguageClient('sr', 'sr language server', serverOptions, clientOptions);
  try {
    await started.start();
    client = started;
    output.appendLine(`sr language server started: ${command} lsp`);
  } catch (err) {
    output.appendLine(`sr language server failed to start (${command} lsp): ${err && err.message ? err.message : err}`);
  }
}

/** Stops the running language server, if any. */
async function stopServer() {
  const running = client;
  client = null;
  if (running) {
    try {
      await running.stop();
    } catch (err) {
      output.appendLine(`sr language server did not stop cleanly: ${err && err.message ? err.message : err}`);
    }
  }
}

async function restartServer() {
  await stopServer();
  await startServer();
}

/** Adapts the pure folding computation to the VS Code API. */
const foldingProvider = {
  provideFoldingRanges(document) {
    return foldingRanges(document.getText()).map((r) => {
      const kind =
        r.kind === 'comment'
          ? vscode.FoldingRangeKind.Comment
          : r.kind === 'imports'
            ? vscode.FoldingRangeKind.Imports
            : undefined;
      return new vscode.FoldingRange(r.start, r.end, kind);
    });
  },
};

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  output = vscode.window.createOutputChannel('sr');
  context.subscriptions.push(output);
  context.subscriptions.push(vscode.languages.registerFoldingRangeProvider(SELECTOR, foldingProvider));
  context.subscriptions.push(vscode.commands.registerCommand('sr.restartServer', restartServer));
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('sr.path') || e.affectsConfiguration('sr.lsp.enable')) {
        restartServer();
      }
    }),
  );
  await startServer();
}

function deactivate() {
  return stopServer();
}

module.exports = { activate, deactivate };
