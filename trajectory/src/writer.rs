//! The store's single writer: a thread that owns a connection, takes appends from a channel, and
//! writes them in batches, one transaction per batch.
//!
//! Callers never touch the store: [`Writer::append`] is a channel send. The [`Receipt`] it returns
//! resolves once the batch holding the record has committed; from then on the record survives the
//! process being killed. Several writers (in several processes) may append to one store: SQLite
//! serialises their transactions; PostgreSQL runs them side by side.
//!
//! On PostgreSQL a lost connection (the server restarting, the network) is retried with backoff
//! for [`RECONNECT_WINDOW`] with the batch kept; only after that do its receipts fail (and keel-lsp
//! keeps the records and tells the user). A receipt is never `Ok` before the commit is.

use std::collections::HashMap;

/// A blake3 digest of a value as the caller gave it.
type Hash = [u8; 32];
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::db::{Conn, Location, P};
use crate::redact::{redact_in_place, redact_value};
use crate::store::{self, PromptManifest, StepBody, StoreError, put_text};
use crate::types::*;

/// The most records written in one transaction.
const MAX_BATCH: usize = 8192;

/// How long a batch is retried while a PostgreSQL server cannot be reached, before its receipts
/// fail.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(20);

enum Msg {
    Append(Box<Record>, oneshot::Sender<Result<(), String>>),
    Flush(oneshot::Sender<Result<(), String>>),
    /// How durable the writer's commits are (0 off, 1 normal, 2 full).
    Synchronous(oneshot::Sender<Result<i64, String>>),
}

/// A cheap, cloneable handle for appending to the store. The writer thread ends once every handle
/// is dropped and what was sent has been written.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// Resolves when the record it was given for is durable (or failed to be written).
#[must_use = "a receipt tells whether the record was written; drop it only if that does not matter"]
pub struct Receipt {
    rx: oneshot::Receiver<Result<(), String>>,
}

impl Receipt {
    /// Wait (async) until the record is durable.
    pub async fn durable(self) -> Result<(), StoreError> {
        match self.rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Write(e)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Block the calling thread until the record is durable. Not for use inside an async task.
    pub fn wait(self) -> Result<(), StoreError> {
        match self.rx.blocking_recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Write(e)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// `Some` once the write finished (without waiting).
    pub fn try_result(&mut self) -> Option<Result<(), StoreError>> {
        match self.rx.try_recv() {
            Ok(Ok(())) => Some(Ok(())),
            Ok(Err(e)) => Some(Err(StoreError::Write(e))),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(StoreError::WriterGone)),
        }
    }
}

impl Writer {
    pub(crate) fn start(location: &Location, durability: store::Durability) -> Result<Writer, StoreError> {
        let conn = store::connect(location, durability)?;
        let io = |source| StoreError::Io { path: location.shown(), source };
        let hint = match &conn {
            Conn::Lite(c) => {
                // Checkpoints (copying the WAL into the database file, and syncing it) run on their
                // own thread and connection, so appends do not stall behind them.
                c.pragma_update(None, "wal_autocheckpoint", 0)?;
                let Conn::Lite(checkpoint_conn) = store::connect(location, durability)? else {
                    unreachable!("a file store connects to SQLite")
                };
                let (hint, hints) = mpsc::sync_channel::<()>(1);
                thread::Builder::new()
                    .name("keel-store-checkpoint".into())
                    .spawn(move || checkpointer(checkpoint_conn, hints))
                    .map_err(io)?;
                Some(hint)
            }
            Conn::Pg(_) => None,
        };
        let (tx, rx) = mpsc::channel();
        thread::Builder::new().name("keel-store-writer".into()).spawn(move || run(conn, rx, hint)).map_err(io)?;
        Ok(Writer { tx })
    }

    /// Queue a record. Never blocks and never touches the store.
    pub fn append(&self, record: Record) -> Receipt {
        let (ack, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::Append(_, ack))) = self.tx.send(Msg::Append(Box::new(record), ack)) {
            let _ = ack.send(Err("the store's writer has stopped".into()));
        }
        Receipt { rx }
    }

    /// How durable the connection appends are written on is: SQLite's `PRAGMA synchronous` (1
    /// normal, 2 full), or PostgreSQL's `synchronous_commit` (1 `local`, 2 `on`): what
    /// [`crate::Durability`] the store was opened with, as the backend applies it.
    pub async fn synchronous(&self) -> Result<i64, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Synchronous(tx)).map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?.map_err(StoreError::Write)
    }

    /// A receipt that resolves when everything appended before it is durable.
    pub fn flush(&self) -> Receipt {
        let (ack, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::Flush(ack))) = self.tx.send(Msg::Flush(ack)) {
            let _ = ack.send(Err("the store's writer has stopped".into()));
        }
        Receipt { rx }
    }
}

