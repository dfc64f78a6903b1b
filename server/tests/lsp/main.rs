//! keel-lsp end to end: the real binary over stdio, a scripted OpenAI-compatible model on loopback,
//! a real SQLite store (and one episode recorded to the test PostgreSQL server).

mod acp;
mod documents;
mod faults;
mod episode;
mod fuzz;
mod load;
mod real_model;
mod reliability;
mod robustness;
mod sandbox;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_e2e::{LspClient, ScriptedModel, bin};
use serde_json::{Value, json};

pub const CALC: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub store: PathBuf,
    pub model: ScriptedModel,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("calc.py"), CALC).unwrap();
        let store = dir.path().join("keel.db");
        Fixture { dir, root, store, model: ScriptedModel::start() }
    }

    pub fn uri(&self, rel: &str) -> String {
        format!("file://{}", self.root.join(rel).display())
    }

    pub fn options(&self) -> Value {
        json!({
            "model": {"endpoint": self.model.url, "name": "scripted"},
            "store": self.store,
            "sandbox": "off",
            "limits": {"request_timeout_secs": 3, "watch_secs": 2}
        })
    }

    pub fn spawn(&self) -> LspClient {
        let mut c = LspClient::spawn(&bin("keel-lsp"), &[("KEEL_LOG", "warn")]);
        c.initialize(&self.root, self.options(), &["utf-16"]);
        c
    }

    pub fn open(&self, c: &LspClient, rel: &str, text: &str) {
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": self.uri(rel), "languageId": "python", "version": 1, "text": text}}),
        );
    }
}

pub const WAIT: Duration = Duration::from_secs(20);

pub fn store(path: &Path) -> keel_trajectory::Store {
    keel_trajectory::Store::open(path).unwrap()
}

/// A fresh database on the test PostgreSQL server (`KEEL_TEST_POSTGRES`), as a store URL; dropped
/// with the guard. `None` (with a line on stderr) when the server is not configured, unless
/// `KEEL_REQUIRE_POSTGRES=1` (`cargo xtask test`), which makes that a failure.
pub fn postgres_store() -> Option<PgStore> {
    let base = match std::env::var("KEEL_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var("KEEL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("KEEL_REQUIRE_POSTGRES=1 but KEEL_TEST_POSTGRES is not set: the PostgreSQL server is missing (cargo xtask test starts it)")
        }
        _ => {
            eprintln!("skipped: KEEL_TEST_POSTGRES is not set");
            return None;
        }
    };
    let name = format!("keel_t_lsp_{}", uuid::Uuid::now_v7().simple());
    let mut admin = base.parse::<postgres::Config>().unwrap().connect(postgres::NoTls).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).unwrap();
    let (server, _) = base.split_once('?').map_or(base.as_str(), |(u, _)| u).rsplit_once('/').unwrap();
    Some(PgStore { url: format!("{server}/{name}"), base, name })
}

pub struct PgStore {
    pub url: String,
    base: String,
    name: String,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Ok(mut c) = self.base.parse::<postgres::Config>().unwrap().connect(postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
        }
    }
}
