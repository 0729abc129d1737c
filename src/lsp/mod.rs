//! `sr lsp`: a language server for `.srx` files over stdio.
//!
//! Diagnostics come from the same pipeline as `sr check` (parse → resolve → check), with imports read
//! from the editor's unsaved buffers first; hover and completion come from the component catalogue;
//! go-to-definition finds presets, experiments and `use "file"` targets; formatting is `sr fmt`; the
//! outline lists items and statements; quick fixes apply did-you-mean suggestions.

mod analysis;
mod context;
mod outline;
pub mod transport;

use analysis::{diagnose, path_to_uri, source_name, LineIndex};
use context::Scope;
use lsp_server::{Connection, ExtractError, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, DidSaveTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{
    CodeActionRequest, Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest,
    PrepareRenameRequest, Rename, Request as _,
};
use lsp_types::{
    CompletionOptions, CompletionParams, CompletionResponse, DocumentFormattingParams, GotoDefinitionParams,
    GotoDefinitionResponse, Hover, HoverContents, HoverParams, HoverProviderCapability, OneOf,
    PublishDiagnosticsParams, SaveOptions, ServerCapabilities, TextDocumentSyncCapability,
    TextDocumentSyncKind, TextDocumentSyncOptions, TextDocumentSyncSaveOptions, TextEdit, Uri,
};
use std::collections::{HashMap, HashSet};
use std::error::Error;

/// Runs the language server on stdin/stdout until the client sends `shutdown` and `exit` (or closes
/// the input). Malformed messages are skipped with a note on standard error (see [`transport`]).
pub fn run_stdio() -> Result<(), Box<dyn Error>> {
    let (server, client) = Connection::memory();
    let replies = server.sender.clone();
    let to_server = client.sender;
    // The reader stops after `exit` or at the end of the input; it is not joined, as it may be blocked
    // on a standard input that the client keeps open.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            match transport::read_frame(&mut stdin) {
                Ok(Some(transport::Frame::Message(m))) => {
                    let exit = matches!(&m, Message::Notification(n) if n.method == "exit");
                    if to_server.send(m).is_err() || exit {
                        return;
                    }
                }
                Ok(Some(transport::Frame::Skipped { reason, reply })) => {
                    eprintln!("sr lsp: skipped a malformed message: {reason}");
                    if let Some(r) = reply {
                        let _ = replies.send(Message::Response(r));
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    eprintln!("sr lsp: cannot read standard input: {e}");
                    return;
                }
            }
        }
    });
    let from_server = client.receiver;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        for m in from_server {
            m.write(&mut stdout)?;
        }
        Ok(())
    });
    let served = serve(&server);
    drop(server);
    writer.join().map_err(|_| "the writer thread panicked")??;
    served.map_err(|e| -> Box<dyn Error> { e })
}