/// Checkpoint after commits, at most twice a second; once more when the writer stops.
fn checkpointer(conn: Connection, hints: mpsc::Receiver<()>) {
    let checkpoint = |mode: &str| {
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::debug!(error = %e, "checkpoint skipped");
        }
    };
    while hints.recv().is_ok() {
        checkpoint("PASSIVE");
        thread::sleep(Duration::from_millis(500));
    }
    checkpoint("PASSIVE");
}

fn run(mut conn: Conn, rx: mpsc::Receiver<Msg>, checkpoint: Option<mpsc::SyncSender<()>>) {
    let mut known_blobs: HashMap<Hash, String> = HashMap::new();
    let mut batch: Vec<Msg> = Vec::with_capacity(256);
    while let Ok(first) = rx.recv() {
        let Some(first) = answer_query(&mut conn, first) else { continue };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.extend(answer_query(&mut conn, m)),
                Err(_) => break,
            }
        }
        write_batch(&mut conn, &mut batch, &mut known_blobs);
        batch.clear();
        if let Some(c) = &checkpoint {
            let _ = c.try_send(());
        }
        if known_blobs.len() > 200_000 {
            known_blobs.clear();
        }
    }
}

/// Answers a query about the connection at once; an append or a flush is handed back.
fn answer_query(conn: &mut Conn, m: Msg) -> Option<Msg> {
    match m {
        Msg::Synchronous(tx) => {
            let _ = tx.send(conn.synchronous().map_err(|e| e.to_string()));
            None
        }
        m => Some(m),
    }
}

fn write_batch(conn: &mut Conn, batch: &mut [Msg], known: &mut HashMap<Hash, String>) {
    let mut records: Vec<&mut Record> = Vec::with_capacity(batch.len());
    for m in batch.iter_mut() {
        if let Msg::Append(r, _) = m {
            redact_record_but_prompt(r);
            records.push(r);
        }
    }
    let mut new_blobs = HashMap::new();
    let mut last_tools = None;
    let result = with_retry(conn, |tx| {
        new_blobs.clear();
        tx.buffer_inserts();
        for r in records.iter() {
            write_record(tx, r, known, &mut new_blobs, &mut last_tools)?;
        }
        tx.send_buffered()
    });
    match result {
        Ok(()) => {
            known.extend(new_blobs);
            for m in batch.iter_mut() {
                ack(m, Ok(()));
            }
        }
        Err(e) if e.is_transient() => {
            // The store could not be reached for the whole window: nothing of the batch was
            // written, and every receipt says so.
            tracing::error!(error = %e, "the store cannot be reached; the batch is not written");
            let e = e.to_string();
            for m in batch.iter_mut() {
                ack(m, Err(e.clone()));
            }
        }
        Err(e) => {
            // Find the record that failed: write them one by one so one bad record costs only itself.
            tracing::warn!(error = %e, "batch write failed; retrying records one by one");
            let mut unreachable: Option<String> = None;
            for m in batch.iter_mut() {
                let r = match (&mut *m, &unreachable) {
                    (_, Some(e)) => Err(e.clone()),
                    (Msg::Append(r, _), None) => {
                        with_retry(conn, |tx| write_record(tx, r, &HashMap::new(), &mut HashMap::new(), &mut None))
                            .map_err(|e| {
                                if e.is_transient() {
                                    unreachable = Some(e.to_string());
                                }
                                e.to_string()
                            })
                    }
                    (Msg::Flush(_) | Msg::Synchronous(_), None) => Ok(()),
                };
                ack(m, r);
            }
        }
    }
}

fn ack(m: &mut Msg, r: Result<(), String>) {
    let (Msg::Append(_, ack) | Msg::Flush(ack)) = m else { return };
    // The oneshot is consumed by send; swap in a dead one.
    let (dead, _) = oneshot::channel();
    let ack = std::mem::replace(ack, dead);
    let _ = ack.send(r);
}

/// Run `f` in a write transaction, retrying while another process holds SQLite's write lock beyond
/// the busy timeout, and while a PostgreSQL server cannot be reached (for [`RECONNECT_WINDOW`],
/// connecting again with backoff) or reports a deadlock between writers.
fn with_retry(conn: &mut Conn, mut f: impl FnMut(&mut Conn) -> Result<(), StoreError>) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let r = conn.transaction(|tx| f(tx));
        match r {
            Err(StoreError::Sqlite(ref e)) if is_busy(e) && attempt < 5 => {
                attempt += 1;
                thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
            }
            Err(ref e) if e.is_transient() && started.elapsed() < RECONNECT_WINDOW => {
                attempt += 1;
                let wait = Duration::from_millis(50u64 << attempt.min(5)).min(Duration::from_secs(2));
                if attempt == 1 || attempt % 10 == 0 {
                    tracing::warn!(error = %e, "the store cannot be written; trying again (attempt {attempt})");
                }
                thread::sleep(wait);
            }
            r => return r,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Data(e.to_string()))
}

