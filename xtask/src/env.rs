//! Paths and the environment every child command runs with.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The repository root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the repository").to_path_buf()
}

pub fn venv() -> PathBuf {
    root().join(".venv")
}

/// Where setup keeps tools and state that are not Python (`.keel/`, git-ignored).
pub fn state_dir() -> PathBuf {
    root().join(".keel")
}

pub fn python() -> PathBuf {
    venv().join("bin").join("python")
}

/// `site-packages/torch/lib` inside the venv, whatever the Python minor version.
pub fn torch_lib() -> Option<PathBuf> {
    let lib = venv().join("lib");
    std::fs::read_dir(&lib).ok()?.flatten().map(|e| e.path().join("site-packages/torch/lib")).find(|p| p.is_dir())
}

/// The variables children get, in addition to the inherited environment.
pub fn vars() -> Vec<(String, String)> {
    let mut v = Vec::new();
    let path = std::env::var("PATH").unwrap_or_default();
    let bin = venv().join("bin");
    let tools = state_dir().join("bin");
    v.push(("PATH".into(), format!("{}:{}:{path}", tools.display(), bin.display())));
    v.push(("VIRTUAL_ENV".into(), venv().display().to_string()));
    v.push(("LIBTORCH_USE_PYTORCH".into(), "1".into()));
    v.push(("KEEL_PYTHON".into(), python().display().to_string()));
    if let Some(lib) = torch_lib() {
        let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        let joined = if old.is_empty() { lib.display().to_string() } else { format!("{}:{old}", lib.display()) };
        v.push(("LD_LIBRARY_PATH".into(), joined));
    }
    let sock = state_dir().join("podman.sock");
    if sock.exists() && std::env::var_os("DOCKER_HOST").is_none() {
        v.push(("DOCKER_HOST".into(), format!("unix://{}", sock.display())));
    }
    for (k, val) in crate::postgres::test_vars() {
        if std::env::var_os(&k).is_none() {
            v.push((k, val));
        }
    }
    v
}

pub fn print_exports() -> Result<()> {
    for (k, val) in vars() {
        println!("export {k}='{}'", val.replace('\'', "'\\''"));
    }
    Ok(())
}

/// A command with the environment set.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root());
    for (k, v) in vars() {
        c.env(k, v);
    }
    c
}

/// Run a command to completion; fail with its name if it fails.
pub fn run(c: &mut Command) -> Result<()> {
    let what = format!("{c:?}");
    let status = c.status().with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(command(cargo).args(args))
}

/// Run a command, and once more if it fails (network steps).
pub fn run_retry(mut make: impl FnMut() -> Command) -> Result<()> {
    match run(&mut make()) {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("xtask: {e:#}; retrying once");
            std::thread::sleep(std::time::Duration::from_secs(5));
            run(&mut make())
        }
    }
}