/// What the server announces it can do.
fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
            open_close: Some(true),
            change: Some(TextDocumentSyncKind::FULL),
            save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions { include_text: Some(false) })),
            ..Default::default()
        })),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["=".into(), "{".into(), ".".into(), " ".into()]),
            ..Default::default()
        }),
        definition_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(lsp_types::RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        code_action_provider: Some(lsp_types::CodeActionProviderCapability::Options(
            lsp_types::CodeActionOptions {
                code_action_kinds: Some(vec![lsp_types::CodeActionKind::QUICKFIX]),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Serves one client on `connection`: the handshake, then messages until `shutdown`.
pub fn serve(connection: &Connection) -> Result<(), Box<dyn Error + Sync + Send>> {
    let caps = serde_json::to_value(capabilities())?;
    connection.initialize(caps)?;
    let mut server = Server { docs: HashMap::new(), uris: HashMap::new(), published: HashSet::new() };
    for msg in &connection.receiver {
        match msg {
            Message::Request(req) => {
                if connection.handle_shutdown(&req)? {
                    return Ok(());
                }
                let resp = server.request(req);
                connection.sender.send(Message::Response(resp))?;
            }
            Message::Notification(n) => {
                if server.notification(n) {
                    for note in server.diagnostics() {
                        connection.sender.send(Message::Notification(note))?;
                    }
                }
            }
            Message::Response(_) => {}
        }
    }
    Ok(())
}

struct Server {
    /// Open documents by source name (a path for files).
    docs: HashMap<String, String>,
    /// The URI of each open document, by source name.
    uris: HashMap<String, Uri>,
    /// Source names that were sent a non-empty diagnostics list last time.
    published: HashSet<String>,
}

fn extract<P: serde::de::DeserializeOwned>(n: Notification, method: &str) -> Option<P> {
    if n.method != method {
        return None;
    }
    serde_json::from_value(n.params).ok()
}

impl Server {
    /// Applies a notification; true when the documents changed and diagnostics are due.
    fn notification(&mut self, n: Notification) -> bool {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Some(p) = extract::<lsp_types::DidOpenTextDocumentParams>(n, DidOpenTextDocument::METHOD)
                else {
                    return false;
                };
                let name = source_name(&p.text_document.uri);
                self.uris.insert(name.clone(), p.text_document.uri);
                self.docs.insert(name, p.text_document.text);
                true
            }
            DidChangeTextDocument::METHOD => {
                let Some(p) =
                    extract::<lsp_types::DidChangeTextDocumentParams>(n, DidChangeTextDocument::METHOD)
                else {
                    return false;
                };
                let name = source_name(&p.text_document.uri);
                // Full synchronisation: the last change holds the whole text.
                match p.content_changes.into_iter().last() {
                    Some(change) if self.docs.contains_key(&name) => {
                        self.docs.insert(name, change.text);
                        true
                    }
                    _ => false,
                }
            }
            DidSaveTextDocument::METHOD => true,
            DidCloseTextDocument::METHOD => {
                let Some(p) =
                    extract::<lsp_types::DidCloseTextDocumentParams>(n, DidCloseTextDocument::METHOD)
                else {
                    return false;
                };
                let name = source_name(&p.text_document.uri);
                self.docs.remove(&name);
                true
            }
            _ => false,
        }
    }

    /// Diagnostics of every open document and the files they import, including empty lists for
    /// files whose problems went away.
    fn diagnostics(&mut self) -> Vec<Notification> {
        let mut all: HashMap<String, Vec<lsp_types::Diagnostic>> = HashMap::new();
        for (name, text) in &self.docs {
            for (file, diags) in diagnose(name, text, &self.docs) {
                let list = all.entry(file).or_default();
                for d in diags {
                    if !list.contains(&d) {
                        list.push(d);
                    }
                }
            }
        }
        for stale in self.published.drain() {
            all.entry(stale).or_default();
        }
        let mut out = Vec::new();
        for (file, diagnostics) in all {
            let Some(uri) = self.uris.get(&file).cloned().or_else(|| path_to_uri(&file)) else { continue };
            if !diagnostics.is_empty() {
                self.published.insert(file);
            }
            let params = PublishDiagnosticsParams { uri, diagnostics, version: None };
            out.push(Notification::new(PublishDiagnostics::METHOD.to_string(), params));
        }
        out
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        let result = match req.method.as_str() {
            HoverRequest::METHOD => self.handle::<HoverRequest>(req, |s, p| s.hover(p)),
            Completion::METHOD => self.handle::<Completion>(req, |s, p| s.complete(p)),
            GotoDefinition::METHOD => self.handle::<GotoDefinition>(req, |s, p| s.definition(p)),
            Formatting::METHOD => self.handle::<Formatting>(req, |s, p| s.format(p)),
            DocumentSymbolRequest::METHOD => self.handle::<DocumentSymbolRequest>(req, |s, p| {
                let (_, text) = s.doc(&p.text_document.uri)?;
                Some(lsp_types::DocumentSymbolResponse::Nested(outline::document_symbols(text)))
            }),
            PrepareRenameRequest::METHOD => self.handle::<PrepareRenameRequest>(req, |s, p| {
                let (_, text) = s.doc(&p.text_document.uri)?;
                let index = LineIndex::new(text);
                let offset = index.offset(p.position);
                let spans = outline::rename_spans(text, offset)?;
                let &(start, end) = spans.iter().find(|(a, b)| *a <= offset && offset <= *b)?;
                Some(lsp_types::PrepareRenameResponse::Range(index.range(start, end)))
            }),
            Rename::METHOD => self.handle::<Rename>(req, |s, p| {
                let uri = p.text_document_position.text_document.uri;
                let (_, text) = s.doc(&uri)?;
                if !outline::is_identifier(&p.new_name) {
                    return None;
                }
                let index = LineIndex::new(text);
                let spans = outline::rename_spans(text, index.offset(p.text_document_position.position))?;
                let edits = spans
                    .into_iter()
                    .map(|(a, b)| TextEdit { range: index.range(a, b), new_text: p.new_name.clone() })
                    .collect();
                Some(lsp_types::WorkspaceEdit {
                    changes: Some(HashMap::from([(uri, edits)])),
                    ..Default::default()
                })
            }),
            CodeActionRequest::METHOD => self.handle::<CodeActionRequest>(req, |_, p| {
                Some(outline::quick_fixes(&p.text_document.uri, &p.context.diagnostics))
            }),
            _ => {
                return Response::new_err(
                    id,
                    lsp_server::ErrorCode::MethodNotFound as i32,
                    req.method.clone(),
                );
            }
        };
        match result {
            Ok(value) => Response { id, result: Some(value), error: None },
            Err(message) => Response::new_err(id, lsp_server::ErrorCode::InvalidParams as i32, message),
        }
    }

    fn handle<R: lsp_types::request::Request>(
        &mut self,
        req: Request,
        f: impl FnOnce(&Self, R::Params) -> R::Result,
    ) -> Result<serde_json::Value, String> {
        let (_, params): (RequestId, R::Params) = req.extract(R::METHOD).map_err(|e| match e {
            ExtractError::JsonError { error, .. } => error.to_string(),
            ExtractError::MethodMismatch(r) => r.method,
        })?;
        serde_json::to_value(f(self, params)).map_err(|e| e.to_string())
    }

    fn doc(&self, uri: &Uri) -> Option<(String, &str)> {
        let name = source_name(uri);
        let text = self.docs.get(&name)?;
        Some((name, text.as_str()))
    }

    fn hover(&self, p: HoverParams) -> Option<Hover> {
        let (name, text) = self.doc(&p.text_document_position_params.text_document.uri)?;
        let index = LineIndex::new(text);
        let offset = index.offset(p.text_document_position_params.position);
        let scope = Scope::new(&name, text, &self.docs);
        let (contents, (s, e)) = context::hover(text, offset, &scope)?;
        Some(Hover { contents: HoverContents::Markup(contents), range: Some(index.range(s, e)) })
    }

    fn complete(&self, p: CompletionParams) -> Option<CompletionResponse> {
        let (name, text) = self.doc(&p.text_document_position.text_document.uri)?;
        let offset = LineIndex::new(text).offset(p.text_document_position.position);
        let scope = Scope::new(&name, text, &self.docs);
        Some(CompletionResponse::Array(context::complete(text, offset, &scope)))
    }

    fn definition(&self, p: GotoDefinitionParams) -> Option<GotoDefinitionResponse> {
        let (name, text) = self.doc(&p.text_document_position_params.text_document.uri)?;
        let offset = LineIndex::new(text).offset(p.text_document_position_params.position);
        let scope = Scope::new(&name, text, &self.docs);
        context::definition(&name, text, offset, &scope, &self.docs).map(GotoDefinitionResponse::Scalar)
    }

    /// The whole document replaced by its formatted text; nothing when it is already formatted or
    /// has syntax errors (the diagnostics already show those).
    fn format(&self, p: DocumentFormattingParams) -> Option<Vec<TextEdit>> {
        let (_, text) = self.doc(&p.text_document.uri)?;
        let formatted = sr_compiler::format_source(text).ok()?;
        if formatted == text {
            return Some(vec![]);
        }
        Some(vec![TextEdit { range: LineIndex::new(text).full_range(), new_text: formatted }])
    }
}
