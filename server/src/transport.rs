//! keel-lsp's own JSON-RPC transport over tower-lsp's service.
//!
//! tower-lsp 0.20's `Server` loses the messages that follow a frame whose body is not a JSON-RPC
//! message (its codec drops its buffer on a decode error), so one bad frame from a client would
//! leave the server deaf. Keel reads the frames itself instead, and each body is parsed once: into a
//! JSON value that is checked (answering the errors the spec asks for: `-32700` parse error,
//! `-32600` invalid request, `-32601` for an unknown `$/` request) and then moved, not parsed again,
//! into tower-lsp's `Request` or `Response`. Bad headers are skipped up to the next frame. The
//! service is driven the way tower-lsp's `Server::serve` drives it (requests in order, at most four
//! handler futures at a time, the client socket for the server's own requests).
//!
//! Reading and writing happen on two threads of their own with plain blocking I/O (as lsp-server,
//! rust-analyzer's transport, does): tokio's stdin and stdout go through the blocking pool for
//! every read and write, a thread hand-off each way per message. Everything the server writes goes
//! out through the one writer thread, frame by frame, so error answers never split a message; it
//! flushes when no other frame is waiting.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};

use futures::channel::mpsc as fmpsc;
use futures::{FutureExt, SinkExt, StreamExt, TryFutureExt, future, stream};
use serde::Serialize;
use serde_json::{Value, json};
use tower_lsp::jsonrpc::{Request, Response};
use tower_lsp::ClientSocket;

/// Frames larger than this are refused (and skipped).
pub const MAX_FRAME: usize = 1 << 30;

/// Header lines longer than this are skipped without being held (a line without `\n` would
/// otherwise grow the buffer without bound).
pub const MAX_HEADER_LINE: usize = 8 * 1024;

/// Handler futures run at once (tower-lsp's default).
const MAX_CONCURRENCY: usize = 4;
/// Messages read ahead of the service: past this the reader waits, so a client that writes faster
/// than the server handles is slowed down instead of filling memory.
const READ_AHEAD: usize = 256;

pub enum Frame {
    Body(Vec<u8>),
    /// A header block without a usable `Content-Length`, or one over [`MAX_FRAME`].
    BadHeader(String),
}

/// Reads the next frame; `None` at the end of the stream (or a read error).
pub fn read_frame<R: BufRead>(r: &mut R) -> Option<Frame> {
    let mut len: Option<Result<usize, String>> = None;
    let mut any = false;
    loop {
        let mut line = Vec::new();
        let n = (&mut *r).take(MAX_HEADER_LINE as u64).read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            return None;
        }
        if n == MAX_HEADER_LINE && line.last() != Some(&b'\n') {
            // A header line no client writes: skip to its end without holding it.
            loop {
                line.clear();
                let k = (&mut *r).take(MAX_HEADER_LINE as u64).read_until(b'\n', &mut line).ok()?;
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
            let skipped = std::io::copy(&mut (&mut *r).take(n as u64), &mut std::io::sink()).ok()?;
            (skipped == n as u64).then(|| Frame::BadHeader(format!("a message of {n} bytes is over the limit of {MAX_FRAME}")))
        }
        Some(Ok(n)) => {
            // Memory grows with the bytes that arrive, not with what the header claims.
            let mut body = Vec::with_capacity(n.min(1 << 20));
            (&mut *r).take(n as u64).read_to_end(&mut body).ok()?;
            (body.len() == n).then_some(Frame::Body(body))
        }
    }
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// A message from the client, as tower-lsp takes it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// A body as the message tower-lsp takes, or why it is not one, as the JSON-RPC error to answer
/// with. The body is parsed once. `"params": null` is dropped (JSON-RPC allows it, some clients
/// send it with `shutdown`, and tower-lsp answers a parameterless method that gets it with
/// "Unexpected params: null").
pub fn decode(body: &[u8]) -> Result<Message, Value> {
    let mut v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Err(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("Parse error: {e}")}})),
    };
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let invalid = |id: Value, why: &str| Err(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": format!("Invalid request: {why}")}}));
    let Some(o) = v.as_object_mut() else { return invalid(id, "not a JSON object") };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(id, "`jsonrpc` must be \"2.0\"");
    }
    // tower-lsp's ids are i64 or strings: a larger integer fails its decoder.
    if o.get("id").is_some_and(|id| !(id.is_null() || id.is_string() || id.is_i64())) {
        return invalid(Value::Null, "bad `id`");
    }
    let has_id = o.get("id").is_some_and(|i| !i.is_null());
    match o.get("method") {
        // tower-lsp answers nothing to a `$/` request it has no handler for (it drops the
        // MethodNotFound as if the message were a notification); the spec asks for that error, and a
        // client waiting for the answer would wait forever.
        Some(Value::String(m)) if m.starts_with("$/") && has_id => {
            Err(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("Method not found: {m}")}}))
        }
        Some(Value::String(_)) => {
            if o.get("params").is_some_and(Value::is_null) {
                o.remove("params");
            }
            serde_json::from_value(v).map(Message::Request).or_else(|e| invalid(id, &e.to_string()))
        }
        Some(_) => invalid(id, "`method` must be a string"),
        None if o.contains_key("id") && (o.contains_key("result") || o.contains_key("error")) => {
            serde_json::from_value(v).map(Message::Response).or_else(|e| invalid(Value::Null, &format!("a malformed response: {e}")))
        }
        None => invalid(id, "neither a request, a notification nor a response"),
    }
}

