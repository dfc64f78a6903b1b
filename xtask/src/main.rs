//! `cargo xtask`: one-command setup, tests, demo and benchmarks for Keel.
//!
//! Every command sets up what it needs first (idempotently), and runs its children with the
//! environment tch and the suites need (`LIBTORCH_USE_PYTORCH`, `PATH`, `LD_LIBRARY_PATH`, ...), so
//! nothing has to be installed or exported by hand.

mod demo;
mod editors;
mod env;
mod podman;
mod postgres;
mod setup;
mod tasks;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup        install what the build, tests and demo need (idempotent);
               `setup STEP...` runs only those steps (python, model, tasks, editors, acp, podman, postgres)
  env          print the environment as shell exports: eval \"$(cargo xtask env)\"
  test         setup, then run every test suite
  demo         setup, then run the demo on the embedded defaults
  bench        setup, then run the benchmarks (installs lsp-ai 0.7.0 into .keel/bin once, for the
               wire bench's side-by-side; LSP_AI=path uses another)
  fuzz         fuzz keel-lsp's input surface: `fuzz --minutes N [--jobs N] [--seed N]`; new and
               failing cases go to server/fuzz/corpus/ (replayed by the LSP test fuzz_corpus_replays)
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        std::process::exit(2);
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "setup" if rest.is_empty() => setup::all(),
        "setup" => setup::steps(rest),
        "env" => {
            setup::python()?;
            env::print_exports()
        }
        "test" => test(rest),
        "demo" => demo(rest),
        "bench" => bench(rest),
        "fuzz" => fuzz(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

fn test(rest: &[String]) -> Result<()> {
    setup::all()?;
    // The end-to-end suites drive the real binaries; build them first.
    env::cargo(&["build", "--workspace", "--bins", "--locked"])?;
    // The store's suites run on PostgreSQL too; without the server they must fail, not skip.
    postgres::start()?;
    let mut args = vec!["test", "--workspace", "--locked"];
    args.extend(rest.iter().map(String::as_str));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    env::run(env::command(cargo).args(&args).env("KEEL_REQUIRE_POSTGRES", "1"))?;
    Ok(())
}

fn demo(rest: &[String]) -> Result<()> {
    setup::all()?;
    demo::run(rest)
}

fn fuzz(rest: &[String]) -> Result<()> {
    // Debug builds: the oracle is about panics (debug assertions and overflow checks on) and hangs.
    env::cargo(&["build", "--locked", "-p", "keel-server", "--bin", "keel-lsp", "-p", "keel-e2e", "--bin", "keel-fuzz"])?;
    let corpus = env::root().join("server/fuzz/corpus");
    let mut c = env::command(env::root().join("target/debug/keel-fuzz"));
    c.arg("--corpus").arg(&corpus).args(rest);
    env::run(&mut c)
}

fn bench(rest: &[String]) -> Result<()> {
    setup::all()?;
    postgres::start()?;
    lsp_ai()?;
    let mut args = vec!["bench", "--workspace"];
    args.extend(rest.iter().map(String::as_str));
    env::cargo(&args)
}

/// lsp-ai, the language server the wire bench measures keel-lsp against, from crates.io into
/// `.keel/bin` (on the children's `PATH`), once. Its default features need no GPU or llama.cpp. A
/// failed install is reported and the bench measures keel-lsp alone.
fn lsp_ai() -> Result<()> {
    if std::env::var_os("LSP_AI").is_some() || env::state_dir().join("bin/lsp-ai").is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing lsp-ai 0.7.0 into .keel/bin for the wire bench (once; several minutes)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = env::state_dir();
    let mut c = env::command(cargo);
    c.args(["install", "lsp-ai", "--locked", "--version", "0.7.0", "--root"]).arg(&root);
    if let Err(e) = env::run(&mut c) {
        eprintln!("xtask: lsp-ai could not be installed ({e:#}); the wire bench will measure keel-lsp alone");
    }
    Ok(())
}