/// Write one (already redacted) record in `tx`.
pub(crate) fn write_one(tx: &mut Conn, r: &Record) -> Result<(), StoreError> {
    write_record(tx, r, &HashMap::new(), &mut HashMap::new(), &mut None)
}

fn write_record(
    tx: &mut Conn,
    r: &Record,
    known: &HashMap<Hash, String>,
    new_blobs: &mut HashMap<Hash, String>,
    last_tools: &mut Option<(Tools, Hash)>,
) -> Result<(), StoreError> {
    match r {
        Record::Episode(e) => {
            let mut body = e.clone();
            let mut patch_blob = None;
            if let Some(vcs) = body.workspace.vcs.as_mut() {
                let patch = std::mem::take(&mut vcs.patch);
                patch_blob = Some(store::put_blob(tx, patch.as_bytes())?);
            }
            tx.execute(
                "INSERT INTO episodes (id, created_at, model_name, model_version, task_kind, body, patch_blob)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                &[
                    P::T(&e.id.to_string()),
                    P::I(e.created_at),
                    P::T(&e.model.name),
                    (&e.model.version).into(),
                    P::T(e.task.kind.as_str()),
                    P::T(&json(&body)?),
                    (&patch_blob).into(),
                ],
            )?;
        }
        Record::Step(s) => {
            let mut manifest = PromptManifest { messages: Vec::with_capacity(s.prompt.messages.len()), tools: None };
            for m in &s.prompt.messages {
                manifest.messages.push(put_cached(tx, message_key(m), m, redacted_message, known, new_blobs)?);
            }
            if !s.prompt.tools.is_empty() {
                // Every step of a session carries the same schema: compare before serialising it.
                let key = match last_tools {
                    Some((tools, key)) if std::sync::Arc::ptr_eq(tools, &s.prompt.tools) || *tools == s.prompt.tools => *key,
                    _ => {
                        let key = tools_key(&s.prompt.tools)?;
                        *last_tools = Some((s.prompt.tools.clone(), key));
                        key
                    }
                };
                manifest.tools = Some(put_cached(tx, key, &s.prompt.tools, redacted_tools, known, new_blobs)?);
            }
            let body = StepBody { output: s.output.clone(), parsed: s.parsed.clone(), model: s.model.clone(), timings: s.timings };
            let (body, body_blob) = put_text(tx, json(&body)?)?;
            let parent = s.parent_id.map(|p| p.to_string());
            tx.execute(
                "INSERT INTO steps (id, episode_id, parent_id, state_hash, created_at, model_version, prompt, body, body_blob)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                &[
                    P::T(&s.id.to_string()),
                    P::T(&s.episode_id.to_string()),
                    (&parent).into(),
                    P::T(&s.state_hash),
                    P::I(s.created_at),
                    (&s.model.version).into(),
                    P::T(&json(&manifest)?),
                    (&body).into(),
                    (&body_blob).into(),
                ],
            )?;
        }
        Record::Decision(d) => {
            tx.execute(
                "INSERT INTO decisions (step_id, at, kind, body) VALUES (?1, ?2, ?3, ?4)",
                &[P::T(&d.step_id.to_string()), P::I(d.at), P::T(d.decision.kind()), P::T(&json(d)?)],
            )?;
        }
        Record::Observation { step_id, at, observation } => {
            let (body, body_blob) = put_text(tx, json(observation)?)?;
            tx.execute(
                "INSERT INTO observations (step_id, at, body, body_blob) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(step_id) DO UPDATE SET at = excluded.at, body = excluded.body, body_blob = excluded.body_blob",
                &[P::T(&step_id.to_string()), P::I(*at), (&body).into(), (&body_blob).into()],
            )?;
        }
        Record::EpisodeEnd(e) => {
            tx.execute(
                "INSERT INTO episode_ends (episode_id, at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT(episode_id) DO UPDATE SET at = excluded.at, body = excluded.body",
                &[P::T(&e.episode_id.to_string()), P::I(e.at), P::T(&json(e)?)],
            )?;
        }
    }
    Ok(())
}

/// Store `value` (redacted) as a blob, skipping the redaction, serialisation, compression and
/// insert when this writer has stored the same value before. `key` is a cheap digest of the value
/// as given; `known` maps it to the hash the blob was stored under; `new_blobs` collects this
/// transaction's additions, merged into `known` only once it commits.
fn put_cached<T: serde::Serialize>(
    tx: &mut Conn,
    key: Hash,
    value: &T,
    redacted: fn(&T) -> T,
    known: &HashMap<Hash, String>,
    new_blobs: &mut HashMap<Hash, String>,
) -> Result<String, StoreError> {
    if let Some(h) = known.get(&key).or_else(|| new_blobs.get(&key)) {
        return Ok(h.clone());
    }
    let clean = serde_json::to_vec(&redacted(value)).map_err(|e| StoreError::Data(e.to_string()))?;
    let hash = store::put_blob(tx, &clean)?;
    new_blobs.insert(key, hash.clone());
    Ok(hash)
}

