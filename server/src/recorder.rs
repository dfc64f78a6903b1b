//! Records on their way to the store. Handlers hand a record over and never wait ([`Recording::push`]);
//! one task writes them in order and lets go of each only once the store says it is durable. When
//! the store cannot be written — it cannot be opened, its file was deleted or replaced under the
//! server, a write fails — the records stay in memory, the user is told once (a message, and a
//! `keel/status` with state `recording_failed`), and the task tries again every
//! [`RETRY`] until the store is back; then they are written, in order, and the status says so.
//! Nothing a handler recorded is dropped while the server runs; what is still unwritten at
//! shutdown is counted and reported. Memory is bounded by refusing work, never by dropping records:
//! while `limits.max_unwritten_records` wait, no new episode starts (`episode::check_request`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use keel_trajectory::{Durability, Record, Store, Writer};
use tokio::sync::Notify;
use tower_lsp::Client;
use tower_lsp::lsp_types::MessageType;

use crate::state::{Shared, lock};
use crate::ui;

/// How often a store that could not be written is tried again.
pub const RETRY: Duration = Duration::from_millis(500);
/// The most records written in one round.
const ROUND: usize = 1024;

#[derive(Default)]
pub struct Recording {
    /// Not yet durable, in the order they were recorded (the first ones may be in flight).
    queue: Mutex<VecDeque<Record>>,
    wake: Arc<Notify>,
    /// Why the store cannot be written, while it cannot.
    failing: Mutex<Option<String>>,
}

impl Recording {
    /// Hands a record to the writing task. Never waits and never fails.
    pub fn push(&self, r: Record) {
        lock(&self.queue).push_back(r);
        self.wake.notify_one();
    }