fn is_exit(m: &Message) -> bool {
    matches!(m, Message::Request(r) if r.method() == "exit" && r.id().is_none())
}

/// The reader thread: frames from `input`, decoded, to the service (waiting when it is
/// [`READ_AHEAD`] behind); malformed ones answered through `out`. Ends at the end of `input`, or
/// after `exit`.
fn read_input(input: impl Read, to_service: tokio::sync::mpsc::Sender<Message>, out: std::sync::mpsc::Sender<Vec<u8>>) {
    let mut r = BufReader::with_capacity(1 << 16, input);
    while let Some(f) = read_frame(&mut r) {
        match f {
            Frame::BadHeader(why) => tracing::warn!("skipped a malformed frame: {why}"),
            Frame::Body(body) => match decode(&body) {
                Ok(m) => {
                    let exit = is_exit(&m);
                    if to_service.blocking_send(m).is_err() || exit {
                        // `exit` ends the session.
                        return;
                    }
                }
                Err(answer) => {
                    tracing::warn!("refused a malformed message: {}", answer["error"]["message"]);
                    let _ = out.send(frame(answer.to_string().as_bytes()));
                }
            },
        }
    }
}

/// The writer thread: every frame the server sends, flushed whenever none is waiting.
fn write_output(output: impl Write, frames: std::sync::mpsc::Receiver<Vec<u8>>) {
    let mut w = BufWriter::with_capacity(1 << 16, output);
    while let Ok(f) = frames.recv() {
        if w.write_all(&f).is_err() {
            return;
        }
        while let Ok(f) = frames.try_recv() {
            if w.write_all(&f).is_err() {
                return;
            }
        }
        if w.flush().is_err() {
            return;
        }
    }
}

fn encode(m: &impl Serialize) -> Vec<u8> {
    match serde_json::to_vec(m) {
        Ok(body) => frame(&body),
        Err(e) => {
            tracing::error!("cannot encode a message: {e}");
            Vec::new()
        }
    }
}

