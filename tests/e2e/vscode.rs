//! VS Code: code-server (from npm, run on node 24) with the packaged `.vsix` installed, driven in
//! Debian's Chromium by `tests/e2e/vscode/driver.mjs` (playwright-core, no downloaded browser).
//! `cargo xtask setup` installs all of it under `.keel/` and packages the extension.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_e2e::{Reply, bin};
use keel_trajectory::{Decision, EpisodeEnd, EpisodeFilter, Store};
use serde_json::{Value, json};

use crate::{CALC, Workspace, check_unsaved_run, docker_host, edit, root, run_with_deadline, script_unsaved_run};

fn need(p: PathBuf, what: &str) -> PathBuf {
    assert!(p.exists(), "{} is missing ({what}): run `cargo xtask setup`", p.display());
    p
}

struct Tools {
    node: PathBuf,
    code_server: PathBuf,
    vsix: PathBuf,
    driver: PathBuf,
    chromium: PathBuf,
}

fn tools() -> Tools {
    let r = root();
    let chromium = std::env::var_os("KEEL_E2E_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    Tools {
        node: need(r.join(".keel/node24/bin/node"), "node 24 for code-server"),
        code_server: need(r.join(".keel/code-server/node_modules/code-server/out/node/entry.js"), "code-server"),
        vsix: need(r.join("editors/vscode/dist/keel.vsix"), "the packaged extension"),
        driver: {
            need(r.join("tests/e2e/vscode/node_modules/playwright-core"), "playwright-core");
            r.join("tests/e2e/vscode/driver.mjs")
        },
        chromium: need(chromium, "Debian's chromium (apt)"),
    }
}

/// code-server, killed (with its children) on drop.
struct CodeServer(Child);

