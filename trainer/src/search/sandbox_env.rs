//! Rollouts in containers: each rollout replays its path in a fresh container made from the
//! episode's workspace snapshot (keel-sandbox: no network, capped CPU/memory/pids/output, removed
//! on every path out). Search never touches the user's working tree.

use anyhow::{Context, Result};
use keel_sandbox::{Container, Sandbox, WorkspaceSnapshot};
use keel_trajectory::{Action, Episode, Observation};

use super::{Environment, Session};

pub struct SandboxEnv {
    sandbox: Sandbox,
    rt: tokio::runtime::Runtime,
    /// Containers of finished rollouts, reset and reused by the next ones (a reset costs one exec
    /// and an upload; a new container costs a create, a start, an upload and a remove). A container
    /// that cannot be reset is removed and a new one started.
    idle: std::sync::Mutex<Vec<Container>>,
}

impl SandboxEnv {
    /// Connects to the engine (`DOCKER_HOST`, or `socket`) and makes sure the base image is there.
    pub fn connect(socket: Option<String>) -> Result<SandboxEnv> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let config = keel_sandbox::SandboxConfig { socket, ..Default::default() };
        let sandbox = rt.block_on(Sandbox::connect(config)).context("connecting to the container engine (run `cargo xtask setup`, or set DOCKER_HOST)")?;
        Ok(SandboxEnv { sandbox, rt, idle: Default::default() })
    }
}

/// The files of an episode's workspace as they were when it started.
pub fn snapshot(episode: &Episode) -> WorkspaceSnapshot {
    match &episode.workspace.vcs {
        Some(v) if !v.commit.is_empty() => WorkspaceSnapshot::from_vcs(&episode.workspace.root, v),
        Some(v) => {
            let s = WorkspaceSnapshot::from_files(v.untracked.iter().map(|f| (f.path.clone(), f.content.clone().into_bytes())));
            if v.patch.trim().is_empty() { s } else { s.with_patch(v.patch.clone()) }
        }
        None => WorkspaceSnapshot::from_dir(&episode.workspace.root),
    }
}

pub struct SandboxSession<'a> {
    env: &'a SandboxEnv,
    container: Option<Container>,
}

impl SandboxSession<'_> {
    fn c(&self) -> &Container {
        self.container.as_ref().expect("a session holds its container until it is dropped")
    }
}

impl Environment for SandboxEnv {
    type Session<'a> = SandboxSession<'a>;

    fn start<'a>(&'a self, episode: &Episode) -> Result<SandboxSession<'a>> {
        let snap = snapshot(episode);
        let reused = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(c) = reused {
            if self.rt.block_on(c.reset(&snap)).is_ok() {
                return Ok(SandboxSession { env: self, container: Some(c) });
            }
            let _ = self.rt.block_on(c.remove());
        }
        let container = self.rt.block_on(self.sandbox.start(&snap)).context("starting a rollout container")?;
        Ok(SandboxSession { env: self, container: Some(container) })
    }
}

impl Session for SandboxSession<'_> {
    fn act(&mut self, action: &Action) -> Observation {
        let rt = &self.env.rt;
        let err = |e: &dyn std::fmt::Display| Observation { output: format!("error: {e}"), exit_code: Some(1), ..Default::default() };
        match action {
            Action::Edit { path, old_text, new_text } => match rt.block_on(self.c().apply_edit(path, old_text, new_text)) {
                Ok(()) => Observation { output: format!("The edit to {path} was applied."), exit_code: Some(0), ..Default::default() },
                Err(e) => err(&e),
            },
            Action::Run { command } => match rt.block_on(self.c().exec(command)) {
                Ok(r) => r.to_observation(),
                Err(e) => err(&e),
            },
            Action::ViewFile { path, start_line, end_line } => match rt.block_on(self.c().read_file(path)) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let s = start_line.unwrap_or(1).max(1) as usize;
                    let e = end_line.map(|e| e as usize).unwrap_or(usize::MAX);
                    let out: String = text.lines().enumerate().skip(s - 1).take(e.saturating_sub(s - 1)).map(|(i, l)| format!("{:>5}| {l}\n", i + 1)).collect();
                    Observation { output: out, exit_code: Some(0), ..Default::default() }
                }
                Err(e) => err(&e),
            },
            Action::Search { pattern, path } => {
                let quoted = pattern.replace('\'', "'\\''");
                let where_ = path.as_deref().unwrap_or(".").replace('\'', "'\\''");
                match rt.block_on(self.c().exec(&format!("grep -rnE '{quoted}' '{where_}' | head -100"))) {
                    Ok(r) => r.to_observation(),
                    Err(e) => err(&e),
                }
            }
            Action::Finish { .. } => Observation::default(),
        }
    }

    fn verify(&mut self, command: &str) -> Result<bool> {
        let r = self.env.rt.block_on(self.c().exec(command)).context("running the verification command")?;
        Ok(r.success())
    }
}

impl Drop for SandboxSession<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.container.take() {
            if c.is_gone() {
                return;
            }
            self.env.idle.lock().unwrap_or_else(|e| e.into_inner()).push(c);
        }
    }
}

impl Drop for SandboxEnv {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for c in idle {
            let _ = self.rt.block_on(c.remove());
        }
    }
}
