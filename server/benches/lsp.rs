//! keel-lsp benchmarks: `cargo bench -p keel-server --bench lsp`
//!
//! - code action listing on a 20,000-line file (criterion, plus p50/p99 over 20,000 calls);
//! - one incremental edit on a 5 MB document (amortized over many edits at random places);
//! - resident memory with 200 open files.
//!
//! The handlers are called in-process on the real `Backend` (no JSON-RPC framing), which is what
//! the server's own latency is.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use keel_server::document::{Change, Document, Encoding, Pos};
use tower_lsp::LanguageServer;
use tower_lsp::lsp_types::*;

fn big_file(lines: usize) -> String {
    let mut s = String::from("use std::collections::HashMap;\n\n");
    let mut i = 0;
    while s.lines().count() < lines {
        s.push_str(&format!("fn f{i}(x: u64) -> u64 {{\n    // é 😀 comment {i}\n    let y = x * {i};\n    y + 1\n}}\n\n"));
        i += 1;
    }
    s
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = rt.enter();
    let (service, _socket) = keel_server::server::build();
    let backend = service.inner();
    let text = big_file(20_000);
    let uri = Url::parse("file:///bench/big.rs").unwrap();
    rt.block_on(backend.did_open(DidOpenTextDocumentParams {
        text_document: TextDocumentItem { uri: uri.clone(), language_id: "rust".into(), version: 1, text: text.clone() },
    }));
    let params = |line: u32| CodeActionParams {
        text_document: TextDocumentIdentifier { uri: uri.clone() },
        range: Range { start: Position { line, character: 4 }, end: Position { line, character: 12 } },
        context: CodeActionContext {
            diagnostics: vec![Diagnostic { range: Range::default(), message: "mismatched types".into(), ..Default::default() }],
            ..Default::default()
        },
        work_done_progress_params: Default::default(),
        partial_result_params: Default::default(),
    };

    let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    c.bench_function("code_action listing, 20k-line file", |b| {
        let mut line = 0u32;
        b.iter(|| {
            line = (line + 7919) % 20_000;
            black_box(rt.block_on(backend.code_action(params(line))).unwrap())
        })
    });

    // Percentiles over many calls.
    let mut times = Vec::with_capacity(20_000);
    for i in 0..20_000u32 {
        let p = params((i * 7919) % 20_000);
        let t = Instant::now();
        black_box(rt.block_on(backend.code_action(p)).unwrap());
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "code_action listing, 20k-line file: p50 {:?}  p99 {:?}  max {:?} (20,000 calls)",
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1]
    );

    // Incremental edits on a 5 MB document.
    let five = big_file(130_000);
    let five: String = five.chars().take(5 * 1024 * 1024).collect();
    let mut doc = Document::new("file:///bench/five.rs", "rust", 0, &five, Encoding::Utf16);
    let lines = doc.text.len_lines() as u32;
    let mut version = 1;
    let mut seed = 12345u64;
    c.bench_function("incremental edit, 5 MB document", |b| {
        b.iter(|| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let line = ((seed >> 33) as u32) % lines;
            let at = Pos { line, character: 2 };
            version += 1;
            let change = if version % 2 == 0 {
                Change { range: Some((at, at)), text: "x".into() }
            } else {
                Change { range: Some((at, Pos { line, character: 3 })), text: String::new() }
            };
            black_box(doc.apply(version, &[change]).unwrap())
        })
    });
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let line = ((seed >> 33) as u32) % lines;
        let at = Pos { line, character: 2 };
        version += 1;
        let change = if version % 2 == 0 { Change { range: Some((at, at)), text: "x".into() } } else { Change { range: Some((at, Pos { line, character: 3 })), text: String::new() } };
        doc.apply(version, &[change]).unwrap();
    }
    println!("incremental edit, 5 MB document: {:?} amortized over {n} edits", t.elapsed() / n);

    // Memory with 200 open files (each a 1,000-line source file).
    let before = rss_kib();
    let file = big_file(1_000);
    for i in 0..200 {
        let uri = Url::parse(&format!("file:///bench/many/f{i}.rs")).unwrap();
        rt.block_on(backend.did_open(DidOpenTextDocumentParams {
            text_document: TextDocumentItem { uri, language_id: "rust".into(), version: 1, text: file.clone() },
        }));
    }
    let after = rss_kib();
    println!(
        "200 open files of {} KiB each ({} KiB of text): resident memory +{} KiB",
        file.len() / 1024,
        200 * file.len() / 1024,
        after.saturating_sub(before)
    );
    c.final_summary();
}
