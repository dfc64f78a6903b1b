//! The two backends behind [`crate::Store`]: one connection type over SQLite (a file, the embedded
//! default) and PostgreSQL (a `postgres://` URL, for a team sharing one store).
//!
//! Every query is written once, in the SQL both understand, with `?N` placeholders (rewritten to
//! `$N` for PostgreSQL). Values go in as [`P`] and come out as [`V`], so the store's code never
//! names either driver. The schema text is SQLite's; [`pg_schema`] maps its few types
//! (`INTEGER` → `BIGINT`, `INTEGER PRIMARY KEY` → an identity column, `BLOB` → `BYTEA`).
//!
//! The PostgreSQL client is the synchronous `postgres` crate: it runs its own small tokio runtime,
//! so a connection must not be used on a thread that is running an async runtime (the store is
//! blocking I/O either way: callers in async code use `spawn_blocking`, as keel-lsp does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::store::StoreError;

/// Where a store lives.
#[derive(Clone)]
pub(crate) enum Location {
    File(PathBuf),
    Postgres(Box<PgTarget>),
}

/// A PostgreSQL store: the parsed connection settings (with the password) and the URL as it may be
/// shown (without it).
#[derive(Clone)]
pub(crate) struct PgTarget {
    pub config: postgres::Config,
    pub shown: String,
}

/// Whether a store location names a PostgreSQL server rather than a file.
pub fn is_postgres_url(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A store location with any password in it replaced by `***` (for messages and logs). A file path
/// is returned as it is.
pub fn redact_location(s: &str) -> String {
    static USERINFO: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"(?i)^(\s*postgres(?:ql)?://[^:/@?#]*:)[^@/?#]*@").unwrap());
    static PARAM: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"(?i)([?&]password=)[^&#]*").unwrap());
    if !is_postgres_url(s) {
        return s.to_string();
    }
    let s = USERINFO.replace(s, "${1}***@");
    PARAM.replace_all(&s, "${1}***").into_owned()
}

impl Location {
    pub fn parse(path: &Path) -> Result<Location, StoreError> {
        let Some(s) = path.to_str().filter(|s| is_postgres_url(s)) else {
            return Ok(Location::File(path.to_path_buf()));
        };
        let shown = redact_location(s);
        let bad = |detail: String| StoreError::Postgres { store: shown.clone(), detail };
        // `passfile=` is ours (a file holding the password), not the driver's: take it out.
        let (base, query) = s.trim().split_once('?').unwrap_or((s.trim(), ""));
        let mut passfile = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .filter(|kv| match kv.strip_prefix("passfile=") {
                Some(f) => {
                    passfile = Some(f.to_string());
                    false
                }
                None => true,
            })
            .collect();
        let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        let mut config = postgres::Config::from_str(&url).map_err(|e| bad(format!("not a valid PostgreSQL URL: {e}")))?;
        if config.get_password().is_none() {
            let file = passfile.map(PathBuf::from).or_else(|| std::env::var_os("KEEL_STORE_PASSWORD_FILE").filter(|f| !f.is_empty()).map(PathBuf::from));
            if let Some(pw) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
                config.password(pw);
            } else if let Some(f) = file {
                let text = std::fs::read_to_string(&f)
                    .map_err(|e| bad(format!("cannot read the password file {}: {e}", f.display())))?;
                config.password(text.trim_end_matches(['\n', '\r']));
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("keel");
        }
        Ok(Location::Postgres(Box::new(PgTarget { config, shown })))
    }

    /// The location as it may be shown: a path, or the URL without its password.
    pub fn shown(&self) -> PathBuf {
        match self {
            Location::File(p) => p.clone(),
            Location::Postgres(t) => PathBuf::from(&t.shown),
        }
    }
}

