//! The store: opening (and refusing what is not ours), migrations, blobs, and the queries the
//! trainer needs, on SQLite (a file) or PostgreSQL (a `postgres://` URL; see [`crate::db`]).
//! Appends go through [`crate::Writer`].

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::{Conn, Location, P, PgConn, PgTarget, pg_schema};
use crate::types::*;

/// `PRAGMA application_id` of a Keel store ("KEEL").
pub const APPLICATION_ID: i32 = 0x4B45_454C;

/// The numbered migrations, in SQLite's SQL (PostgreSQL runs them through [`pg_schema`]). On
/// SQLite the store's `user_version` is how many have run; on PostgreSQL, the rows of
/// `keel_migrations`.
const MIGRATIONS: &[&str] = &[
    // 1: episodes, steps, decisions, observations, content-addressed blobs.
    r#"
    -- Rows are appended in rowid order and found through the hash index: keyed by the (random)
    -- hash itself, every insert would land on a random page and each commit would rewrite much of
    -- the table.
    CREATE TABLE blobs (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        codec INTEGER NOT NULL,      -- 0 raw, 1 zstd
        size INTEGER NOT NULL,       -- uncompressed bytes
        data BLOB NOT NULL
    );
    CREATE TABLE episodes (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        model_name TEXT NOT NULL,
        model_version TEXT,
        task_kind TEXT NOT NULL,
        body TEXT NOT NULL,          -- the episode as JSON, its VCS patch moved to patch_blob
        patch_blob TEXT
    );
    CREATE INDEX episodes_created_at ON episodes(created_at);
    CREATE TABLE steps (
        seq INTEGER PRIMARY KEY,     -- order of arrival
        id TEXT NOT NULL UNIQUE,
        episode_id TEXT NOT NULL,
        parent_id TEXT,
        state_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        model_version TEXT,
        prompt TEXT NOT NULL,        -- {"messages": [blob hash, ...], "tools": blob hash}: each message
                                     -- is its own blob, so a growing conversation stores only what is new
        body TEXT,                   -- output, parsed action, model, timings as JSON ...
        body_blob TEXT               -- ... or in a blob when large
    );
    CREATE INDEX steps_episode ON steps(episode_id, seq);
    CREATE TABLE decisions (
        seq INTEGER PRIMARY KEY,
        step_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX decisions_step ON decisions(step_id, seq);
    CREATE INDEX decisions_at ON decisions(at);
    CREATE TABLE observations (
        step_id TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        body TEXT,
        body_blob TEXT
    );
    CREATE TABLE episode_ends (
        episode_id TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    "#,
    // 2: model versions, at most one live.
    r#"
    CREATE TABLE model_versions (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        live INTEGER NOT NULL DEFAULT 0,
        body TEXT NOT NULL
    );
    CREATE UNIQUE INDEX model_versions_one_live ON model_versions(live) WHERE live = 1;
    "#,
    // 3: scheduled training runs and the stage each is in (a killed run resumes there).
    r#"
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        stage TEXT NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX runs_created_at ON runs(created_at);
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Texts longer than this go to a blob instead of inline.
const INLINE_LIMIT: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store path {0} is a directory, not a file")]
    IsDirectory(PathBuf),
    #[error("{path} is not a Keel store: {detail}")]
    NotAStore { path: PathBuf, detail: String },
    #[error(
        "store {path} has schema version {found}, newer than this Keel understands ({supported}); upgrade Keel to open it"
    )]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("store {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot open store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL store failed; `store` is its URL without the password.
    #[error("PostgreSQL store {store}: {detail}")]
    Postgres { store: String, detail: String },
    #[error("store holds malformed data: {0}")]
    Data(String),
    #[error("write failed: {0}")]
    Write(String),
    #[error("the store's writer has stopped")]
    WriterGone,
}

impl StoreError {
    fn at(path: &Path, e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(NotADatabase) => {
                StoreError::NotAStore { path: path.to_path_buf(), detail: "the file is not a SQLite database".into() }
            }
            Some(DatabaseCorrupt) => StoreError::Corrupt { path: path.to_path_buf(), detail: e.to_string() },
            _ => StoreError::Sqlite(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The default store path: `$KEEL_STORE`, else `$XDG_DATA_HOME/keel/keel.db`, else
/// `~/.local/share/keel/keel.db`. (`KEEL_STORE` may be a `postgres://` URL.)
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEL_STORE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    data_dir().join("keel.db")
}

/// Keel's data folder on this machine: `$XDG_DATA_HOME/keel`, else `~/.local/share/keel`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("keel")
}

/// How long a commit waits for the disk (SQLite's `PRAGMA synchronous` on every connection of a
/// store handle and its writer; PostgreSQL's `synchronous_commit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `NORMAL`: in WAL mode a commit survives the process being killed; a power cut or an OS crash
    /// can lose the last commits. The default. On PostgreSQL, `synchronous_commit = local`: a commit
    /// is flushed to the server's WAL before it is acknowledged (it survives the server crashing).
    #[default]
    Normal,
    /// `FULL`: the WAL is synced at every commit, so a commit also survives a power cut, at the
    /// cost of an fsync per batch. On PostgreSQL, `synchronous_commit = on`: it also waits for the
    /// synchronous standbys, if the server has any.
    Full,
}

impl Durability {
    /// The value of `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        }
    }

    /// The value of PostgreSQL's `synchronous_commit`.
    pub fn synchronous_commit(self) -> &'static str {
        match self {
            Durability::Normal => "local",
            Durability::Full => "on",
        }
    }
}

