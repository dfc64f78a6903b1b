//! The load suite as a benchmark: `cargo bench -p keel-server --bench load` (also in
//! `cargo xtask bench`). 8 clients, each with its own keel-lsp and 20 open documents, type at 50
//! edits/s while episodes run and a scripted model streams (`keel_e2e::load`); prints the p50, p99
//! and max of a code-action listing and of a `didChange` with the code action right after it, and
//! fails if any request was dropped or answered wrong. `LOAD_SECS` (default 20) sets the length;
//! `KEEL_LSP` runs another keel-lsp binary (an earlier build, to compare in one sitting).

use std::time::Duration;

use keel_e2e::load::{LoadConfig, run};
use keel_e2e::wire::percentile;

fn main() {
    let secs: u64 = std::env::var("LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let cfg = LoadConfig { duration: Duration::from_secs(secs), ..LoadConfig::default() };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = std::env::var_os("KEEL_LSP").map_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_keel-lsp")), std::path::PathBuf::from);
    let r = run(&exe, dir.path(), &cfg);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("load: {}", exe.display());
    println!(
        "load: {} clients x {} documents, {} edits/s each, {secs} s; {} requests, {} dropped, {} wrong; {} episodes started, {} ended, {} model requests (streamed)",
        cfg.clients, cfg.docs, cfg.edits_per_sec, r.requests, r.dropped, r.wrong.len(), r.episodes_started, r.episodes_ended, r.model_requests
    );
    for (what, v) in [("code-action listing", &r.listing), ("didChange + code action", &r.change)] {
        println!(
            "  {what:<24} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} samples)",
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            v.len()
        );
    }
    for w in r.wrong.iter().take(10) {
        println!("  wrong: {w}");
    }
    assert!(r.dropped == 0 && r.wrong.is_empty(), "requests dropped or answered wrong");
}
