//! Under load (issue 15): 8 clients, each with its own keel-lsp and 20 open documents, type at 50
//! edits/s for 3 s while episodes run and the model streams. Nothing may be dropped and every
//! answer must be right. The latencies are the `load` bench's business (docs/benchmarks.md); no
//! timing is asserted here.

use keel_e2e::bin;
use keel_e2e::load::{LoadConfig, run};

#[test]
fn eight_clients_typing_while_episodes_run_drop_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LoadConfig::default();
    let r = run(&bin("keel-lsp"), dir.path(), &cfg);
    eprintln!(
        "load: {} requests ({} keystrokes, {} listings), {} episodes started, {} ended, {} model requests",
        r.requests,
        r.change.len(),
        r.listing.len(),
        r.episodes_started,
        r.episodes_ended,
        r.model_requests
    );
    let logs: String = (0..cfg.clients).filter_map(|c| std::fs::read_to_string(dir.path().join(format!("client{c}.log"))).ok()).collect();
    assert!(r.wrong.is_empty(), "{} wrong answers: {:#?}\n{logs}", r.wrong.len(), &r.wrong[..r.wrong.len().min(10)]);
    assert_eq!(r.dropped, 0, "{} of {} requests were never answered\n{logs}", r.dropped, r.requests);
    // The load was what it says: every client typed, and episodes ran against the model.
    assert!(r.change.len() >= cfg.clients * 50, "{} keystrokes", r.change.len());
    assert!(r.episodes_ended >= cfg.clients, "{} of {} episodes ended", r.episodes_ended, r.episodes_started);
    assert!(r.model_requests >= cfg.clients * 3, "{} model requests", r.model_requests);
    assert!(!logs.contains("panicked"), "{logs}");
    let store = keel_trajectory::Store::open(&dir.path().join("keel.db")).unwrap();
    let eps = store.episodes(&keel_trajectory::EpisodeFilter::default()).unwrap();
    assert_eq!(eps.len(), r.episodes_started, "every episode started is in the store");
}