/// A handle to a store: a SQLite file, or a PostgreSQL database named by a `postgres://` URL.
/// Reading is done on this handle's connection; appends go through a [`crate::Writer`] made by
/// [`Store::writer`].
///
/// On PostgreSQL the handle's methods do blocking network I/O through the `postgres` crate's own
/// runtime: do not call them on a thread that runs an async runtime (use `spawn_blocking`).
pub struct Store {
    /// The path, or the URL without its password.
    path: PathBuf,
    location: Location,
    conn: Mutex<Conn>,
    durability: Durability,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Open a connection to a store, creating and migrating it when needed. Shared by readers and the
/// writer.
pub(crate) fn connect(location: &Location, durability: Durability) -> Result<Conn> {
    connect_at(location, SCHEMA_VERSION, durability)
}

fn connect_at(location: &Location, target_version: i64, durability: Durability) -> Result<Conn> {
    match location {
        Location::File(path) => sqlite_connect_at(path, target_version, durability).map(Conn::Lite),
        Location::Postgres(t) => pg_connect_at(t, target_version, durability),
    }
}

fn sqlite_connect_at(path: &Path, target_version: i64, durability: Durability) -> Result<Connection> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    if path.is_dir() {
        return Err(StoreError::IsDirectory(path.to_path_buf()));
    }
    if !path.exists() {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::create_dir_all(parent).map_err(io)?;
                let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
            }
        }
        // Create it ourselves so it is 0600 from the first byte; SQLite gives its -wal and -shm
        // files the same mode.
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| StoreError::at(path, e))?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(|e| StoreError::at(path, e))?;

    // Look before writing anything: a file that is not ours is left exactly as it was.
    let (app_id, version, objects) = probe(&conn).map_err(|e| StoreError::at(path, e))?;
    if app_id != APPLICATION_ID && !(app_id == 0 && objects == 0) {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            detail: format!("a SQLite database of another application (application_id {app_id:#x}, {objects} objects)"),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found: version, supported: SCHEMA_VERSION });
    }

    conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| StoreError::at(path, e))?;
    // In WAL mode NORMAL loses nothing when the process dies (kill -9): a committed transaction is in
    // the WAL file, which the OS keeps. Only a power cut can lose the last commits; FULL keeps those.
    conn.pragma_update(None, "synchronous", durability.pragma()).map_err(|e| StoreError::at(path, e))?;
    conn.pragma_update(None, "foreign_keys", "OFF").map_err(|e| StoreError::at(path, e))?;
    conn.pragma_update(None, "cache_size", -32768).map_err(|e| StoreError::at(path, e))?;
    // After a checkpoint resets the WAL, truncate a file that grew large during a burst.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024).map_err(|e| StoreError::at(path, e))?;
    if version < target_version {
        migrate(&conn, target_version).map_err(|e| StoreError::at(path, e))?;
    }
    Ok(conn)
}

fn probe(conn: &Connection) -> rusqlite::Result<(i32, i64, i64)> {
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok((app_id, version, objects))
}

