//! `keel-lsp`: Keel's language server over stdio.

const HELP: &str = "keel-lsp — Keel's language server (LSP over stdin/stdout)

usage: keel-lsp [--version | --help]

Options come from the client's initializationOptions and settings (see docs/protocol.md);
environment defaults: KEEL_MODEL_ENDPOINT, KEEL_MODEL, KEEL_STORE. Logs go to stderr, level from
KEEL_LOG (error, warn, info, debug).";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("keel-lsp {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Some("--help" | "-h") => {
            println!("{HELP}");
            return;
        }
        Some("--stdio") | None => {}
        Some(other) => {
            eprintln!("keel-lsp: unknown argument `{other}`\n\n{HELP}");
            std::process::exit(2);
        }
    }
    // The store and anything else keel-lsp creates is private (files 0600, directories 0700).
    keel_trajectory::private::set_umask();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keel-lsp: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(keel_server::server::serve_stdio());
    // The runtime's stdin reader may still be blocked in a read: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    let clean = keel_server::server::SHUTDOWN_REQUESTED.load(std::sync::atomic::Ordering::SeqCst);
    std::process::exit(if clean { 0 } else { 1 });
}