impl Drop for CodeServer {
    fn drop(&mut self) {
        // It runs in its own process group; end the group (the server, its extension host, keel-lsp).
        let pid = self.0.id() as i32;
        kill_group(pid);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kill_group(pid: i32) {
    let _ = Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status();
}

fn code_server_cmd(t: &Tools, data: &Path) -> Command {
    let mut c = Command::new(&t.node);
    c.arg(&t.code_server)
        .arg("--user-data-dir")
        .arg(data.join("user"))
        .arg("--extensions-dir")
        .arg(data.join("extensions"))
        .arg("--config")
        .arg(data.join("config.yaml"))
        .env("XDG_CONFIG_HOME", data.join("xdg-config"))
        .env("XDG_DATA_HOME", data.join("xdg-data"))
        .env("KEEL_LOG", "warn")
        .env_remove("KEEL_STORE")
        .env_remove("KEEL_MODEL_ENDPOINT");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Installs the .vsix into a fresh code-server, serves `ws` with `server_path` as `keel.serverPath`,
/// runs the driver (`case`: "episode", "unsaved_run", "no_binary", "unreachable" or "crash"); returns
/// what the driver saw. `endpoint` overrides the scripted model's URL.
fn drive(ws: &Workspace, server_path: &Path, case: &str, shot: Option<&Path>, endpoint: Option<&str>) -> Value {
    let t = tools();
    let data = ws.dir.path().join("code-server");
    std::fs::create_dir_all(data.join("user/User")).unwrap();
    std::fs::write(data.join("config.yaml"), "auth: none\ncert: false\n").unwrap();
    std::fs::write(
        data.join("user/User/settings.json"),
        json!({
            "security.workspace.trust.enabled": false,
            "workbench.startupEditor": "none",
            "workbench.tips.enabled": false,
            "workbench.enableExperiments": false,
            "telemetry.telemetryLevel": "off",
            "extensions.ignoreRecommendations": true,
            "editor.codeLens": true,
            "editor.lightbulb.enabled": "off",
            "editor.minimap.enabled": false,
            "window.commandCenter": false,
            "workbench.colorTheme": "Default Dark Modern",
            "workbench.secondarySideBar.defaultVisibility": "hidden",
            "chat.disableAIFeatures": true,
            // Desktop VS Code's default. In a browser VS Code saves a changed file a second after
            // the change, so an accepted edit would not stay unsaved (which a test needs).
            "files.autoSave": "off"
        })
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(ws.root.join(".vscode")).unwrap();
    std::fs::write(
        ws.root.join(".vscode/settings.json"),
        json!({
            "keel.serverPath": server_path,
            "keel.model.endpoint": endpoint.unwrap_or(&ws.model.url),
            "keel.model.name": "scripted",
            "keel.store": ws.store,
        })
        .to_string(),
    )
    .unwrap();

    // Install the packaged extension the way a user would.
    let (ok, log) = run_with_deadline(code_server_cmd(&t, &data).arg("--install-extension").arg(&t.vsix), Duration::from_secs(120));
    assert!(ok, "installing {}: {log}", t.vsix.display());
    let installed: Vec<String> = std::fs::read_dir(data.join("extensions")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(installed.iter().any(|n| n.starts_with("keel.keel-0.1.0")), "{installed:?}");

    let port = free_port();
    let mut cmd = code_server_cmd(&t, &data);
    cmd.args(["--auth", "none", "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust", "--bind-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(&ws.root)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(data.join("server.log")).unwrap())
        .stderr(std::fs::File::create(data.join("server.err")).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let server = CodeServer(cmd.spawn().expect("starting code-server"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "code-server did not listen: {}", std::fs::read_to_string(data.join("server.err")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = ws.dir.path().join("vscode.json");
    let url = format!("http://127.0.0.1:{port}/?folder={}", ws.root.display());
    let node_path = format!("{}:{}", t.node.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let (ok, log) = run_with_deadline(
        Command::new(&t.node)
            .arg(&t.driver)
            .env("PATH", node_path)
            .env("KEEL_E2E_URL", &url)
            .env("KEEL_E2E_OUT", &out)
            .env("KEEL_E2E_SCREENSHOT", shot.unwrap_or(Path::new("")))
            .env("KEEL_E2E_CASE", case)
            .env("KEEL_E2E_PIDFILE", ws.dir.path().join("server.pid"))
            .env("KEEL_E2E_CHROMIUM", &t.chromium)
            .env("KEEL_E2E_DEBUG_DIR", ws.dir.path()),
        Duration::from_secs(240),
    );
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let r: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    drop(server);
    assert!(
        ok && r["error"].is_null(),
        "the driver failed: {}\n{log}\nserver log: {}",
        r["error"].as_str().unwrap_or(""),
        std::fs::read_to_string(data.join("server.log")).unwrap_or_default()
    );
    r
}

#[test]
fn code_action_then_accept_from_the_lens_in_code_server() {
    let ws = Workspace::new();
    ws.model.push(edit("return a - b", "return a + b"), true);
    ws.model.push(Reply::tool("finish", json!({"summary": "add adds"})), false);
    let shot = ws.dir.path().join("vscode-pending-step.png");
    let r = drive(&ws, &bin("keel-lsp"), "episode", Some(&shot), None);
    let f = &r["facts"];

    assert!(f["status_at_start"].as_str().unwrap().contains("Keel"), "{f:#}");
    let menu: Vec<&str> = f["menu"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert!(menu.iter().any(|m| m.contains("Keel: implement")), "{menu:?}");
    let lenses: Vec<&str> = f["lenses"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for want in ["Keel: Accept", "Keel: Reject", "Keel: Another"] {
        assert!(lenses.iter().any(|l| l.starts_with(want)), "{want} missing from {lenses:?}");
    }
    assert!(f["status_pending"].as_str().unwrap().contains("scripted@base"), "the status bar shows the model version: {f:#}");
    assert!(f["status_after"].as_str().unwrap().contains("finished"), "{f:#}");
    assert!(!f["lenses_after"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().starts_with("Keel:")), "{f:#}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real screenshot");
    // The docs' screenshot: written when missing, refreshed with KEEL_UPDATE_SCREENSHOTS=1 (so a
    // test run leaves the tree clean).
    let doc = root().join("docs/img/vscode-pending-step.png");
    if !doc.exists() || std::env::var_os("KEEL_UPDATE_SCREENSHOTS").is_some() {
        std::fs::create_dir_all(doc.parent().unwrap()).unwrap();
        std::fs::copy(&shot, &doc).unwrap();
    }

    // The file on disk (saved from the editor) and the store.
    assert_eq!(std::fs::read_to_string(ws.root.join("calc.py")).unwrap(), CALC.replace("a - b", "a + b"));
    let s = Store::open(&ws.store).unwrap();
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), 1, "{eps:#?}");
    let client = eps[0].client.as_deref().unwrap_or("");
    assert!(client.contains("Visual Studio Code") || client.contains("code-server"), "{client}");
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    assert_eq!(tree.steps[0].decision(), Some(&Decision::Accepted));
    assert!(matches!(tree.end.as_ref().unwrap().end, EpisodeEnd::Finished { .. }));
}

/// An accepted `run` after an accepted edit that VS Code has not saved sees the editor's text.
#[test]
fn an_accepted_run_sees_the_unsaved_edit_in_code_server() {
    // keel-lsp finds the engine in its environment (`DOCKER_HOST`), which code-server and its
    // extension host pass down from this process, as from a user's shell.
    docker_host();
    let ws = Workspace::new();
    script_unsaved_run(&ws.model);
    let r = drive(&ws, &bin("keel-lsp"), "unsaved_run", None, None);
    let f = &r["facts"];
    assert!(f["run_lens"].as_str().unwrap().contains("run `grep -n"), "{f:#}");
    assert_eq!(f["dirty_before_run"], true, "the edit is unsaved when the run is accepted: {f:#}");
    assert!(f["status_after"].as_str().unwrap().contains("finished"), "{f:#}");
    assert_eq!(f["dirty_at_end"], true, "{f:#}");
    let lines: Vec<&str> = f["editor_lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(lines.contains(&"    return a + b"), "{lines:?}");
    check_unsaved_run(&ws);
}

#[test]
fn a_missing_binary_is_a_clear_message_in_code_server() {
    let ws = Workspace::new();
    let r = drive(&ws, Path::new("/nonexistent/keel-lsp"), "no_binary", None, None);
    let f = &r["facts"];
    let note = f["notification"].as_str().unwrap();
    assert!(note.contains("/nonexistent/keel-lsp") && note.contains("keel.serverPath"), "{note}");
    assert!(f["status"].as_str().unwrap().contains("no server"), "{f:#}");
    assert_eq!(f["editor_works"], true);
    assert!(ws.model.requests().is_empty());
}

#[test]
fn an_unreachable_model_is_a_clear_message_in_code_server() {
    let ws = Workspace::new();
    // A port nobody listens on.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let r = drive(&ws, &bin("keel-lsp"), "unreachable", None, Some(&endpoint));
    let f = &r["facts"];
    let note = f["notification"].as_str().unwrap();
    assert!(note.contains(&format!("127.0.0.1:{port}")) && note.contains("unreachable"), "{note}");
    assert!(f["status"].as_str().unwrap().contains("error"), "{f:#}");
    // The workbench still answers: typing lands in the editor.
    assert_eq!(f["editor_works"], true, "{f:#}");
    let s = Store::open(&ws.store).unwrap();
    let eps = s.episodes(&EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), 1, "the failed episode is recorded: {eps:#?}");
    let tree = s.tree(eps[0].id).unwrap().unwrap();
    assert!(matches!(tree.end.as_ref().unwrap().end, EpisodeEnd::Failed { .. }), "{:?}", tree.end);
}

#[test]
fn a_crashing_server_is_a_clear_message_in_code_server() {
    let ws = Workspace::new();
    ws.model.push(edit("return a - b", "return a + b"), false);
    // keel-lsp through a script that records its pid, so the driver can kill it like a crash would.
    let wrapper = ws.dir.path().join("keel-lsp-wrapper");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\necho $$ > '{}'\nexec '{}' \"$@\"\n", ws.dir.path().join("server.pid").display(), bin("keel-lsp").display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = drive(&ws, &wrapper, "crash", None, None);
    let f = &r["facts"];
    let note = f["notification"].as_str().unwrap();
    assert!(note.contains("keel-lsp stopped unexpectedly"), "{note}");
    assert!(f["status_crashed"].as_str().unwrap().contains("server stopped"), "{f:#}");
    // "Restart" on the message brings a new server up, and the workbench kept answering.
    assert!(f["status_restarted"].as_str().unwrap().contains("Keel"), "{f:#}");
    assert_ne!(f["pid_before"], f["pid_after"], "{f:#}");
    assert_eq!(f["editor_works"], true, "{f:#}");
}

/// The inline preview and the hunk review in code-server (issue 16's must-show): lenses per hunk,
/// the added text after the lines and the removed lines struck through, Alt+] / Alt+[, "Another"
/// replaces the preview, Alt+Y keeps hunk 1, Alt+N drops hunk 2 and the lens keeps hunk 3 →
/// exactly hunks 1 and 3 in the file, recorded as `edited` with that text.
#[test]
fn inline_preview_and_hunk_review_in_code_server() {
    let ws = Workspace::new();
    crate::script_review(&ws);
    let shot = ws.dir.path().join("vscode-hunk-review.png");
    let r = drive(&ws, &bin("keel-lsp"), "review", Some(&shot), None);
    let f = &r["facts"];

    let lenses: Vec<&str> = f["review_lenses"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for want in ["Keel: Keep hunk 1/3", "Keel: Keep hunk 2/3", "Keel: Keep hunk 3/3", "Keel: Drop hunk"] {
        assert!(lenses.contains(&want), "{want} missing from {lenses:?}");
    }
    let after = |v: &Value| v["after"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect::<Vec<_>>();
    let first = after(&f["preview_first"]);
    assert!(first.iter().any(|a| a.contains("+     return a + b")), "{first:?}");
    assert!(first.iter().any(|a| a.contains("+ def mul(a: int, b: int):")), "{first:?}");
    assert!(first.iter().any(|a| a.contains("+ def neg(a: int):")), "{first:?}");
    let struck: Vec<&str> = f["preview_first"]["struck"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for want in ["return a - b", "def mul(a, b):", "def neg(a):"] {
        assert!(struck.iter().any(|s| s.starts_with(want)), "{want} not struck: {struck:?}");
    }
    assert_eq!(f["jumps"], json!([2, 5, 9, 5]));
    assert!(after(&f["preview_second"]).iter().any(|a| a.contains("+ def mul(a: float, b: float):")), "{f:#}");
    assert_eq!(f["cursor_after_keep"], 5, "keeping a hunk moves to the next undecided one");
    assert!(f["lenses_after_keep"].as_array().unwrap().iter().any(|l| l == "Keel: Keep hunk 1/3 (kept)"), "{f:#}");
    assert_eq!(f["cursor_after_drop"], 9, "dropping a hunk moves to the next undecided one");
    let after_drop: Vec<&str> = f["lenses_after_drop"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for want in ["Keel: Keep hunk 1/3 (kept)", "Keel: Keep hunk 2/3 (dropped)", "Keel: Keep hunk 3/3"] {
        assert!(after_drop.contains(&want), "{want} missing from {after_drop:?}");
    }
    assert!(f["status_after"].as_str().unwrap().contains("finished"), "{f:#}");
    assert_eq!(f["preview_after"], json!({"after": [], "struck": []}), "the preview is gone");
    assert!(!f["lenses_after"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().starts_with("Keel:")), "{f:#}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real screenshot");
    let doc = root().join("docs/img/vscode-hunk-review.png");
    if !doc.exists() || std::env::var_os("KEEL_UPDATE_SCREENSHOTS").is_some() {
        std::fs::copy(&shot, &doc).unwrap();
    }

    crate::check_review(&ws);
}