fn migrate(conn: &Connection, target: i64) -> rusqlite::Result<()> {
    // IMMEDIATE: two processes opening a new store at once must not both run migration 1.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let run = || -> rusqlite::Result<()> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().take(target as usize).skip(version.max(0) as usize) {
            conn.execute_batch(sql)?;
            tracing::info!(version = i + 1, "store migrated");
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        conn.pragma_update(None, "user_version", target.max(version))?;
        Ok(())
    };
    match run() {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// On PostgreSQL the numbered migrations that ran are rows of this table (SQLite keeps their count
/// in `PRAGMA user_version`); its presence marks a database (or schema) as a Keel store.
const PG_MIGRATIONS_TABLE: &str = "CREATE TABLE keel_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// (a Keel store, schema version, relations in the current schema)
fn pg_probe(c: &mut Conn) -> Result<(bool, i64, i64)> {
    let ours = c
        .query_dynamic("SELECT to_regclass(quote_ident(current_schema()) || '.keel_migrations') IS NOT NULL", &[])?
        .first()
        .map(|r| r.i(0))
        .transpose()?
        .unwrap_or(0)
        != 0;
    let objects = c
        .query_dynamic(
            "SELECT count(*) FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
             WHERE n.nspname = current_schema() AND k.relkind IN ('r', 'v', 'm', 'p', 'f')",
            &[],
        )?
        .first()
        .map(|r| r.i(0))
        .transpose()?
        .unwrap_or(0);
    let version = if ours {
        c.query_dynamic("SELECT coalesce(max(version), 0) FROM keel_migrations", &[])?.first().map(|r| r.i(0)).transpose()?.unwrap_or(0)
    } else {
        0
    };
    Ok((ours, version, objects))
}

fn pg_check(t: &PgTarget, (ours, version, objects): (bool, i64, i64)) -> Result<()> {
    if !ours && objects > 0 {
        return Err(StoreError::NotAStore {
            path: PathBuf::from(&t.shown),
            detail: format!("a PostgreSQL database (schema) of another application ({objects} relations, no keel_migrations table)"),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: PathBuf::from(&t.shown), found: version, supported: SCHEMA_VERSION });
    }
    Ok(())
}

fn pg_connect_at(t: &PgTarget, target_version: i64, durability: Durability) -> Result<Conn> {
    let mut c = Conn::Pg(Box::new(PgConn::connect(t, durability.synchronous_commit())?));
    // Look before writing anything, as with a file.
    let probed = pg_probe(&mut c)?;
    pg_check(t, probed)?;
    if probed.1 < target_version {
        c.transaction(|c| {
            // Two processes opening a new store at once must not both run migration 1: the first
            // holds this lock until it commits; the second then finds the migrations done.
            c.query_dynamic("SELECT pg_advisory_xact_lock(?1)", &[P::I(APPLICATION_ID.into())])?;
            let (ours, version, objects) = pg_probe(c)?;
            pg_check(t, (ours, version, objects))?;
            if !ours {
                c.batch(PG_MIGRATIONS_TABLE)?;
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().take(target_version as usize).skip(version.max(0) as usize) {
                c.batch(&pg_schema(sql))?;
                c.query_dynamic(
                    "INSERT INTO keel_migrations (version, applied_at) VALUES (?1, ?2)",
                    &[P::I(i as i64 + 1), P::I(now_ms())],
                )?;
                tracing::info!(version = i + 1, "store migrated");
            }
            Ok(())
        })?;
    }
    Ok(c)
}

impl Store {
    /// Open (creating or migrating) the store at `path`: a file, or a PostgreSQL database when
    /// `path` is a `postgres://` or `postgresql://` URL (see [`crate::redact_location`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, Durability::default())
    }

    /// [`Store::open`] with the given durability for this handle and the writers it starts.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Store> {
        let location = Location::parse(path.as_ref())?;
        let conn = connect(&location, durability)?;
        Ok(Store { path: location.shown(), location, conn: Mutex::new(conn), durability })
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Open the store at [`default_path`].
    pub fn open_default() -> Result<Store> {
        Store::open(default_path())
    }

    /// Create a store at an older schema version (for migration tests and tools).
    #[doc(hidden)]
    pub fn create_at_version(path: impl AsRef<Path>, version: i64) -> Result<()> {
        connect_at(&Location::parse(path.as_ref())?, version, Durability::default()).map(drop)
    }

    /// The store's file, or its URL without the password.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store is a PostgreSQL database (not a file).
    pub fn is_postgres(&self) -> bool {
        matches!(self.location, Location::Postgres(_))
    }

    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    /// This handle's connection, connected again if a PostgreSQL connection was lost.
    fn db(&self) -> Result<std::sync::MutexGuard<'_, Conn>> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        c.ensure_connected()?;
        Ok(c)
    }

    /// The schema version of the open store.
    pub fn schema_version(&self) -> Result<i64> {
        let mut c = self.db()?;
        match &mut *c {
            Conn::Lite(l) => Ok(l.pragma_query_value(None, "user_version", |r| r.get(0))?),
            pg => pg.query_i64("SELECT coalesce(max(version), 0) FROM keel_migrations", &[]),
        }
    }

    /// How durable this handle's commits are: 1 normal, 2 full (see [`crate::Writer::synchronous`]).
    pub fn synchronous(&self) -> Result<i64> {
        self.db()?.synchronous()
    }

    /// Start a writer for this store: a thread with its own connection that batches appends.
    pub fn writer(&self) -> Result<crate::Writer> {
        crate::Writer::start(&self.location, self.durability)
    }

    /// SQLite's `PRAGMA integrity_check`: `"ok"` or the problems it found. On PostgreSQL, which
    /// checks its own pages, `"ok"` once the server answers at the current schema version.
    pub fn integrity_check(&self) -> Result<String> {
        let mut c = self.db()?;
        match &mut *c {
            Conn::Lite(l) => {
                let rows: Vec<String> =
                    l.prepare("PRAGMA integrity_check")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok(rows.join("\n"))
            }
            pg => {
                let v = pg.query_i64("SELECT coalesce(max(version), 0) FROM keel_migrations", &[])?;
                Ok(if v == SCHEMA_VERSION { "ok".into() } else { format!("schema version {v}, expected {SCHEMA_VERSION}") })
            }
        }
    }

    /// Counts of what the store holds.
    pub fn stats(&self) -> Result<Stats> {
        let mut c = self.db()?;
        let decisions_by_kind = c
            .query(
                "SELECT d.kind, count(*) FROM decisions d
                 JOIN (SELECT step_id, max(seq) AS seq FROM decisions GROUP BY step_id) last ON last.seq = d.seq
                 GROUP BY d.kind ORDER BY d.kind",
                &[],
            )?
            .into_iter()
            .map(|mut r| Ok((r.t(0)?, r.i(1)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stats {
            episodes: c.query_i64("SELECT count(*) FROM episodes", &[])?,
            steps: c.query_i64("SELECT count(*) FROM steps", &[])?,
            decisions: c.query_i64("SELECT count(*) FROM decisions", &[])?,
            observations: c.query_i64("SELECT count(*) FROM observations", &[])?,
            blobs: c.query_i64("SELECT count(*) FROM blobs", &[])?,
            blob_bytes: c.query_i64("SELECT CAST(coalesce(sum(length(data)), 0) AS BIGINT) FROM blobs", &[])?,
            blob_bytes_uncompressed: c.query_i64("SELECT CAST(coalesce(sum(size), 0) AS BIGINT) FROM blobs", &[])?,
            decisions_by_kind,
        })
    }

    /// Parse a time given on a command line: milliseconds since the epoch, or any date/time SQLite
    /// understands (`2026-11-24`, `2026-11-24T10:00:00Z`, `2026-11-24 10:00:00+01:00`). The same on
    /// both backends: dates are read by an in-memory SQLite.
    pub fn parse_time(&self, s: &str) -> Result<Millis> {
        if let Ok(ms) = s.trim().parse::<i64>() {
            return Ok(ms);
        }
        let mem = Connection::open_in_memory()?;
        let v: Option<f64> = mem.query_row("SELECT unixepoch(?1, 'subsec')", [s.trim()], |r| r.get(0))?;
        v.map(|secs| (secs * 1000.0).round() as i64)
            .ok_or_else(|| StoreError::Data(format!("`{s}` is not a time (give milliseconds or a date like 2026-11-24T10:00:00Z)")))
    }

    pub fn episode(&self, id: Uuid) -> Result<Option<Episode>> {
        let row = self.db()?.query_opt("SELECT body, patch_blob FROM episodes WHERE id = ?1", &[P::T(&id.to_string())])?;
        row.map(|mut r| {
            let (body, patch) = (r.t(0)?, r.ot(1)?);
            self.decode_episode(&body, patch.as_deref())
        })
        .transpose()
    }

    /// Episodes, oldest first, matching the filter.
    pub fn episodes(&self, filter: &EpisodeFilter) -> Result<Vec<Episode>> {
        let mut sql = String::from("SELECT body, patch_blob FROM episodes e WHERE 1=1");
        let mut args: Vec<P> = Vec::new();
        if let Some(since) = filter.since {
            args.push(P::I(since));
            sql.push_str(&format!(" AND e.created_at >= ?{}", args.len()));
        }
        if let Some(v) = &filter.model_version {
            args.push(P::T(v));
            let n = args.len();
            sql.push_str(&format!(
                " AND (e.model_version = ?{n} OR EXISTS (SELECT 1 FROM steps s WHERE s.episode_id = e.id AND s.model_version = ?{n}))"
            ));
        }
        sql.push_str(" ORDER BY e.created_at, e.id");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let rows = self.db()?.query_dynamic(&sql, &args)?;
        rows.into_iter()
            .map(|mut r| {
                let (body, patch) = (r.t(0)?, r.ot(1)?);
                self.decode_episode(&body, patch.as_deref())
            })
            .collect()
    }

    fn decode_episode(&self, body: &str, patch: Option<&str>) -> Result<Episode> {
        let mut e: Episode = serde_json::from_str(body).map_err(|e| StoreError::Data(format!("episode: {e}")))?;
        if let (Some(hash), Some(vcs)) = (patch, e.workspace.vcs.as_mut()) {
            vcs.patch = self.blob_text(hash)?;
        }
        Ok(e)
    }

    /// How an episode ended, if it has.
    pub fn episode_end(&self, id: Uuid) -> Result<Option<EpisodeEndEvent>> {
        self.db()?
            .query_opt("SELECT body FROM episode_ends WHERE episode_id = ?1", &[P::T(&id.to_string())])?
            .map(|mut r| serde_json::from_str(&r.t(0)?).map_err(|e| StoreError::Data(format!("episode end: {e}"))))
            .transpose()
    }

    /// An episode's steps in the order they were recorded, each with its decisions and observation.
    pub fn steps(&self, episode_id: Uuid) -> Result<Vec<StepRecord>> {
        let rows = self.db()?.query(
            "SELECT id, parent_id, state_hash, created_at, prompt, body, body_blob
             FROM steps WHERE episode_id = ?1 ORDER BY seq",
            &[P::T(&episode_id.to_string())],
        )?;
        let mut decisions = self.decisions_of_episode(episode_id)?;
        let mut observations = self.observations_of_episode(episode_id)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut messages = PromptCache::default();
        for mut r in rows {
            let (id, parent, state_hash, created_at, manifest, body, body_blob) =
                (r.t(0)?, r.ot(1)?, r.t(2)?, r.i(3)?, r.t(4)?, r.ot(5)?, r.ot(6)?);
            let manifest: PromptManifest = serde_json::from_str(&manifest)
                .map_err(|e| StoreError::Data(format!("step {id} prompt: {e}")))?;
            let prompt = self.assemble_prompt(&manifest, &mut messages)?;
            let body = match (body, body_blob) {
                (Some(b), _) => b,
                (None, Some(h)) => self.blob_text(&h)?,
                (None, None) => return Err(StoreError::Data(format!("step {id} has no body"))),
            };
            let b: StepBody = serde_json::from_str(&body).map_err(|e| StoreError::Data(format!("step {id}: {e}")))?;
            let id = parse_uuid(&id)?;
            let step = Step {
                id,
                episode_id,
                parent_id: parent.as_deref().map(parse_uuid).transpose()?,
                state_hash,
                created_at,
                prompt,
                output: b.output,
                parsed: b.parsed,
                model: b.model,
                timings: b.timings,
            };
            out.push(StepRecord {
                decisions: decisions.remove(&id).unwrap_or_default(),
                observation: observations.remove(&id),
                step,
            });
        }
        Ok(out)
    }

    fn assemble_prompt(&self, m: &PromptManifest, cache: &mut PromptCache) -> Result<Prompt> {
        let mut out = Prompt { messages: Vec::with_capacity(m.messages.len()), tools: Default::default() };
        for h in &m.messages {
            if let Some(msg) = cache.messages.get(h) {
                out.messages.push(msg.clone());
                continue;
            }
            let msg: Message = serde_json::from_str(&self.blob_text(h)?)
                .map_err(|e| StoreError::Data(format!("message blob {h}: {e}")))?;
            cache.messages.insert(h.clone(), msg.clone());
            out.messages.push(msg);
        }
        if let Some(t) = &m.tools {
            out.tools = match cache.tools.get(t) {
                Some(tools) => tools.clone(),
                None => {
                    let tools: Tools = serde_json::from_str(&self.blob_text(t)?)
                        .map_err(|e| StoreError::Data(format!("tools blob {t}: {e}")))?;
                    cache.tools.insert(t.clone(), tools.clone());
                    tools
                }
            };
        }
        Ok(out)
    }

    fn decisions_of_episode(&self, episode_id: Uuid) -> Result<HashMap<Uuid, Vec<DecisionEvent>>> {
        let rows = self.db()?.query(
            "SELECT d.body FROM decisions d JOIN steps s ON s.id = d.step_id
             WHERE s.episode_id = ?1 ORDER BY d.seq",
            &[P::T(&episode_id.to_string())],
        )?;
        let mut map: HashMap<Uuid, Vec<DecisionEvent>> = HashMap::new();
        for mut r in rows {
            let d: DecisionEvent =
                serde_json::from_str(&r.t(0)?).map_err(|e| StoreError::Data(format!("decision: {e}")))?;
            map.entry(d.step_id).or_default().push(d);
        }
        Ok(map)
    }

    fn observations_of_episode(&self, episode_id: Uuid) -> Result<HashMap<Uuid, Observation>> {
        let rows = self.db()?.query(
            "SELECT o.step_id, o.body, o.body_blob FROM observations o JOIN steps s ON s.id = o.step_id
             WHERE s.episode_id = ?1",
            &[P::T(&episode_id.to_string())],
        )?;
        let mut map = HashMap::new();
        for mut r in rows {
            let (id, body, blob) = (r.t(0)?, r.ot(1)?, r.ot(2)?);
            let body = match (body, blob) {
                (Some(b), _) => b,
                (None, Some(h)) => self.blob_text(&h)?,
                (None, None) => continue,
            };
            let o: Observation = serde_json::from_str(&body).map_err(|e| StoreError::Data(format!("observation: {e}")))?;
            map.insert(parse_uuid(&id)?, o);
        }
        Ok(map)
    }

    /// An episode with its steps arranged as a decision tree.
    pub fn tree(&self, episode_id: Uuid) -> Result<Option<EpisodeTree>> {
        let Some(episode) = self.episode(episode_id)? else { return Ok(None) };
        Ok(Some(EpisodeTree { end: self.episode_end(episode_id)?, steps: self.steps(episode_id)?, episode }))
    }

    /// Every step recorded at a state (across episodes), with its latest decision. (A scan: the
    /// state hash is not indexed, to keep appends cheap.)
    pub fn decisions_at_state(&self, state_hash: &str) -> Result<Vec<(Uuid, Option<Decision>)>> {
        let rows = self.db()?.query(
            "SELECT s.id, (SELECT d.body FROM decisions d WHERE d.step_id = s.id ORDER BY d.seq DESC LIMIT 1)
             FROM steps s WHERE s.state_hash = ?1 ORDER BY s.seq",
            &[P::T(state_hash)],
        )?;
        rows.into_iter()
            .map(|mut r| {
                let (id, body) = (r.t(0)?, r.ot(1)?);
                let d = body
                    .map(|b| serde_json::from_str::<DecisionEvent>(&b).map(|e| e.decision))
                    .transpose()
                    .map_err(|e| StoreError::Data(format!("decision: {e}")))?;
                Ok((parse_uuid(&id)?, d))
            })
            .collect()
    }

    /// How many decisions were recorded at or after `since` (a trigger for retraining).
    pub fn count_decisions_since(&self, since: Millis) -> Result<i64> {
        self.db()?.query_i64("SELECT count(*) FROM decisions WHERE at >= ?1 AND kind != 'auto'", &[P::I(since)])
    }

    /// Read a blob as UTF-8 text.
    pub fn blob_text(&self, hash: &str) -> Result<String> {
        let bytes = read_blob(&mut *self.db()?, hash)?;
        String::from_utf8(bytes).map_err(|_| StoreError::Data(format!("blob {hash} is not UTF-8")))
    }

    // ---- model versions -------------------------------------------------------------------

    /// Record a model version (replacing one with the same id). `live` is ignored here; use
    /// [`Store::set_live`].
    pub fn put_model_version(&self, v: &ModelVersion) -> Result<()> {
        let mut v = v.clone();
        let mut c = self.db()?;
        let live = c.query_opt("SELECT live FROM model_versions WHERE id = ?1", &[P::T(&v.id)])?.map(|r| r.i(0)).transpose()?.unwrap_or(0) != 0;
        v.live = live;
        let body = serde_json::to_string(&v).map_err(|e| StoreError::Data(e.to_string()))?;
        c.execute(
            "INSERT INTO model_versions (id, created_at, live, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            &[P::T(&v.id), P::I(v.created_at), P::I(live.into()), P::T(&body)],
        )?;
        Ok(())
    }

    /// Make one version live (and no other), atomically.
    pub fn set_live(&mut self, id: &str) -> Result<()> {
        self.db()?.transaction(|tx| {
            let exists = tx.query_i64("SELECT count(*) FROM model_versions WHERE id = ?1", &[P::T(id)])? > 0;
            if !exists {
                return Err(StoreError::Data(format!("no model version `{id}`")));
            }
            tx.execute("UPDATE model_versions SET live = 0 WHERE live = 1", &[])?;
            tx.execute("UPDATE model_versions SET live = 1 WHERE id = ?1", &[P::T(id)])?;
            Ok(())
        })
    }

    /// All model versions, oldest first.
    pub fn model_versions(&self) -> Result<Vec<ModelVersion>> {
        let rows = self.db()?.query("SELECT body, live FROM model_versions ORDER BY created_at, id", &[])?;
        rows.into_iter()
            .map(|mut r| {
                let mut v: ModelVersion =
                    serde_json::from_str(&r.t(0)?).map_err(|e| StoreError::Data(format!("model version: {e}")))?;
                v.live = r.i(1)? != 0;
                Ok(v)
            })
            .collect()
    }

    pub fn live_model_version(&self) -> Result<Option<ModelVersion>> {
        Ok(self.model_versions()?.into_iter().find(|v| v.live))
    }

    // ---- scheduled runs -------------------------------------------------------------------

    /// Insert or update a run (by id).
    pub fn put_run(&self, r: &Run) -> Result<()> {
        let body = serde_json::to_string(&r.detail).map_err(|e| StoreError::Data(e.to_string()))?;
        self.db()?.execute(
            "INSERT INTO runs (id, created_at, updated_at, stage, status, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, stage = excluded.stage,
             status = excluded.status, body = excluded.body",
            &[P::T(&r.id), P::I(r.created_at), P::I(r.updated_at), P::T(&r.stage), P::T(&r.status), P::T(&body)],
        )?;
        Ok(())
    }

    /// All runs, oldest first.
    pub fn runs(&self) -> Result<Vec<Run>> {
        let rows = self.db()?.query("SELECT id, created_at, updated_at, stage, status, body FROM runs ORDER BY created_at, id", &[])?;
        rows.into_iter()
            .map(|mut r| {
                let (id, created_at, updated_at, stage, status, body) = (r.t(0)?, r.i(1)?, r.i(2)?, r.t(3)?, r.t(4)?, r.t(5)?);
                let detail = serde_json::from_str(&body).map_err(|e| StoreError::Data(format!("run {id}: {e}")))?;
                Ok(Run { id, created_at, updated_at, stage, status, detail })
            })
            .collect()
    }
}

/// A scheduled training run: the stage it is in and what its stages produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub stage: String,
    /// `running`, `promoted`, `refused`, `skipped` or `failed`.
    pub status: String,
    pub detail: serde_json::Value,
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Data(format!("bad id `{s}`: {e}")))
}

