//! `keel-train models`: list, promote, roll back; exactly one live version.

use keel_trajectory::{ModelVersion, Store};
use serde_json::json;

fn version(id: &str, at: i64, parent: Option<&str>) -> ModelVersion {
    ModelVersion {
        id: id.into(),
        created_at: at,
        base_model: "tiny".into(),
        adapter_path: Some(format!("/a/{id}")),
        adapter_hash: Some("abc".into()),
        parent: parent.map(Into::into),
        trained_on: json!({"pairs": 10}),
        eval: json!({"accuracy": 0.75}),
        live: false,
    }
}

/// Runs the built `keel-train`: (success, stdout, stderr).
pub(crate) fn keel_train(args: &[&str]) -> (bool, String, String) {
    let out = keel_e2e::command("keel-train").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn promote_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let store = Store::open(&db).unwrap();
    store.put_model_version(&version("v1", 1_000, None)).unwrap();
    store.put_model_version(&version("v2", 2_000, Some("v1"))).unwrap();
    store.put_model_version(&version("v3", 3_000, Some("v1"))).unwrap();
    drop(store);
    let db = db.to_str().unwrap();
    let (ok, _, err) = keel_train(&["models", "--store", db, "rollback"]);
    assert!(!ok && err.contains("no version is live"), "{err}");
    assert!(keel_train(&["models", "--store", db, "promote", "v2"]).0);
    assert!(keel_train(&["models", "--store", db, "promote", "v3"]).0);
    let (ok, out, _) = keel_train(&["models", "--store", db, "list"]);
    assert!(ok);
    let live: Vec<&str> = out.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(live.len(), 1);
    assert!(live[0].contains("v3") && live[0].contains("0.750"), "{out}");
    // Rollback goes to the parent (v1), not the previous row (v2).
    let (ok, out, _) = keel_train(&["models", "--store", db, "rollback"]);
    assert!(ok && out.contains("live: v1"), "{out}");
    let (ok, out, _) = keel_train(&["models", "--store", db, "rollback", "--to", "v2"]);
    assert!(ok && out.contains("live: v2"), "{out}");
    let (ok, _, err) = keel_train(&["models", "--store", db, "promote", "nope"]);
    assert!(!ok && err.contains("no model version `nope`"), "{err}");
    let s = Store::open(db).unwrap();
    assert_eq!(s.live_model_version().unwrap().unwrap().id, "v2");
    assert_eq!(keel_trainer::models::chrono_like(0), "1970-01-01 00:00:00");
    assert_eq!(keel_trainer::models::chrono_like(1_764_000_000_000), "2025-11-24 16:00:00");
}
