//! Idempotent setup: each step checks whether its result is already there before doing anything.

use std::path::Path;

use anyhow::{Context, Result};

use crate::env;

/// Everything the tests and the demo need.
pub fn all() -> Result<()> {
    python()?;
    crate::tasks::setup()?;
    crate::editors::setup()?;
    crate::podman::setup()?;
    Ok(())
}

/// `.venv` with the pinned requirements (torch for tch, transformers/peft/trl for parity tests,
/// neovim for the editor suite). Skipped when the venv already satisfies the requirements file.
pub fn python() -> Result<()> {
    let req = env::root().join("xtask/requirements.txt");
    let wanted = std::fs::read_to_string(&req).with_context(|| format!("reading {}", req.display()))?;
    let stamp = env::venv().join(".keel-requirements");
    if env::python().exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    eprintln!("xtask: setting up the Python environment in .venv (torch for tch, transformers, ...)");
    if !env::python().exists() {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        env::run(std::process::Command::new(py).args(["-m", "venv"]).arg(env::venv()))?;
    }
    env::run_retry(|| {
        let mut c = std::process::Command::new(env::python());
        c.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"]).arg(&req);
        c
    })?;
    write_stamp(&stamp, &wanted)
}

fn write_stamp(path: &Path, content: &str) -> Result<()> {
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}
