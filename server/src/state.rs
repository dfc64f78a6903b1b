//! The server's shared state. Every lock here is a `std::sync::Mutex` held for a few microseconds
//! and never across an `.await`: handlers read or change state and let go.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use keel_trajectory::{Decision, Record, Step};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::config::Config;
use crate::document::{Document, Encoding};
use crate::syntax::Syntax;
use crate::watch::Watch;

pub struct DocEntry {
    pub doc: Document,
    pub syntax: Syntax,
}

/// What the user decided about a pending step (sent from the command handlers to the episode).
#[derive(Debug)]
pub enum UserDecision {
    /// Applied by the client; the observation goes back to the model.
    Accepted(keel_trajectory::Observation),
    /// Rejected for a reason the server recorded (the client refused, no sandbox, stale text).
    AutoRejected { cause: keel_trajectory::RejectCause, message: String },
    Rejected { reason: Option<String> },
    Retry,
    Cancelled,
}

#[derive(Debug, Clone)]
pub enum PendingKind {
    /// `rel`: the path as the agent normalised it (relative to the root), which the observation names.
    /// `review`: its hunks, for an accept of some of them.
    Edit { path: PathBuf, rel: String, old_text: String, new_text: String, review: crate::hunks::Review },
    Run { command: String },
}

/// A proposal waiting for the user.
pub struct Pending {
    pub step: Step,
    pub episode: Uuid,
    pub kind: PendingKind,
    /// Where it is shown: the edited file, or the task's document for `run`.
    pub uri: String,
    /// Char offsets in the document at `uri` (the edited text, or the task range).
    pub range_chars: (usize, usize),
    pub title: String,
    pub original: Option<String>,
    pub proposed: Option<String>,
    pub model_version: Option<String>,
    pub created: std::time::Instant,
    pub tx: Option<oneshot::Sender<UserDecision>>,
}

/// A running episode, as the handlers see it.
pub struct EpisodeHandle {
    pub cancel: watch::Sender<bool>,
    /// Documents (uri → line ranges) the in-flight model call read; a change there cancels it.
    pub reading: Vec<(String, u32, u32)>,
    /// Bumped when a change cancels the in-flight model call.
    pub call_cancel: watch::Sender<u64>,
    pub uri: Option<String>,
}

#[derive(Default)]
pub struct Inner {
    pub docs: HashMap<String, DocEntry>,
    pub pending: Vec<Pending>,
    pub episodes: HashMap<Uuid, EpisodeHandle>,
    pub watches: Vec<Watch>,
}

#[derive(Default)]
pub struct Shared {
    pub inner: Mutex<Inner>,
    pub config: Mutex<Config>,
    pub encoding: Mutex<Encoding>,
    pub root: Mutex<Option<PathBuf>>,
    pub client_name: Mutex<Option<String>>,
    pub lens_refresh: Mutex<bool>,
    pub work_done_progress: Mutex<bool>,
    /// Records on their way to the store (written by [`crate::recorder::run`]).
    pub recording: crate::recorder::Recording,
    /// Endpoints that refused `tools`: use the JSON-in-content fallback with them.
    pub no_tools: Mutex<std::collections::HashSet<String>>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another thread while holding a lock must not take the server down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    pub fn encoding(&self) -> Encoding {
        *lock(&self.encoding)
    }

    /// Hands a record to the store configured now. Never waits on disk and never fails: a record
    /// the store cannot take yet is kept until it can (see [`crate::recorder`]). Returns its number
    /// for [`crate::recorder::Recording::durable`].
    pub fn record(&self, r: Record) -> u64 {
        self.recording.push(r)
    }

    /// Takes a pending step out of the list (the one answer it gets).
    pub fn take_pending(&self, step: Uuid) -> Option<Pending> {
        let mut inner = lock(&self.inner);
        let i = inner.pending.iter().position(|p| p.step.id == step)?;
        Some(inner.pending.remove(i))
    }

    pub fn decide(&self, step: Uuid, decision: Decision) -> u64 {
        self.record(Record::Decision(keel_trajectory::DecisionEvent { step_id: step, at: keel_trajectory::now_ms(), decision }))
    }

    /// Waits until everything recorded so far is on disk, at most `within`; `Err` with the number of
    /// records still unwritten.
    pub async fn flush(&self, within: std::time::Duration) -> Result<(), usize> {
        self.recording.flush(within).await
    }
}

pub type State = Arc<Shared>;

/// The runtime the agent's work runs on: episodes (the model's stream, the rules and tools, the
/// workspace snapshot) and the recording task, with the store's writer threads they start. Its
/// threads run at a lower CPU priority (10 nicer than the server on Linux; new threads inherit it), so when the
/// cores are busy the editor's requests on the main runtime (code actions, `didChange`) go first
/// and the agent's work waits: an episode is seconds long, a keystroke's answer must take
/// milliseconds (docs/benchmarks.md, "Under load"). When the cores are idle it runs at full speed.
/// Built on first use and never dropped; if its threads cannot be started, the work runs on the
/// caller's runtime.
pub fn background() -> tokio::runtime::Handle {
    static RT: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        let nice = thread_nice().map(|n| (n + NICER).min(19));
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("keel-agent")
            .on_thread_start(move || set_thread_nice(nice))
            .enable_all()
            .build()
            .map_err(|e| tracing::warn!("the agent's runtime could not start ({e}); the agent's work shares the editor's"))
            .ok()
    });
    match rt {
        Some(rt) => rt.handle().clone(),
        None => tokio::runtime::Handle::current(),
    }
}

/// How much nicer the agent's threads are than the server's.
const NICER: i32 = 10;

/// The calling thread's nice value (Linux applies `getpriority` and `setpriority` to one thread).
fn thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain syscall on the calling thread's own id.
    unsafe {
        Some(libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Sets the calling thread's nice value (19 is the lowest priority). Threads a runtime thread
/// starts inherit its value, so this sets rather than adds.
fn set_thread_nice(nice: Option<i32>) {
    #[cfg(target_os = "linux")]
    if let Some(n) = nice {
        // SAFETY: a plain syscall on the calling thread's own id; failure leaves the priority as it was.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t, n);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    fn nice() -> i32 {
        super::thread_nice().unwrap()
    }

    #[test]
    fn the_agents_work_runs_behind_the_editors_requests() {
        // The runtime's threads are started from this one, which has the server's priority.
        let here = nice();
        let want = (here + super::NICER).min(19);
        let (worker, blocking, spawned) = super::background().block_on(async {
            super::background()
                .spawn(async {
                    let blocking = tokio::task::spawn_blocking(nice).await.unwrap();
                    // A thread the agent's work starts (the store's writer) inherits the priority.
                    let spawned = std::thread::spawn(nice).join().unwrap();
                    (nice(), blocking, spawned)
                })
                .await
                .unwrap()
        });
        assert_eq!((worker, blocking, spawned), (want, want, want), "the agent's threads are {} nicer than {here}", super::NICER);
        assert_eq!(nice(), here, "the caller's priority is left alone");
    }
}