/// Serves `service` over `input` and `output` until the client's input ends or it sends `exit`;
/// returns once every answer has been handed to the writer (and the writer is done, at most
/// `linger` later).
pub async fn serve<S>(input: impl Read + Send + 'static, output: impl Write + Send + 'static, mut service: S, socket: ClientSocket, linger: std::time::Duration)
where
    S: tower_service::Service<Request, Response = Option<Response>> + Send + 'static,
    S::Error: std::fmt::Display,
    S::Future: Send,
{
    let (out_tx, out_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Message>(READ_AHEAD);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("keel-lsp-out".into()).spawn(move || {
        write_output(output, out_rx);
        let _ = done_tx.send(());
    });
    let reader_out = out_tx.clone();
    let spawned = spawned.and_then(|_| std::thread::Builder::new().name("keel-lsp-in".into()).spawn(move || read_input(input, in_tx, reader_out)));
    if let Err(e) = spawned {
        tracing::error!("cannot start keel-lsp's reader and writer: {e}");
        return;
    }

    // As tower-lsp's `Server::serve`: requests in order, their futures at most MAX_CONCURRENCY at
    // once, answers and the server's own requests out through one writer.
    let (client_requests, mut client_responses) = socket.split();
    let (client_requests, client_abort) = stream::abortable(client_requests);
    let (mut responses_tx, responses_rx) = fmpsc::channel::<Response>(0);
    let (mut tasks_tx, tasks_rx) = fmpsc::channel(100);
    let process = tasks_rx
        .buffer_unordered(MAX_CONCURRENCY)
        .filter_map(future::ready)
        .map(Ok)
        .forward(responses_tx.clone().sink_map_err(|_| unreachable!("the printer outlives the tasks")))
        .map(|_| ());
    let print_tx = out_tx.clone();
    let print = stream::select(responses_rx.map(Message::Response), client_requests.map(Message::Request)).for_each(move |m| {
        let _ = print_tx.send(encode(&m));
        future::ready(())
    });
    let read = async {
        while let Some(m) = in_rx.recv().await {
            match m {
                Message::Request(req) => {
                    if let Err(e) = future::poll_fn(|cx| service.poll_ready(cx)).await {
                        tracing::error!("the service stopped: {e}");
                        break;
                    }
                    let method = req.method().to_string();
                    let fut = service.call(req).unwrap_or_else(move |e| {
                        tracing::error!("{method}: {e}");
                        None
                    });
                    if tasks_tx.send(fut).await.is_err() {
                        break;
                    }
                }
                Message::Response(res) => {
                    if let Err(e) = client_responses.send(res).await {
                        tracing::error!("a response from the client was not delivered: {e}");
                        break;
                    }
                }
            }
        }
        tasks_tx.disconnect();
        responses_tx.disconnect();
        client_abort.abort();
    };
    // One task; in this order an answer a handler finished in this poll is printed in the same one.
    futures::join!(read, process, print);
    drop(out_tx);
    // Let the last answers (the response to `shutdown`) reach the client.
    let _ = tokio::time::timeout(linger, done_rx).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &[u8]) -> Result<(), Value> {
        decode(body).map(|_| ())
    }

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
        assert_eq!(check(br#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}"#), Ok(()));
        assert_eq!(check(br#"{"jsonrpc":"2.0","method":"$/setTrace","params":{"value":"off"}}"#), Ok(()));
    }

    #[test]
    fn null_params_are_dropped_and_other_bodies_kept() {
        let params = |body: &[u8]| match decode(body) {
            Ok(Message::Request(r)) => r.params().cloned(),
            _ => panic!("not a request"),
        };
        assert_eq!(params(br#"{"jsonrpc":"2.0","id":7,"method":"shutdown","params":null}"#), None);
        assert_eq!(params(br#"{"jsonrpc":"2.0","id":7,"method":"shutdown"}"#), None);
        assert_eq!(params(br#"{"jsonrpc":"2.0","id":7,"method":"x","params":{"a":null}}"#), Some(json!({"a": null})));
    }

    /// The body is moved into tower-lsp's types whole: what tower-lsp would have parsed.
    #[test]
    fn requests_and_responses_become_tower_lsp_messages() {
        let Ok(Message::Request(r)) = decode(br#"{"jsonrpc":"2.0","id":"a","method":"m","params":[1]}"#) else { panic!() };
        assert_eq!((r.method(), r.id().map(ToString::to_string), r.params()), ("m", Some("\"a\"".into()), Some(&json!([1]))));
        assert!(matches!(decode(br#"{"jsonrpc":"2.0","id":3,"result":{"x":1}}"#), Ok(Message::Response(_))));
        assert!(matches!(decode(br#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"m"}}"#), Ok(Message::Response(_))));
        // A response with both, or an error that is not one, is refused instead of reaching tower-lsp.
        assert_eq!(decode(br#"{"jsonrpc":"2.0","id":3,"error":7}"#).unwrap_err()["error"]["code"], -32600);
    }

    #[test]
    fn a_body_shorter_than_its_length_ends_the_stream() {
        let input = b"Content-Length: 1000000\r\n\r\n{}".to_vec();
        let mut r = BufReader::new(&input[..]);
        assert!(read_frame(&mut r).is_none());
    }

    #[test]
    fn an_endless_header_line_is_skipped_without_being_held() {
        // 64 MiB without a newline, then a frame.
        let mut input = vec![b'C'; 64 << 20];
        input.extend_from_slice(b"\r\n\r\nContent-Length: 2\r\n\r\n{}");
        let mut r = BufReader::new(&input[..]);
        match read_frame(&mut r) {
            Some(Frame::BadHeader(why)) => assert!(why.contains("header line over"), "{why}"),
            _ => panic!("an overlong header line is a bad header"),
        }
        // (Before, the whole line was read into memory and then called a header without
        // Content-Length.)
        assert!(matches!(read_frame(&mut r), Some(Frame::Body(b)) if b == b"{}"));
    }

    #[test]
    fn bad_headers_are_skipped_to_the_next_frame() {
        let input = b"Content-Type: x\r\n\r\nContent-Length: nope\r\n\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        let mut r = BufReader::new(&input[..]);
        assert!(matches!(read_frame(&mut r), Some(Frame::BadHeader(_))));
        assert!(matches!(read_frame(&mut r), Some(Frame::BadHeader(_))));
        assert!(matches!(read_frame(&mut r), Some(Frame::Body(b)) if b == b"{}"));
        assert!(read_frame(&mut r).is_none());
    }
}
