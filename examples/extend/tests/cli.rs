//! The `sr-extend` binary knows the crate's components: `components`, `check` (with the entry's bounds)
//! and the language server's hover and completion.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn sr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sr-extend"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run sr-extend")
}

#[test]
fn components_and_check_know_the_new_components() {
    let out = sr(&["components", "dataset"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("spiral "), "{out:?}");
    let out = sr(&["components", "mapper.scaled_points"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scale  float (default 1.0, (0.0, 100.0])"), "{text}");

    let out = sr(&["check", "spiral.srx"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = sr(&["check", "spiral.srx", "--set", "data.train.points=0", "--color", "never"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("E0313") && err.contains("`points` of `spiral` is out of range"), "{err}");
}

#[test]
fn the_language_server_hovers_and_completes_them() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sr-extend"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sr-extend lsp");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut send = |msg: Value| {
        let body = msg.to_string();
        write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        stdin.flush().expect("flush");
    };
    let mut response = |id: i64| -> Value {
        loop {
            let mut len = 0;
            loop {
                let mut line = String::new();
                assert!(stdout.read_line(&mut line).expect("read") > 0, "the server ended");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(n) = line.strip_prefix("Content-Length: ") {
                    len = n.parse().expect("a length");
                }
            }
            let mut body = vec![0; len];
            stdout.read_exact(&mut body).expect("a body");
            let msg: Value = serde_json::from_slice(&body).expect("JSON");
            if msg["id"] == json!(id) {
                return msg["result"].clone();
            }
        }
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("spiral.srx");
    let text = std::fs::read_to_string(&path).expect("spiral.srx");
    let uri = format!("file://{}", path.display());
    let at = |needle: &str| {
        let offset = text.find(needle).expect("needle") + needle.len();
        let line = text[..offset].matches('\n').count();
        let character = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1);
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } })
    };
    send(
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "processId": null, "rootUri": null, "capabilities": {} } }),
    );
    response(1);
    send(json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }));
    send(
        json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen", "params": { "textDocument": { "uri": uri, "languageId": "srx", "version": 1, "text": text } } }),
    );

    send(
        json!({ "jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": at("data train = spi") }),
    );
    let hover = response(2);
    let value = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(value.contains("points on a 2-D spiral"), "{hover}");

    send(
        json!({ "jsonrpc": "2.0", "id": 3, "method": "textDocument/completion", "params": at("mapper = ") }),
    );
    let completion = response(3);
    let labels: Vec<&str> =
        completion.as_array().expect("items").iter().filter_map(|i| i["label"].as_str()).collect();
    assert!(labels.contains(&"scaled_points") && labels.contains(&"identity"), "{labels:?}");
    let _ = child.kill();
    let _ = child.wait();
}
