//! `sr lsp` end to end: the built binary spoken to over stdio with JSON-RPC (Content-Length framing).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sr"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sr lsp");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(n) = line.strip_prefix("Content-Length: ") {
                        len = n.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                if tx.send(serde_json::from_slice(&body).expect("JSON body")).is_err() {
                    return;
                }
            }
        });
        Client { child, stdin, messages, next_id: 0 }
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Waits for the first message satisfying `pred`, skipping others; fails after the timeout.
    fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) if pred(&m) => return m,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("timed out waiting for {what}");
                }
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let resp = self.wait(method, |m| m["id"] == json!(id));
        assert!(resp.get("error").is_none(), "{method} failed: {resp}");
        resp["result"].clone()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

const URI: &str = "file:///tmp/sr-lsp-test/main.srx";

const DOC: &str = "experiment e {\n  seed=1\n  data train = sudoku { split = \"train\" }\n  mapper = grid_cells\n  flow = rectifed\n  denoiser = transformer { depth = 2 }\n  train { steps = 10 }\n}\n";

fn position_of(text: &str, needle: &str) -> Value {
    let offset = text.find(needle).expect("needle") + needle.len();
    let line = text[..offset].matches('\n').count();
    let col = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1);
    json!({ "line": line, "character": col })
}

#[test]
fn a_session_over_stdio() {
    let mut c = Client::start();
    let init = c.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": {} }));
    let caps = &init["capabilities"];
    assert_eq!(caps["hoverProvider"], json!(true));
    assert_eq!(caps["documentFormattingProvider"], json!(true));
    c.notify("initialized", json!({}));

    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "srx", "version": 1, "text": DOC } }),
    );
    let diags = c.wait("diagnostics", |m| m["method"] == "textDocument/publishDiagnostics");
    assert_eq!(diags["params"]["uri"], URI);
    let list = diags["params"]["diagnostics"].as_array().unwrap();
    let flow = list.iter().find(|d| d["code"] == "E0301").unwrap_or_else(|| panic!("no E0301 in {list:?}"));
    assert!(flow["message"].as_str().unwrap().contains("rectified"), "{flow}");
    assert_eq!(flow["range"]["start"], json!({ "line": 4, "character": 9 }));
    assert_eq!(flow["severity"], json!(1));

    let text_pos =
        |needle: &str| json!({ "textDocument": { "uri": URI }, "position": position_of(DOC, needle) });
    let hover = c.request("textDocument/hover", text_pos("train { st"));
    let value = hover["contents"]["value"].as_str().unwrap();
    assert!(value.contains("steps") && value.contains("optimizer steps"), "{value}");

    let completion = c.request("textDocument/completion", text_pos("flow = "));
    let labels: Vec<&str> =
        completion.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    assert!(labels.contains(&"rectified"), "{labels:?}");
    assert!(!labels.contains(&"transformer"), "{labels:?}");

    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": URI }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    let edits = edits.as_array().unwrap();
    assert_eq!(edits.len(), 1);
    assert!(edits[0]["newText"].as_str().unwrap().contains("  seed = 1\n"), "{edits:?}");

    // Fixing the name clears the error.
    let fixed = DOC.replace("rectifed", "rectified");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": URI, "version": 2 }, "contentChanges": [{ "text": fixed }] }),
    );
    let diags = c.wait("new diagnostics", |m| m["method"] == "textDocument/publishDiagnostics");
    let list = diags["params"]["diagnostics"].as_array().unwrap();
    assert!(list.iter().all(|d| d["code"] != "E0301"), "{list:?}");

    let shutdown = c.request("shutdown", Value::Null);
    assert_eq!(shutdown, Value::Null);
    c.notify("exit", Value::Null);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = c.child.try_wait().unwrap() {
            assert!(status.success(), "sr lsp exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "sr lsp did not exit after `exit`");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bad JSON, a body that is not an object, a missing or absurd Content-Length: each is skipped (a request
/// with an id is answered with an error) and the server keeps serving.
#[test]
fn malformed_messages_do_not_end_the_server() {
    let mut c = Client::start();
    c.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": {} }));
    c.notify("initialized", json!({}));
    let raw = |body: &str| format!("Content-Length: {}\r\n\r\n{body}", body.len());
    let garbage = [
        raw("{not json"),
        raw("[1, 2, 3]"),
        raw("\"a string\""),
        raw(r#"{"jsonrpc":"2.0","id":99,"method":12}"#),
        "Content-Type: text/plain\r\n\r\n".into(),
        "Content-Length: 1000000000000\r\n\r\n".into(),
        "Content-Length: nope\r\n\r\n".into(),
    ]
    .concat();
    c.stdin.write_all(garbage.as_bytes()).unwrap();
    c.stdin.flush().unwrap();
    let answer = c.wait("the error answer to a bad request", |m| m["id"] == json!(99));
    assert_eq!(answer["error"]["code"], json!(-32600), "{answer}");
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "srx", "version": 1, "text": DOC } }),
    );
    let diags = c.wait("diagnostics", |m| m["method"] == "textDocument/publishDiagnostics");
    assert_eq!(diags["params"]["uri"], URI);
    let hover = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": URI }, "position": position_of(DOC, "train { st") }),
    );
    assert!(hover["contents"]["value"].as_str().unwrap().contains("steps"), "{hover}");
    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
}