    /// Records not yet durable.
    pub fn unwritten(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Why recording is failing, while it is.
    pub fn failing(&self) -> Option<String> {
        lock(&self.failing).clone()
    }

    /// Waits until every record handed over so far is durable, at most `within`; `Err` with the
    /// number still unwritten after that.
    pub async fn flush(&self, within: Duration) -> Result<(), usize> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let n = self.unwritten();
            if n == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(n);
            }
            self.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The store the task writes to, and which file it opened (to notice the file being deleted or
/// replaced: SQLite would go on writing to the unlinked file, and everything would be lost).
struct Open {
    path: PathBuf,
    durability: Durability,
    file: Option<(u64, u64)>,
    writer: Writer,
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

fn open(path: &Path, durability: Durability) -> Result<Open, String> {
    let store = Store::open_with(path, durability).map_err(|e| format!("cannot open the Keel store {}: {e}", path.display()))?;
    let writer = store.writer().map_err(|e| format!("cannot write to the Keel store {}: {e}", path.display()))?;
    Ok(Open { path: path.to_path_buf(), durability, file: identity(path), writer })
}

/// How a front end tells the user that the store cannot be written, and that it can again.
#[tower_lsp::async_trait]
pub trait Report: Send + Sync + 'static {
    async fn failing(&self, why: &str, message: &str);
    async fn recovered(&self, message: &str);
}

/// LSP: a `window/showMessage` and a `keel/status` (`recording_failed`, then `recording`).
#[tower_lsp::async_trait]
impl Report for Client {
    async fn failing(&self, why: &str, message: &str) {
        self.show_message(MessageType::ERROR, format!("Keel: {message}")).await;
        ui::recording_status(self, Some(why), message).await;
    }

    async fn recovered(&self, message: &str) {
        ui::recording_status(self, None, message).await;
    }
}

/// The writing task: runs until the server's state is gone.
pub async fn run(state: Weak<Shared>, report: impl Report) {
    let Some(wake) = state.upgrade().map(|s| s.recording.wake.clone()) else { return };
    let mut store: Option<Open> = None;
    loop {
        let failing = state.upgrade().is_some_and(|s| s.recording.failing().is_some());
        if failing {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(RETRY) => {}
            }
        } else {
            wake.notified().await;
        }
        let Some(shared) = state.upgrade() else { break };
        loop {
            let batch: Vec<Record> = lock(&shared.recording.queue).iter().take(ROUND).cloned().collect();
            if batch.is_empty() {
                break;
            }
            let cfg = shared.config();
            match write(&mut store, &cfg.store, cfg.store_sync, batch).await {
                Ok(n) => {
                    lock(&shared.recording.queue).drain(..n);
                    let was = lock(&shared.recording.failing).take();
                    if let Some(why) = was {
                        let msg = format!("Keel is recording again: the steps kept in memory were written to {}", shared.config().store.display());
                        tracing::info!("{msg} (it had failed: {why})");
                        report.recovered(&msg).await;
                    }
                }
                Err((n, why)) => {
                    lock(&shared.recording.queue).drain(..n);
                    let first = lock(&shared.recording.failing).replace(why.clone()).is_none();
                    if first {
                        let kept = shared.recording.unwritten();
                        let msg = format!("Keel cannot write its store: {why}. {kept} record(s) are kept in memory and will be written when it is back.");
                        tracing::error!("{msg}");
                        report.failing(&why, &msg).await;
                    }
                    break;
                }
            }
        }
    }
}

/// Writes `batch` (the queue's first records) and waits until it is durable. `Ok(n)`: the first
/// `n` may leave the queue (written, or each one refused by the store on its own while the records
/// after it were written — such a record could never be written, and is logged). `Err((n, why))`:
/// the first `n` are written, the rest must be tried again.
async fn write(store: &mut Option<Open>, path: &Path, durability: Durability, batch: Vec<Record>) -> Result<usize, (usize, String)> {
    let stale = store.as_ref().is_some_and(|s| s.path != path || s.durability != durability || identity(path) != s.file);
    if let Some(old) = store.take_if(|_| stale) {
        if old.path == path && old.durability == durability {
            tracing::warn!("the Keel store {} was deleted or replaced; opening it again", path.display());
        }
        // Everything written to it was acknowledged already; this only lets its writer finish.
        let _ = old.writer.flush().durable().await;
    }
    if store.is_none() {
        // Opening creates and migrates the file, and may wait on another process's lock.
        let p = path.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || open(&p, durability)).await.map_err(|e| (0, format!("opening the Keel store failed: {e}")))?;
        *store = Some(opened.map_err(|e| (0, e))?);
    }
    let writer = &store.as_ref().expect("opened above").writer;
    let n = batch.len();
    let receipts: Vec<_> = batch.into_iter().map(|r| writer.append(r)).collect();
    let mut results = Vec::with_capacity(n);
    for r in receipts {
        results.push(r.durable().await.map_err(|e| e.to_string()));
    }
    let Some(last_ok) = results.iter().rposition(Result::is_ok) else {
        *store = None;
        return Err((0, results.into_iter().find_map(Result::err).unwrap_or_default()));
    };
    if last_ok + 1 < n {
        // The tail failed: the store stopped taking writes.
        *store = None;
        log_refused(&results[..=last_ok]);
        let why = results[last_ok + 1..].iter().find_map(|r| r.clone().err()).unwrap_or_default();
        return Err((last_ok + 1, why));
    }
    log_refused(&results);
    Ok(n)
}

fn log_refused(results: &[Result<(), String>]) {
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        tracing::error!("the Keel store refused a record (it is dropped; the records around it were written): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `store_sync = "full"` reaches the connection the records are written on.
    #[tokio::test]
    async fn the_configured_durability_is_the_writers() {
        let dir = tempfile::tempdir().unwrap();
        for (d, want) in [(Durability::Normal, 1), (Durability::Full, 2)] {
            let o = open(&dir.path().join("keel.db"), d).unwrap();
            assert_eq!(o.writer.synchronous().await.unwrap(), want, "{d:?}");
        }
    }
}