pub(crate) fn read_blob(conn: &mut Conn, hash: &str) -> Result<Vec<u8>> {
    let mut row = conn
        .query_opt("SELECT codec, size, data FROM blobs WHERE hash = ?1", &[P::T(hash)])?
        .ok_or_else(|| StoreError::Data(format!("missing blob {hash}")))?;
    let (codec, size, data) = (row.i(0)?, row.i(1)?, row.b(2)?);
    match codec {
        0 => Ok(data),
        1 => zstd::bulk::decompress(&data, size.max(0) as usize)
            .map_err(|e| StoreError::Data(format!("blob {hash} does not decompress: {e}"))),
        c => Err(StoreError::Data(format!("blob {hash} has unknown codec {c}"))),
    }
}

/// The hash a blob is stored under.
pub fn blob_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..32].to_string()
}

/// Store bytes as a blob (idempotent); returns its hash.
pub(crate) fn put_blob(tx: &mut Conn, bytes: &[u8]) -> Result<String> {
    let hash = blob_hash(bytes);
    put_blob_hashed(tx, &hash, bytes)?;
    Ok(hash)
}

pub(crate) fn put_blob_hashed(tx: &mut Conn, hash: &str, bytes: &[u8]) -> Result<()> {
    thread_local! {
        // A compression context allocates megabytes; make one per thread, not one per blob.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            std::cell::RefCell::new(zstd::bulk::Compressor::new(1).ok());
    }
    let (codec, data): (i64, std::borrow::Cow<[u8]>) = if bytes.len() > 128 {
        let compressed = COMPRESSOR.with_borrow_mut(|c| c.as_mut().and_then(|c| c.compress(bytes).ok()));
        match compressed {
            Some(c) if c.len() < bytes.len() => (1, c.into()),
            _ => (0, bytes.into()),
        }
    } else {
        (0, bytes.into())
    };
    tx.execute(
        "INSERT INTO blobs (hash, codec, size, data) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        &[P::T(hash), P::I(codec), P::I(bytes.len() as i64), P::B(&data)],
    )?;
    Ok(())
}

