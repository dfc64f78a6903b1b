//! A lean LSP client for timing a server over its stdio: one thread reads the server's frames and
//! stamps each answer the moment it arrives; the caller writes. The same client drives keel-lsp
//! and the servers it is measured against (lsp-ai), so the client's own cost is equal for both.
//! Server requests are answered `null`; notifications are counted, and `keel/status` ones kept.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::read_frame;

pub struct WireClient {
    pub child: Child,
    stdin: Arc<Mutex<ChildStdin>>,
    answers: Receiver<(Value, Instant)>,
    /// Answers that came while waiting for another id.
    early: HashMap<i64, (Value, Instant)>,
    next: i64,
    /// `keel/status` notifications, in arrival order.
    pub statuses: Arc<Mutex<Vec<Value>>>,
}

impl WireClient {
    /// Spawns `exe` with `args`, stderr to `stderr_to` (or discarded).
    pub fn spawn(exe: &Path, args: &[&str], envs: &[(&str, &str)], stderr_to: Option<&Path>) -> Result<WireClient, String> {
        let mut cmd = Command::new(exe);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        cmd.stderr(match stderr_to {
            Some(p) => Stdio::from(std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
            None => Stdio::null(),
        });
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawning {}: {e}", exe.display()))?;
        let stdin = Arc::new(Mutex::new(child.stdin.take().ok_or("no stdin")?));
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, answers) = channel();
        let statuses: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (stdin2, statuses2) = (stdin.clone(), statuses.clone());
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 16, stdout);
            while let Some(msg) = read_frame(&mut r) {
                let at = Instant::now();
                match (msg.get("method"), msg.get("id")) {
                    (Some(_), Some(id)) => {
                        let reply = json!({"jsonrpc": "2.0", "id": id, "result": null});
                        let _ = write_frame_bytes(&mut *stdin2.lock().unwrap(), &reply);
                    }
                    (Some(m), None) => {
                        if m == "keel/status" {
                            statuses2.lock().unwrap().push(msg["params"].clone());
                        }
                    }
                    (None, _) => {
                        if tx.send((msg, at)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(WireClient { child, stdin, answers, early: HashMap::new(), next: 1, statuses })
    }

    pub fn send(&self, msg: &Value) -> std::io::Result<()> {
        write_frame_bytes(&mut *self.stdin.lock().unwrap(), msg)
    }

    pub fn notify(&self, method: &str, params: Value) -> std::io::Result<()> {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    /// Sends a request; its id.
    pub fn send_request(&mut self, method: &str, params: Value) -> std::io::Result<i64> {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        Ok(id)
    }

    /// The answer to `id` and when it arrived; `None` after `timeout` or when the server is gone.
    pub fn wait(&mut self, id: i64, timeout: Duration) -> Option<(Value, Instant)> {
        if let Some(a) = self.early.remove(&id) {
            return Some(a);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.answers.recv_timeout(left) {
                Ok((msg, at)) => {
                    let got = msg.get("id").and_then(Value::as_i64);
                    if got == Some(id) {
                        return Some((msg, at));
                    }
                    if let Some(other) = got {
                        self.early.insert(other, (msg, at));
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// A request and its round trip (from just before the write to the answer's arrival).
    pub fn request(&mut self, method: &str, params: Value, timeout: Duration) -> Option<(Value, Duration)> {
        let t0 = Instant::now();
        let id = self.send_request(method, params).ok()?;
        self.wait(id, timeout).map(|(v, at)| (v, at.duration_since(t0)))
    }

    /// `initialize` (root, options, UTF-16) and `initialized`.
    pub fn initialize(&mut self, root: &Path, options: Value) -> Result<Value, String> {
        let uri = format!("file://{}", root.display());
        let params = json!({
            "processId": null, "rootUri": uri, "capabilities": {"general": {"positionEncodings": ["utf-16"]}},
            "workspaceFolders": [{"uri": uri, "name": "ws"}], "initializationOptions": options
        });
        let (r, _) = self.request("initialize", params, Duration::from_secs(30)).ok_or("no answer to initialize")?;
        if r.get("error").is_some() {
            return Err(format!("initialize failed: {r}"));
        }
        self.notify("initialized", json!({})).map_err(|e| e.to_string())?;
        Ok(r)
    }

    /// Resident memory of the server, KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
            .unwrap_or(0)
    }

    /// `shutdown`, `exit`, and the exit status (killed after 10 s).
    pub fn shutdown(mut self) -> Option<std::process::ExitStatus> {
        let _ = self.request("shutdown", Value::Null, Duration::from_secs(10));
        let _ = self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for WireClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn write_frame_bytes(w: &mut impl Write, msg: &Value) -> std::io::Result<()> {
    let body = msg.to_string();
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    w.write_all(&out)?;
    w.flush()
}

/// The `p`-th percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A Rust source file of `lines` lines (functions with non-ASCII comments), the benches' text.
pub fn rust_file(lines: usize) -> String {
    let mut s = String::from("use std::collections::HashMap;\n\n");
    let mut i = 0;
    let mut n = 2;
    while n < lines {
        s.push_str(&format!("fn f{i}(x: u64) -> u64 {{\n    // é 😀 comment {i}\n    let y = x * {i};\n    y + 1\n}}\n\n"));
        i += 1;
        n += 6;
    }
    s
}