/// A digest of a message's fields, without serialising it.
fn message_key(m: &Message) -> Hash {
    let mut h = blake3::Hasher::new();
    let mut field = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(match m.role {
        Role::System => "s",
        Role::User => "u",
        Role::Assistant => "a",
        Role::Tool => "t",
    });
    field(m.content.as_deref().unwrap_or("\0none"));
    field(m.tool_call_id.as_deref().unwrap_or("\0none"));
    field(m.name.as_deref().unwrap_or("\0none"));
    for c in &m.tool_calls {
        field(&c.id);
        field(&c.kind);
        field(&c.function.name);
        field(&c.function.arguments);
    }
    *h.finalize().as_bytes()
}

fn tools_key(t: &Tools) -> Result<Hash, StoreError> {
    let raw = serde_json::to_vec(t).map_err(|e| StoreError::Data(e.to_string()))?;
    Ok(*blake3::hash(&raw).as_bytes())
}

fn redacted_message(m: &Message) -> Message {
    let mut m = m.clone();
    redact_message(&mut m);
    m
}

fn redacted_tools(t: &Tools) -> Tools {
    let mut t = (**t).clone();
    t.iter_mut().for_each(redact_value);
    std::sync::Arc::new(t)
}

/// Redact every free text a record carries.
pub fn redact_record(r: &mut Record) {
    redact_record_but_prompt(r);
    if let Record::Step(s) = r {
        for m in &mut s.prompt.messages {
            redact_message(m);
        }
        std::sync::Arc::make_mut(&mut s.prompt.tools).iter_mut().for_each(redact_value);
    }
}

/// Everything but a step's prompt, which the writer redacts message by message (and only once per
/// distinct message).
fn redact_record_but_prompt(r: &mut Record) {
    let opt = |s: &mut Option<String>| {
        if let Some(s) = s {
            redact_in_place(s);
        }
    };
    match r {
        Record::Episode(e) => {
            if let Some(vcs) = e.workspace.vcs.as_mut() {
                redact_in_place(&mut vcs.patch);
                for f in &mut vcs.untracked {
                    redact_in_place(&mut f.content);
                }
            }
            redact_in_place(&mut e.task.instruction);
            opt(&mut e.task.selected_text);
            for d in &mut e.task.diagnostics {
                redact_in_place(&mut d.message);
            }
            opt(&mut e.verify);
        }
        Record::Step(s) => {
            opt(&mut s.output.content);
            for c in &mut s.output.tool_calls {
                redact_in_place(&mut c.function.arguments);
            }
            match &mut s.parsed {
                Parsed::Action { action, .. } => redact_action(action),
                Parsed::Error { error } => {
                    redact_in_place(&mut error.message);
                }
            }
        }
        Record::Decision(d) => match &mut d.decision {
            Decision::Rejected { reason, .. } | Decision::Superseded { reason } => opt(reason),
            Decision::Edited { final_text } => {
                redact_in_place(final_text);
            }
            Decision::Auto | Decision::Accepted | Decision::Unreviewed | Decision::Reverted => {}
        },
        Record::Observation { observation, .. } => {
            redact_in_place(&mut observation.output);
        }
        Record::EpisodeEnd(e) => {
            match &mut e.end {
                EpisodeEnd::Finished { summary } => opt(summary),
                EpisodeEnd::Failed { error } => {
                    redact_in_place(error);
                }
                EpisodeEnd::Cancelled | EpisodeEnd::Exhausted => {}
            }
            if let Some(o) = &mut e.outcome {
                redact_in_place(&mut o.command);
                redact_in_place(&mut o.output);
            }
        }
    }
}

fn redact_message(m: &mut Message) {
    if let Some(c) = m.content.as_mut() {
        redact_in_place(c);
    }
    for c in &mut m.tool_calls {
        redact_in_place(&mut c.function.arguments);
    }
}

fn redact_action(a: &mut crate::action::Action) {
    use crate::action::Action::*;
    match a {
        ViewFile { .. } => {}
        Search { pattern, .. } => {
            redact_in_place(pattern);
        }
        Edit { old_text, new_text, .. } => {
            redact_in_place(old_text);
            redact_in_place(new_text);
        }
        Run { command } => {
            redact_in_place(command);
        }
        Finish { summary } => {
            redact_in_place(summary);
        }
    }
}