/// A parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum P<'a> {
    I(i64),
    T(&'a str),
    /// A text, or NULL.
    OT(Option<&'a str>),
    B(&'a [u8]),
}

impl<'a> From<&'a str> for P<'a> {
    fn from(s: &'a str) -> P<'a> {
        P::T(s)
    }
}
impl<'a> From<&'a String> for P<'a> {
    fn from(s: &'a String) -> P<'a> {
        P::T(s)
    }
}
impl<'a> From<Option<&'a str>> for P<'a> {
    fn from(s: Option<&'a str>) -> P<'a> {
        P::OT(s)
    }
}
impl<'a> From<&'a Option<String>> for P<'a> {
    fn from(s: &'a Option<String>) -> P<'a> {
        P::OT(s.as_deref())
    }
}
impl From<i64> for P<'_> {
    fn from(i: i64) -> Self {
        P::I(i)
    }
}

impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            P::I(i) => ToSqlOutput::Borrowed(ValueRef::Integer(i)),
            P::T(s) | P::OT(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            P::OT(None) => ToSqlOutput::Borrowed(ValueRef::Null),
            P::B(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// A value read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum V {
    Null,
    I(i64),
    T(String),
    B(Vec<u8>),
}

/// A row read: its values by column.
#[derive(Debug)]
pub(crate) struct Row(Vec<V>);

impl Row {
    pub fn i(&self, i: usize) -> Result<i64, StoreError> {
        match self.0.get(i) {
            Some(V::I(v)) => Ok(*v),
            other => Err(StoreError::Data(format!("column {i}: expected an integer, found {other:?}"))),
        }
    }

    pub fn t(&mut self, i: usize) -> Result<String, StoreError> {
        self.ot(i)?.ok_or_else(|| StoreError::Data(format!("column {i}: expected a text, found NULL")))
    }

    pub fn ot(&mut self, i: usize) -> Result<Option<String>, StoreError> {
        match self.0.get_mut(i).map(|v| std::mem::replace(v, V::Null)) {
            Some(V::T(s)) => Ok(Some(s)),
            Some(V::Null) => Ok(None),
            other => Err(StoreError::Data(format!("column {i}: expected a text, found {other:?}"))),
        }
    }

    pub fn b(&mut self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.0.get_mut(i).map(|v| std::mem::replace(v, V::Null)) {
            Some(V::B(b)) => Ok(b),
            Some(V::T(s)) => Ok(s.into_bytes()),
            other => Err(StoreError::Data(format!("column {i}: expected bytes, found {other:?}"))),
        }
    }
}

/// A PostgreSQL connection with its prepared statements.
pub(crate) struct PgConn {
    client: postgres::Client,
    statements: HashMap<&'static str, postgres::Statement>,
    pub target: PgTarget,
    synchronous_commit: &'static str,
    /// Inside a transaction a lost connection is the transaction's failure, not to be papered over.
    in_transaction: bool,
    /// While the writer writes a batch: the rows its statements would insert, sent at the end as
    /// one multi-row statement per kind (one round trip per table instead of one per row).
    buffered: Option<Vec<(&'static str, Vec<Vec<Owned>>)>>,
}

/// A parameter kept until the buffered rows are sent.
#[derive(Debug, Clone)]
pub(crate) enum Owned {
    I(i64),
    T(Option<String>),
    B(Vec<u8>),
}

impl Owned {
    fn of(p: &P) -> Owned {
        match *p {
            P::I(i) => Owned::I(i),
            P::T(s) => Owned::T(Some(s.to_string())),
            P::OT(s) => Owned::T(s.map(str::to_string)),
            P::B(b) => Owned::B(b.to_vec()),
        }
    }

    fn as_p(&self) -> P<'_> {
        match self {
            Owned::I(i) => P::I(*i),
            Owned::T(s) => P::OT(s.as_deref()),
            Owned::B(b) => P::B(b),
        }
    }
}

/// The most parameters in one statement (PostgreSQL's limit is 65 535).
const MAX_PARAMS: usize = 30_000;

/// `INSERT ... VALUES (?1, .., ?k) <rest>` for `rows` rows: `VALUES ($1, .., $k), ($k+1, ..), .. <rest>`.
fn multi_row(sql: &str, k: usize, rows: usize) -> Option<String> {
    let at = sql.find("VALUES (")?;
    let close = at + sql[at..].find(')')?;
    let mut out = String::with_capacity(sql.len() + rows * k * 6);
    out.push_str(&sql[..at]);
    out.push_str("VALUES ");
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for j in 1..=k {
            if j > 1 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", r * k + j));
        }
        out.push(')');
    }
    out.push_str(&sql[close + 1..]);
    Some(out)
}

/// A connection to either backend.
pub(crate) enum Conn {
    Lite(rusqlite::Connection),
    Pg(Box<PgConn>),
}

/// `?N` → `$N`.
fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// SQLite's schema text in PostgreSQL's types.
pub(crate) fn pg_schema(sql: &str) -> String {
    sql.replace("INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
        .replace(" BLOB", " BYTEA")
}

impl PgConn {
    pub fn connect(target: &PgTarget, synchronous_commit: &'static str) -> Result<PgConn, StoreError> {
        let err = |e: postgres::Error| pg_error(&target.shown, e);
        let mut client = target.config.connect(postgres::NoTls).map_err(err)?;
        client
            .batch_execute(&format!("SET synchronous_commit TO {synchronous_commit}; SET client_min_messages TO warning"))
            .map_err(err)?;
        Ok(PgConn { client, statements: HashMap::new(), target: target.clone(), synchronous_commit, in_transaction: false, buffered: None })
    }

    /// Connect again after the connection was lost (the prepared statements went with it).
    pub fn reconnect(&mut self) -> Result<(), StoreError> {
        *self = PgConn::connect(&self.target, self.synchronous_commit)?;
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&mut self, sql: &'static str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&pg_placeholders(sql)).map_err(|e| pg_error(&self.target.shown, e))?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

pub(crate) fn pg_error(shown: &str, e: postgres::Error) -> StoreError {
    let code = e.code().map(|c| c.code().to_string());
    let lost = e.is_closed() || code.is_none() && std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    StoreError::Postgres { store: shown.to_string(), detail: if lost { format!("connection lost: {detail}") } else { detail } }
}

impl postgres::types::ToSql for P<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match (*self, ty) {
            (P::I(i), &Type::INT8) => i.to_sql(ty, out),
            (P::I(i), &Type::INT4) => i32::try_from(i)?.to_sql(ty, out),
            (P::T(s) | P::OT(Some(s)), _) if <&str as postgres::types::ToSql>::accepts(ty) => s.to_sql(ty, out),
            (P::OT(None), _) => Ok(postgres::types::IsNull::Yes),
            (P::B(b), &Type::BYTEA) => b.to_sql(ty, out),
            (p, ty) => Err(format!("cannot pass {p:?} as a {ty} parameter").into()),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_params<'a>(params: &'a [P<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn postgres::types::ToSql + Sync)).collect()
}

fn pg_row(r: &postgres::Row) -> Result<Row, StoreError> {
    use postgres::types::Type;
    let mut out = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let bad = |e: postgres::Error| StoreError::Data(format!("column {}: {e}", c.name()));
        let v = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(bad)?.map(V::I),
            Type::INT4 => r.try_get::<_, Option<i32>>(i).map_err(bad)?.map(|v| V::I(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i).map_err(bad)?.map(|v| V::I(v.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i).map_err(bad)?.map(|v| V::I(v.into())),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i).map_err(bad)?.map(V::B),
            Type::VOID => None,
            _ => r.try_get::<_, Option<String>>(i).map_err(bad)?.map(V::T),
        };
        out.push(v.unwrap_or(V::Null));
    }
    Ok(Row(out))
}

fn lite_row(r: &rusqlite::Row, n: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match r.get_ref(i)? {
            ValueRef::Null => V::Null,
            ValueRef::Integer(v) => V::I(v),
            ValueRef::Real(f) => V::T(f.to_string()),
            ValueRef::Text(t) => V::T(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => V::B(b.to_vec()),
        });
    }
    Ok(Row(out))
}

impl Conn {
    /// Outside a transaction: connect again if a PostgreSQL connection was lost.
    pub fn ensure_connected(&mut self) -> Result<(), StoreError> {
        match self {
            Conn::Lite(_) => Ok(()),
            Conn::Pg(pg) => pg.reconnect_if_closed(),
        }
    }

    /// Outside a transaction, a PostgreSQL statement that failed because the connection was lost
    /// (the server restarted) is tried once more on a new connection.
    fn again<T>(&mut self, mut f: impl FnMut(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        match f(self) {
            Err(e) if e.is_transient() && matches!(self, Conn::Pg(pg) if !pg.in_transaction) => {
                if let Conn::Pg(pg) = self {
                    pg.reconnect()?;
                }
                f(self)
            }
            r => r,
        }
    }

    /// Rows of a query written once for both backends (`?N` placeholders).
    pub fn query(&mut self, sql: &'static str, params: &[P]) -> Result<Vec<Row>, StoreError> {
        self.again(|c| c.query_once(sql, params))
    }

    fn query_once(&mut self, sql: &'static str, params: &[P]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Lite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let rows = st.query_map(rusqlite::params_from_iter(params), |r| lite_row(r, n))?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            Conn::Pg(pg) => {
                let st = pg.statement(sql)?;
                let ps = pg_params(params);
                let rows = pg.client.query(&st, &ps).map_err(|e| pg_error(&pg.target.shown, e))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// [`Conn::query`] for SQL built at run time (not cached as a prepared statement on PostgreSQL).
    pub fn query_dynamic(&mut self, sql: &str, params: &[P]) -> Result<Vec<Row>, StoreError> {
        self.again(|c| c.query_dynamic_once(sql, params))
    }

    fn query_dynamic_once(&mut self, sql: &str, params: &[P]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Lite(c) => {
                let mut st = c.prepare(sql)?;
                let n = st.column_count();
                let rows = st.query_map(rusqlite::params_from_iter(params), |r| lite_row(r, n))?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            Conn::Pg(pg) => {
                let ps = pg_params(params);
                let rows = pg.client.query(&pg_placeholders(sql), &ps).map_err(|e| pg_error(&pg.target.shown, e))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// The first row, if any.
    pub fn query_opt(&mut self, sql: &'static str, params: &[P]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// A single integer (a count).
    pub fn query_i64(&mut self, sql: &'static str, params: &[P]) -> Result<i64, StoreError> {
        self.query_opt(sql, params)?.ok_or_else(|| StoreError::Data(format!("no row from `{sql}`")))?.i(0)
    }

    pub fn execute(&mut self, sql: &'static str, params: &[P]) -> Result<u64, StoreError> {
        if let Conn::Pg(pg) = self {
            if let Some(buf) = &mut pg.buffered {
                let row = params.iter().map(Owned::of).collect();
                match buf.iter_mut().find(|(s, _)| *s == sql) {
                    Some((_, rows)) => rows.push(row),
                    None => buf.push((sql, vec![row])),
                }
                return Ok(1);
            }
        }
        self.again(|c| c.execute_once(sql, params))
    }

    /// From now on, on PostgreSQL, [`Conn::execute`] keeps the rows of `INSERT ... VALUES`
    /// statements until [`Conn::send_buffered`] (the writer's batches; SQLite writes at once).
    pub fn buffer_inserts(&mut self) {
        if let Conn::Pg(pg) = self {
            pg.buffered = Some(Vec::new());
        }
    }

    /// Send the kept rows, each statement's as few multi-row statements as the parameter limit
    /// allows, in the order the statements were first used (rows keep their order: a step's
    /// decisions are numbered as they came). An upsert's rows are split where a key repeats, since
    /// one statement may not update a row twice.
    pub fn send_buffered(&mut self) -> Result<(), StoreError> {
        let Conn::Pg(pg) = self else { return Ok(()) };
        let Some(buf) = pg.buffered.take() else { return Ok(()) };
        for (sql, rows) in buf {
            let k = rows.first().map_or(0, Vec::len).max(1);
            let upsert = sql.contains("DO UPDATE");
            let mut start = 0;
            while start < rows.len() {
                let mut end = (start + MAX_PARAMS / k).min(rows.len());
                if upsert {
                    let mut keys = std::collections::HashSet::new();
                    end = start + rows[start..end].iter().take_while(|r| keys.insert(format!("{:?}", r[0]))).count();
                }
                let chunk = &rows[start..end];
                let text = multi_row(sql, k, chunk.len())
                    .ok_or_else(|| StoreError::Data(format!("not an INSERT ... VALUES statement: {sql}")))?;
                let values: Vec<P> = chunk.iter().flatten().map(Owned::as_p).collect();
                let ps = pg_params(&values);
                pg.client.execute(&text, &ps).map_err(|e| pg_error(&pg.target.shown, e))?;
                start = end;
            }
        }
        Ok(())
    }

    fn execute_once(&mut self, sql: &'static str, params: &[P]) -> Result<u64, StoreError> {
        match self {
            Conn::Lite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))? as u64),
            Conn::Pg(pg) => {
                let st = pg.statement(sql)?;
                let ps = pg_params(params);
                pg.client.execute(&st, &ps).map_err(|e| pg_error(&pg.target.shown, e))
            }
        }
    }

    /// Statements without parameters, run as they are.
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Lite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(pg) => pg.client.batch_execute(sql).map_err(|e| pg_error(&pg.target.shown, e)),
        }
    }

    /// Begin a write transaction (SQLite takes the write lock at once).
    pub fn begin(&mut self) -> Result<(), StoreError> {
        match self {
            Conn::Lite(_) => self.batch("BEGIN IMMEDIATE"),
            Conn::Pg(pg) => {
                pg.reconnect_if_closed()?;
                self.batch("BEGIN")?;
                self.set_in_transaction(true);
                Ok(())
            }
        }
    }

    fn set_in_transaction(&mut self, v: bool) {
        if let Conn::Pg(pg) = self {
            pg.in_transaction = v;
        }
    }

    pub fn commit(&mut self) -> Result<(), StoreError> {
        let r = self.batch("COMMIT");
        if r.is_ok() {
            self.set_in_transaction(false);
        }
        r
    }

    /// Roll back whatever transaction is open; errors are ignored (the connection may be gone).
    pub fn rollback(&mut self) {
        let open = match self {
            Conn::Lite(c) => !c.is_autocommit(),
            Conn::Pg(pg) => !pg.is_closed(),
        };
        if open {
            let _ = self.batch("ROLLBACK");
        }
        self.set_in_transaction(false);
        if let Conn::Pg(pg) = self {
            pg.buffered = None;
        }
    }

    /// Run `f` in a write transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.begin()?;
        match f(self).and_then(|v| self.commit().map(|()| v)) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// How durable a commit is: SQLite's `PRAGMA synchronous` (1 normal, 2 full); on PostgreSQL
    /// `synchronous_commit` (1 `local`, 2 `on` or stricter, 0 `off`).
    pub fn synchronous(&mut self) -> Result<i64, StoreError> {
        match self {
            Conn::Lite(c) => Ok(c.pragma_query_value(None, "synchronous", |r| r.get(0))?),
            Conn::Pg(_) => {
                let mut rows = self.query("SHOW synchronous_commit", &[])?;
                let v = rows.first_mut().map(|r| r.t(0)).transpose()?.unwrap_or_default();
                Ok(match v.as_str() {
                    "off" => 0,
                    "local" => 1,
                    _ => 2,
                })
            }
        }
    }
}

impl PgConn {
    fn reconnect_if_closed(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() { self.reconnect() } else { Ok(()) }
    }
}

impl StoreError {
    /// Whether the store could not be reached (a lost connection, a server restarting, a transient
    /// conflict): the same write may succeed when tried again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Postgres { detail, .. } => {
                detail.starts_with("connection lost")
                    || detail.contains("error connecting")
                    || ["(40001)", "(40P01)", "(57P01)", "(57P02)", "(57P03)", "(08000)", "(08003)", "(08006)", "(25P02)"]
                        .iter()
                        .any(|c| detail.ends_with(c))
            }
            _ => false,
        }
    }
}