/// A text column that moves to a blob when large: (inline, blob hash).
pub(crate) fn put_text(tx: &mut Conn, text: String) -> Result<(Option<String>, Option<String>)> {
    if text.len() <= INLINE_LIMIT {
        Ok((Some(text), None))
    } else {
        Ok((None, Some(put_blob(tx, text.as_bytes())?)))
    }
}

/// Blobs already decoded while reading an episode (its steps share most of their prompts).
#[derive(Default)]
struct PromptCache {
    messages: HashMap<String, Message>,
    tools: HashMap<String, Tools>,
}

/// How a step's prompt is stored: blob hashes of its messages and of its tool schema.
#[derive(Serialize, Deserialize)]
pub(crate) struct PromptManifest {
    pub messages: Vec<String>,
    #[serde(default)]
    pub tools: Option<String>,
}

/// The parts of a step kept as JSON beside its indexed columns.
#[derive(Serialize, Deserialize)]
pub(crate) struct StepBody {
    pub output: ModelOutput,
    pub parsed: Parsed,
    pub model: ModelRef,
    #[serde(default)]
    pub timings: Timings,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct EpisodeFilter {
    /// Episodes created at or after this time.
    pub since: Option<Millis>,
    /// Episodes started with, or with a step produced by, this model version.
    pub model_version: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub episodes: i64,
    pub steps: i64,
    pub decisions: i64,
    pub observations: i64,
    pub blobs: i64,
    pub blob_bytes: i64,
    pub blob_bytes_uncompressed: i64,
    /// Steps by their latest decision.
    pub decisions_by_kind: Vec<(String, i64)>,
}

/// A step with what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    /// In the order they were made; the last is the step's decision.
    pub decisions: Vec<DecisionEvent>,
    #[serde(default)]
    pub observation: Option<Observation>,
}

