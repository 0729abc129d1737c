//! Content-Length framing of language-server messages on a byte stream, robust against malformed input.
//!
//! `lsp-server`'s own stdio transport ends the server on the first bad message (bad JSON, a body that is
//! not an object, a missing header) and reserves whatever `Content-Length` claims. Here every malformed
//! message is skipped (requests with a readable id get an error response), header lines and bodies are
//! bounded, and the server keeps serving.

use lsp_server::{ErrorCode, Message, RequestId, Response};
use std::io::{self, BufRead, Read};

/// Largest message body accepted: a source file (8 MiB) escaped as JSON, with room to spare.
pub const MAX_MESSAGE: u64 = 64 << 20;
/// Longest header line kept; the rest of a longer line is discarded.
const MAX_HEADER_LINE: usize = 4096;

/// One unit read from the stream.
#[derive(Debug)]
pub enum Frame {
    /// A well-formed message.
    Message(Message),
    /// A malformed message, skipped; `reply` answers it when it was a request with a readable id.
    Skipped { reason: String, reply: Option<Response> },
}

/// Reads one line of at most `MAX_HEADER_LINE` bytes (longer ones are cut); `None` at end of input.
fn header_line(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut any = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(any.then_some(line));
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = MAX_HEADER_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        r.consume(used);
        if done {
            return Ok(Some(line));
        }
    }
}

/// Reads the next frame; `Ok(None)` at the end of the input.
pub fn read_frame(r: &mut impl BufRead) -> io::Result<Option<Frame>> {
    let mut length: Option<Result<u64, String>> = None;
    let mut headers = 0usize;
    loop {
        let Some(line) = header_line(r)? else { return Ok(None) };
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if headers == 0 {
                continue;
            }
            break;
        }
        headers += 1;
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                let value = value.trim();
                length = Some(value.parse::<u64>().map_err(|_| format!("bad Content-Length `{value}`")));
            }
        }
    }
    let skipped = |reason: String| Ok(Some(Frame::Skipped { reason, reply: None }));
    let length = match length {
        None => return skipped("a message without a Content-Length header".into()),
        Some(Err(reason)) => return skipped(reason),
        Some(Ok(n)) if n > MAX_MESSAGE => {
            return skipped(format!("a message of {n} bytes (at most {MAX_MESSAGE} are accepted)"))
        }
        Some(Ok(n)) => n,
    };
    // Grown as the bytes arrive: a header's claim alone reserves nothing.
    let mut body = Vec::new();
    r.take(length).read_to_end(&mut body)?;
    if (body.len() as u64) < length {
        return Ok(None);
    }
    Ok(Some(parse_body(&body)))
}

/// A message from its JSON body, or why it is skipped.
fn parse_body(body: &[u8]) -> Frame {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Frame::Skipped { reason: format!("a body that is not JSON ({e})"), reply: None },
    };
    if !value.is_object() {
        return Frame::Skipped { reason: "a body that is not a JSON object".into(), reply: None };
    }
    let id = match value.get("id") {
        Some(serde_json::Value::Number(n)) => {
            n.as_i64().and_then(|n| i32::try_from(n).ok()).map(RequestId::from)
        }
        Some(serde_json::Value::String(s)) => Some(RequestId::from(s.clone())),
        _ => None,
    };
    let invalid = |reason: String| {
        let reply =
            id.clone().map(|id| Response::new_err(id, ErrorCode::InvalidRequest as i32, reason.clone()));
        Frame::Skipped { reason, reply }
    };
    // `Message` is untagged: anything with an `id` would pass as a response, so the kind is decided here.
    match value.get("method") {
        Some(serde_json::Value::String(_)) => {}
        Some(_) => return invalid("not a JSON-RPC message (its `method` is not a string)".into()),
        None if value.get("result").is_none() && value.get("error").is_none() => {
            return invalid("not a JSON-RPC message (no `method`, `result` or `error`)".into())
        }
        None => {}
    }
    match serde_json::from_value::<Message>(value) {
        Ok(m) => Frame::Message(m),
        Err(e) => invalid(format!("not a JSON-RPC message ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(input: &[u8]) -> Vec<String> {
        let mut r = io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        while let Some(f) = read_frame(&mut r).unwrap() {
            out.push(match f {
                Frame::Message(Message::Request(q)) => format!("request {}", q.method),
                Frame::Message(Message::Notification(n)) => format!("notification {}", n.method),
                Frame::Message(Message::Response(_)) => "response".into(),
                Frame::Skipped { reply, .. } => {
                    format!("skipped{}", if reply.is_some() { " (answered)" } else { "" })
                }
            });
            assert!(out.len() <= input.len() + 1, "more frames than bytes");
        }
        out
    }

    fn framed(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn malformed_messages_are_skipped_and_reading_goes_on() {
        let good = framed(r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#);
        let input = [
            framed("{not json"),
            framed("[1, 2]"),
            framed(r#"{"jsonrpc":"2.0","id":3,"method":7}"#),
            framed(r#"{"jsonrpc":"2.0","id":"a"}"#),
            framed(r#"{"jsonrpc":"2.0","id":4,"result":null}"#),
            "X-Other: 1\r\n\r\n".to_string(),
            "Content-Length: 1000000000000\r\n\r\n".to_string(),
            "Content-Length: -4\r\n\r\n".to_string(),
            format!("Content-Type: x\r\n{}\r\n\r\n", &"a".repeat(100_000)),
            "\r\n".into(),
            good.clone(),
            framed(r#"{"jsonrpc":"2.0","id":1,"method":"shutdown"}"#),
        ]
        .concat();
        assert_eq!(
            frames(input.as_bytes()),
            [
                "skipped",
                "skipped",
                "skipped (answered)",
                "skipped (answered)",
                "response",
                "skipped",
                "skipped",
                "skipped",
                "skipped",
                "notification initialized",
                "request shutdown"
            ]
        );
        // A body cut short by the end of the input ends the stream.
        assert_eq!(frames(&good.as_bytes()[..good.len() - 3]), Vec::<String>::new());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Any byte stream is read to its end without a panic, a hang or an allocation it does not hold.
        #[test]
        fn any_stream_is_read_to_its_end(parts in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                (0u64..u64::MAX).prop_map(|n| format!("Content-Length: {n}\r\n\r\n").into_bytes()),
                (0usize..40).prop_map(|n| format!("Content-Length: {n}\r\n\r\n").into_bytes()),
                Just(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}".to_vec()),
                Just(b"\r\n".to_vec()),
            ],
            0..12,
        )) {
            frames(&parts.concat());
        }
    }
}
