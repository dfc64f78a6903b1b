//! A guard in front of tower-lsp's transport.
//!
//! tower-lsp 0.20 loses the messages that follow a frame whose body is not a JSON-RPC message (its
//! codec drops its buffer on a decode error), so one bad frame from a client would leave the server
//! deaf. This layer reads the frames itself, hands only well-formed messages to tower-lsp, and
//! answers the others with the JSON-RPC error the spec asks for (`-32700` parse error, `-32600`
//! invalid request). Bad headers are skipped up to the next frame. Everything the server writes
//! goes out through one writer, frame by frame, so error answers never split a message.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Frames larger than this are refused (and skipped).
pub const MAX_FRAME: usize = 1 << 30;

/// Header lines longer than this are skipped without being held (a line without `\n` would
/// otherwise grow the buffer without bound).
pub const MAX_HEADER_LINE: usize = 8 * 1024;

pub enum Frame {
    Body(Vec<u8>),
    /// A header block without a usable `Content-Length`, or one over [`MAX_FRAME`].
    BadHeader(String),
}

/// Reads the next frame; `None` at the end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<Frame> {
    let mut len: Option<Result<usize, String>> = None;
    let mut any = false;
    loop {
        let mut line = Vec::new();
        let n = (&mut *r).take(MAX_HEADER_LINE as u64).read_until(b'\n', &mut line).await.ok()?;
        if n == 0 {
            return None;
        }
        if n == MAX_HEADER_LINE && line.last() != Some(&b'\n') {
            // A header line no client writes: skip to its end without holding it.
            loop {
                line.clear();
                let k = (&mut *r).take(MAX_HEADER_LINE as u64).read_until(b'\n', &mut line).await.ok()?;
                if k == 0 {
                    return None;
                }
                if line.last() == Some(&b'\n') {
                    break;
                }
            }
            return Some(Frame::BadHeader(format!("a header line over {MAX_HEADER_LINE} bytes")));
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim();
        if l.is_empty() {
            if any {
                break;
            }
            continue;
        }
        any = true;
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = Some(v.trim().parse::<usize>().map_err(|_| format!("bad Content-Length `{}`", v.trim())));
            }
        }
    }
    match len {
        None => Some(Frame::BadHeader("a header without Content-Length".into())),
        Some(Err(e)) => Some(Frame::BadHeader(e)),
        Some(Ok(n)) if n > MAX_FRAME => {
            // Skip the body without holding it.
            let mut rest = n;
            let mut buf = vec![0u8; 64 * 1024];
            while rest > 0 {
                let k = r.read(&mut buf[..rest.min(64 * 1024)]).await.ok()?;
                if k == 0 {
                    return None;
                }
                rest -= k;
            }
            Some(Frame::BadHeader(format!("a message of {n} bytes is over the limit of {MAX_FRAME}")))
        }
        Some(Ok(n)) => {
            // Memory grows with the bytes that arrive, not with what the header claims.
            let mut body = Vec::with_capacity(n.min(1 << 20));
            (&mut *r).take(n as u64).read_to_end(&mut body).await.ok()?;
            (body.len() == n).then_some(Frame::Body(body))
        }
    }
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Why a body is not a message tower-lsp can take, as the JSON-RPC error to answer with; `Ok(Some)`
/// is the body to hand on instead of the client's: `"params": null` dropped (JSON-RPC allows it, some
/// clients send it with `shutdown`, and tower-lsp answers a parameterless method that gets it with
/// "Unexpected params: null").
pub fn check(body: &[u8]) -> Result<Option<Vec<u8>>, Value> {
    let mut v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Err(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("Parse error: {e}")}})),
    };
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let invalid = |why: &str| Err(json!({"jsonrpc": "2.0", "id": id.clone(), "error": {"code": -32600, "message": format!("Invalid request: {why}")}}));
    let Some(o) = v.as_object() else { return invalid("not a JSON object") };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("`jsonrpc` must be \"2.0\"");
    }
    if let Some(id) = o.get("id") {
        // tower-lsp's ids are i64 or strings: a larger integer fails its decoder, which then drops
        // what it had buffered and the server stops answering.
        if !(id.is_null() || id.is_string() || id.is_i64()) {
            return Err(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "Invalid request: bad `id`"}}));
        }
    }
    match o.get("method") {
        // tower-lsp answers nothing to a `$/` request it has no handler for (it drops the
        // MethodNotFound as if the message were a notification); the spec asks for that error, and a
        // client waiting for the answer would wait forever.
        Some(Value::String(m)) if m.starts_with("$/") && o.get("id").is_some_and(|i| !i.is_null()) => {
            Err(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("Method not found: {m}")}}))
        }
        Some(Value::String(_)) if o.get("params").is_some_and(Value::is_null) => {
            if let Some(o) = v.as_object_mut() {
                o.remove("params");
            }
            Ok(serde_json::to_vec(&v).ok())
        }
        Some(Value::String(_)) => Ok(None),
        Some(_) => invalid("`method` must be a string"),
        None if o.contains_key("id") && (o.contains_key("result") || o.contains_key("error")) => Ok(None),
        None => invalid("neither a request, a notification nor a response"),
    }
}

fn is_exit(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v.get("method").and_then(Value::as_str) == Some("exit") && v.get("id").is_none())
}