impl StepRecord {
    /// The step's latest decision; `None` while it is pending.
    pub fn decision(&self) -> Option<&Decision> {
        self.decisions.last().map(|d| &d.decision)
    }
}

/// An episode's steps as a tree: siblings (same parent, same state) are alternatives at one state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeTree {
    pub episode: Episode,
    #[serde(default)]
    pub end: Option<EpisodeEndEvent>,
    pub steps: Vec<StepRecord>,
}

/// One state of an episode and the steps proposed at it, in the order they were recorded.
#[derive(Debug, Clone)]
pub struct StateGroup<'a> {
    pub parent_id: Option<Uuid>,
    pub state_hash: &'a str,
    pub steps: Vec<&'a StepRecord>,
}

impl EpisodeTree {
    /// The states of the episode in the order they were first reached, each with its alternatives.
    pub fn states(&self) -> Vec<StateGroup<'_>> {
        let mut index: HashMap<(Option<Uuid>, &str), usize> = HashMap::new();
        let mut groups: Vec<StateGroup> = Vec::new();
        for s in &self.steps {
            let key = (s.step.parent_id, s.step.state_hash.as_str());
            let i = *index.entry(key).or_insert_with(|| {
                groups.push(StateGroup { parent_id: key.0, state_hash: key.1, steps: Vec::new() });
                groups.len() - 1
            });
            groups[i].steps.push(s);
        }
        groups
    }

    /// The steps whose parent is `parent` (the children of a node).
    pub fn children(&self, parent: Option<Uuid>) -> impl Iterator<Item = &StepRecord> {
        self.steps.iter().filter(move |s| s.step.parent_id == parent)
    }

    pub fn step(&self, id: Uuid) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.step.id == id)
    }
}
