//! keel-lsp end to end: the real binary over stdio, a scripted OpenAI-compatible model on loopback,
//! a real SQLite store.

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
