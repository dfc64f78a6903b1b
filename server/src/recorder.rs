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
    /// Not yet durable, numbered, in the order they were recorded (the first ones may be in
    /// flight). Records leave it only once durable (or refused by the store for good), never
    /// reordered: the first one is the oldest still waiting.
    queue: Mutex<VecDeque<(u64, Record)>>,
    /// The number of the last record handed over (changes under `queue`'s lock).
    pushed: std::sync::atomic::AtomicU64,
    durable: Notify,
    wake: Arc<Notify>,
    /// Why the store cannot be written, while it cannot.
    failing: Mutex<Option<String>>,
}

impl Recording {
    /// Hands a record to the writing task. Never waits and never fails. Returns its number, for
    /// [`Recording::durable`].
    pub fn push(&self, r: Record) -> u64 {
        let n = {
            let mut q = lock(&self.queue);
            let n = self.pushed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            q.push_back((n, r));
            n
        };
        self.wake.notify_one();
        n
    }

    /// Record `n` and every one before it are durable.
    fn is_durable(&self, n: u64) -> bool {
        lock(&self.queue).front().is_none_or(|(first, _)| *first > n)
    }

    /// Waits until record number `n` and every one before it are durable, at most `within`, and
    /// not once the store is failing; whether they are.
    pub async fn durable(&self, n: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.durable.notified();
            if self.is_durable(n) {
                return true;
            }
            if self.failing().is_some() {
                return false;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_durable(n);
            }
        }
    }

    /// Of the first `done.len()` queued records, those marked are durable (or refused for good):
    /// they leave memory; the others stay, in order, to be written again.
    fn written(&self, done: &[bool]) {
        {
            let mut q = lock(&self.queue);
            let mut i = 0;
            q.retain(|_| {
                let leaves = done.get(i).copied().unwrap_or(false);
                i += 1;
                !leaves
            });
        }
        self.durable.notify_waiters();
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

/// The store as it may be shown: its path, or its PostgreSQL URL without the password.
pub fn shown(path: &Path) -> String {
    keel_trajectory::redact_location(&path.to_string_lossy())
}

/// Opens the store and starts its writer. Blocking (on PostgreSQL, network I/O on the `postgres`
/// crate's own runtime): call it off the async runtime, as [`write`] does with `spawn_blocking`.
fn open(path: &Path, durability: Durability) -> Result<Open, String> {
    let store = Store::open_with(path, durability).map_err(|e| format!("cannot open the Keel store {}: {e}", shown(path)))?;
    let writer = store.writer().map_err(|e| format!("cannot write to the Keel store {}: {e}", shown(path)))?;
    Ok(Open { path: path.to_path_buf(), durability, file: identity(path), writer })
}

/// How a front end tells the user that the store cannot be written, and that it can again.
#[tower_lsp::async_trait]
pub trait Report: Send + Sync + 'static {
    async fn failing(&self, why: &str, message: &str);
    async fn recovered(&self, message: &str);
    /// Something the user should know that is not a failure (the store was replaced).
    async fn notice(&self, message: &str);
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

    async fn notice(&self, message: &str) {
        self.show_message(MessageType::WARNING, format!("Keel: {message}")).await;
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
            let batch: Vec<Record> = lock(&shared.recording.queue).iter().take(ROUND).map(|(_, r)| r.clone()).collect();
            if batch.is_empty() {
                break;
            }
            let cfg = shared.config();
            let replaced = store.as_ref().is_some_and(|s| s.path == cfg.store && identity(&cfg.store) != s.file);
            if replaced {
                let msg = format!(
                    "the Keel store {} was deleted or replaced while keel-lsp was running; what was in it is gone with it, and from now on steps are recorded in a new store at that path",
                    cfg.store.display()
                );
                tracing::warn!("{msg}");
                report.notice(&msg).await;
            }
            let (done, failed) = write(&mut store, &cfg.store, cfg.store_sync, batch).await;
            shared.recording.written(&done);
            match failed {
                None => {
                    let was = lock(&shared.recording.failing).take();
                    if let Some(why) = was {
                        let msg = format!("Keel is recording again: the steps kept in memory were written to {}", shown(&shared.config().store));
                        tracing::info!("{msg} (it had failed: {why})");
                        report.recovered(&msg).await;
                    }
                }
                Some(why) => {
                    let first = lock(&shared.recording.failing).replace(why.clone()).is_none();
                    shared.recording.durable.notify_waiters();
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

/// Writes `batch` (the queue's first records) and waits until it is durable. Returns, for each
/// record, whether it may leave the queue (written, or refused by the store for good — such a
/// record could never be written, and is logged), and why the store is failing when some must be
/// tried again: a record that failed for want of room or of a usable file (a full disk lets the
/// small records after a large one in) stays, whatever happened to the records after it.
async fn write(store: &mut Option<Open>, path: &Path, durability: Durability, batch: Vec<Record>) -> (Vec<bool>, Option<String>) {
    let n = batch.len();
    let stale = store.as_ref().is_some_and(|s| s.path != path || s.durability != durability || identity(path) != s.file);
    if let Some(old) = store.take_if(|_| stale) {
        if old.path == path && old.durability == durability {
            tracing::warn!("the Keel store {} was deleted or replaced; opening it again", shown(path));
        }
        // Everything written to it was acknowledged already; this only lets its writer finish.
        let _ = old.writer.flush().durable().await;
    }
    if store.is_none() {
        // Opening creates and migrates the file, and may wait on another process's lock.
        let p = path.to_path_buf();
        match tokio::task::spawn_blocking(move || open(&p, durability)).await {
            Ok(Ok(opened)) => *store = Some(opened),
            Ok(Err(e)) => return (vec![false; n], Some(e)),
            Err(e) => return (vec![false; n], Some(format!("opening the Keel store failed: {e}"))),
        }
    }
    let Some(open) = store.as_ref() else { return (vec![false; n], Some("the Keel store is not open".into())) };
    let receipts: Vec<_> = batch.into_iter().map(|r| open.writer.append(r)).collect();
    let mut done = Vec::with_capacity(n);
    let mut failing = None;
    for r in receipts {
        match r.durable().await {
            Ok(()) => done.push(true),
            Err(e) => {
                let e = e.to_string();
                if transient(&e) {
                    done.push(false);
                    failing.get_or_insert(e);
                } else {
                    tracing::error!("the Keel store refused a record (it is dropped; the records around it were written): {e}");
                    done.push(true);
                }
            }
        }
    }
    if failing.is_some() {
        // Open it again next time: the file may have gone, or the connection gone bad.
        *store = None;
    }
    (done, failing)
}

/// A write error that says nothing about the record: no room, no usable file, no lock.
fn transient(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    ["full", "i/o", "readonly", "read-only", "unable to open", "locked", "busy", "no such file", "not a directory", "disk", "closed", "gone", "permission", "interrupted"]
        .iter()
        .any(|k| e.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_about_the_record_drop_it() {
        for e in ["write failed: store error: database or disk is full", "disk I/O error", "attempt to write a readonly database", "unable to open database file", "database is locked"] {
            assert!(transient(e), "{e}");
        }
        assert!(!transient("UNIQUE constraint failed: steps.id"));
    }

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