/// Client → guard → tower-lsp. Ends (closing `to_server`) at the end of `input`.
pub async fn guard_input<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(input: R, mut to_server: W, out: mpsc::UnboundedSender<Vec<u8>>) {
    let mut r = BufReader::with_capacity(1 << 16, input);
    while let Some(f) = read_frame(&mut r).await {
        match f {
            Frame::BadHeader(why) => tracing::warn!("skipped a malformed frame: {why}"),
            Frame::Body(body) => match check(&body) {
                Ok(replaced) => {
                    let body = replaced.unwrap_or(body);
                    if to_server.write_all(&frame(&body)).await.is_err() {
                        return;
                    }
                    if is_exit(&body) {
                        // `exit` ends the session: close the server's input so it stops.
                        break;
                    }
                }
                Err(answer) => {
                    tracing::warn!("refused a malformed message: {}", answer["error"]["message"]);
                    let _ = out.send(frame(answer.to_string().as_bytes()));
                }
            },
        }
    }
    let _ = to_server.shutdown().await;
}

/// tower-lsp → whole frames → the writer.
pub async fn forward_output<R: AsyncRead + Unpin>(from_server: R, out: mpsc::UnboundedSender<Vec<u8>>) {
    let mut r = BufReader::with_capacity(1 << 16, from_server);
    while let Some(f) = read_frame(&mut r).await {
        if let Frame::Body(b) = f {
            if out.send(frame(&b)).is_err() {
                return;
            }
        }
    }
}

/// The one writer of the real output.
pub async fn write_output<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_as_json_rpc() {
        assert!(check(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#).is_ok());
        assert!(check(br#"{"jsonrpc":"2.0","method":"n"}"#).is_ok());
        assert!(check(br#"{"jsonrpc":"2.0","id":"a","result":null}"#).is_ok());
        assert_eq!(check(b"{not json").unwrap_err()["error"]["code"], -32700);
        assert_eq!(check(b"[]").unwrap_err()["error"]["code"], -32600);
        assert_eq!(check(br#"{"jsonrpc":"1.0","id":3,"method":"x"}"#).unwrap_err()["id"], 3);
        assert_eq!(check(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#).unwrap_err()["id"], Value::Null);
        assert_eq!(check(br#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"x"}"#).unwrap_err()["id"], Value::Null);
        assert_eq!(check(br#"{"jsonrpc":"2.0","id":9223372036854775808,"result":null}"#).unwrap_err()["error"]["code"], -32600);
        assert!(check(br#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"x"}"#).is_ok());
        assert_eq!(check(br#"{"jsonrpc":"2.0","id":1}"#).unwrap_err()["error"]["code"], -32600);
    }

    #[test]
    fn a_dollar_request_is_answered_method_not_found_and_a_dollar_notification_passes() {
        let e = check(br#"{"jsonrpc":"2.0","id":4,"method":"$/unknown","params":{}}"#).unwrap_err();
        assert_eq!((e["id"].clone(), e["error"]["code"].clone()), (json!(4), json!(-32601)));
        assert_eq!(check(br#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}"#), Ok(None));
        assert_eq!(check(br#"{"jsonrpc":"2.0","method":"$/setTrace","params":{"value":"off"}}"#), Ok(None));
    }

    #[test]
    fn null_params_are_dropped_and_other_bodies_kept() {
        let got = check(br#"{"jsonrpc":"2.0","id":7,"method":"shutdown","params":null}"#).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&got).unwrap(), json!({"jsonrpc": "2.0", "id": 7, "method": "shutdown"}));
        assert_eq!(check(br#"{"jsonrpc":"2.0","id":7,"method":"shutdown"}"#), Ok(None));
        assert_eq!(check(br#"{"jsonrpc":"2.0","id":7,"method":"x","params":{"a":null}}"#), Ok(None));
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_length_ends_the_stream() {
        let input = b"Content-Length: 1000000\r\n\r\n{}".to_vec();
        let mut r = BufReader::new(&input[..]);
        assert!(read_frame(&mut r).await.is_none());
    }

    #[tokio::test]
    async fn an_endless_header_line_is_skipped_without_being_held() {
        // 64 MiB without a newline, then a frame.
        let mut input = vec![b'C'; 64 << 20];
        input.extend_from_slice(b"\r\n\r\nContent-Length: 2\r\n\r\n{}");
        let mut r = BufReader::new(&input[..]);
        match read_frame(&mut r).await {
            Some(Frame::BadHeader(why)) => assert!(why.contains("header line over"), "{why}"),
            _ => panic!("an overlong header line is a bad header"),
        }
        // (Before, the whole line was read into memory and then called a header without
        // Content-Length.)
        assert!(matches!(read_frame(&mut r).await, Some(Frame::Body(b)) if b == b"{}"));
    }

    #[tokio::test]
    async fn bad_headers_are_skipped_to_the_next_frame() {
        let input = b"Content-Type: x\r\n\r\nContent-Length: nope\r\n\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        let mut r = BufReader::new(&input[..]);
        assert!(matches!(read_frame(&mut r).await, Some(Frame::BadHeader(_))));
        assert!(matches!(read_frame(&mut r).await, Some(Frame::BadHeader(_))));
        assert!(matches!(read_frame(&mut r).await, Some(Frame::Body(b)) if b == b"{}"));
        assert!(read_frame(&mut r).await.is_none());
    }
}
