//! The fuzzer's corpus (`server/fuzz/corpus/`, written by `cargo xtask fuzz`), replayed: every case
//! that once showed new behaviour or broke keel-lsp must hold the oracle — no panic, every request
//! answered in time, `shutdown` answered and `exit` ending the process with 0 (see
//! `keel_e2e::fuzz`).

use std::path::Path;

use keel_e2e::bin;
use keel_e2e::fuzz::{Limits, replay_dir};

#[test]
fn fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let started = std::time::Instant::now();
    let results = replay_dir(&bin("keel-lsp"), &dir, Limits::default(), 4);
    assert!(results.len() >= 10, "the corpus at {} has {} cases", dir.display(), results.len());
    let failing: Vec<String> = results
        .iter()
        .filter(|(_, o)| !o.ok())
        .map(|(p, o)| format!("{}: {:?}\n{}", p.display(), o.failures, o.stderr_tail))
        .collect();
    assert!(failing.is_empty(), "{} of {} corpus cases fail:\n{}", failing.len(), results.len(), failing.join("\n\n"));
    eprintln!("{} corpus cases replayed in {:.1?}", results.len(), started.elapsed());
}
