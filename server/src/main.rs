//! `keel-lsp`: Keel's language server over stdio, or (`--acp`) an Agent Client Protocol agent.

const HELP: &str = "keel-lsp — Keel's language server (LSP over stdin/stdout)

usage: keel-lsp [--acp] [--config FILE] [--version | --help]

  --acp          speak the Agent Client Protocol (newline-delimited JSON-RPC) instead of LSP,
                 for editors that start agents (Zed's agent_servers)
  --config FILE  options as JSON, the shape of LSP's initializationOptions (see docs/protocol.md);
                 the client's own options still win over LSP

Environment defaults: KEEL_MODEL_ENDPOINT, KEEL_MODEL, KEEL_API_KEY_ENV (the name of the variable
holding the API key), KEEL_STORE, KEEL_SANDBOX (an engine socket, or \"off\"; else DOCKER_HOST),
KEEL_SANDBOX_IMAGE. Logs go to stderr, level from KEEL_LOG (error, warn, info, debug).";

/// mimalloc rather than the system allocator: a request's round trip is mostly small allocations
/// (the frame parsed into a JSON value, the typed params, the answer built and serialised), and
/// glibc's malloc made the code-action round trip measurably slower (docs/benchmarks.md, "Over
/// the wire").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut acp = false;
    let mut config_file: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--version" | "-V" => {
                println!("keel-lsp {}", env!("CARGO_PKG_VERSION"));
                return;
            }
            "--help" | "-h" => {
                println!("{HELP}");
                return;
            }
            "--stdio" => {}
            "--acp" => acp = true,
            "--config" => match args.next() {
                Some(f) => config_file = Some(f.into()),
                None => {
                    eprintln!("keel-lsp: --config needs a file\n\n{HELP}");
                    std::process::exit(2);
                }
            },
            other => match other.strip_prefix("--config=") {
                Some(f) => config_file = Some(f.into()),
                None => {
                    eprintln!("keel-lsp: unknown argument `{other}`\n\n{HELP}");
                    std::process::exit(2);
                }
            },
        }
    }
    // The store and anything else keel-lsp creates is private (files 0600, directories 0700).
    keel_trajectory::private::set_umask();
    let config = match &config_file {
        Some(f) => match keel_server::config::Config::from_file(f) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("keel-lsp: {e}");
                std::process::exit(2);
            }
        },
        None => keel_server::config::Config::default(),
    };
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
    let clean = if acp {
        rt.block_on(keel_server::acp::serve_stdio(config))
    } else {
        rt.block_on(keel_server::server::serve_stdio(config));
        keel_server::server::SHUTDOWN_REQUESTED.load(std::sync::atomic::Ordering::SeqCst)
    };
    // The runtime's stdin reader may still be blocked in a read: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(if clean { 0 } else { 1 });
}
