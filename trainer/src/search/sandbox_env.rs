//! Rollouts in containers: each rollout replays its path in a fresh container made from the
//! episode's workspace snapshot (keel-sandbox: no network, capped CPU/memory/pids/output, removed
//! on every path out), through the agent's [`ContainerWorkspace`] — the same tools as in the
//! editor. Search never touches the user's working tree.

use anyhow::{Context, Result};
use keel_agent::{ContainerWorkspace, Workspace};
use keel_sandbox::{Container, Sandbox, WorkspaceSnapshot};
use keel_trajectory::{Episode, Observation};

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
    /// Connects to the engine (`DOCKER_HOST`, or `socket`) and makes sure the image is there
    /// (`None`: the sandbox's base image).
    pub fn connect(socket: Option<String>, image: Option<String>) -> Result<SandboxEnv> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let config = keel_sandbox::SandboxConfig { socket, image, ..Default::default() };
        let sandbox = rt.block_on(Sandbox::connect(config)).context("connecting to the container engine (run `cargo xtask setup`, or set DOCKER_HOST)")?;
        // Containers an earlier run left when it was killed or its engine stopped under it.
        match rt.block_on(sandbox.cleanup_orphans()) {
            Ok(0) => {}
            Ok(n) => eprintln!("sandbox: removed {n} container(s) left by runs that are gone"),
            Err(e) => eprintln!("sandbox: could not remove containers left by earlier runs: {e}"),
        }
        Ok(SandboxEnv { sandbox, rt, idle: Default::default() })
    }

    pub fn image(&self) -> &str {
        self.sandbox.image()
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

/// One rollout's container, seen through the agent's workspace.
pub struct SandboxSession<'a> {
    env: &'a SandboxEnv,
    ws: Option<ContainerWorkspace<'a>>,
}

impl Environment for SandboxEnv {
    type Session<'a> = SandboxSession<'a>;

    fn start<'a>(&'a self, episode: &Episode) -> Result<SandboxSession<'a>> {
        let snap = snapshot(episode);
        let reused = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let container = match reused {
            Some(c) if self.rt.block_on(c.reset(&snap)).is_ok() => c,
            other => {
                if let Some(c) = other {
                    let _ = self.rt.block_on(c.remove());
                }
                self.rt.block_on(self.sandbox.start(&snap)).context("starting a rollout container")?
            }
        };
        Ok(SandboxSession { env: self, ws: Some(ContainerWorkspace::new(&self.sandbox, container, self.rt.handle().clone())) })
    }
}

impl Session for SandboxSession<'_> {
    fn workspace(&self) -> &dyn Workspace {
        self.ws.as_ref().expect("a session holds its container until it is dropped")
    }

    fn verify(&mut self, command: &str, protected: &[(String, String)]) -> Result<Observation> {
        let ws = self.ws.as_ref().expect("a session holds its container until it is dropped");
        for (path, text) in protected {
            ws.write(path, text).map_err(|e| anyhow::anyhow!("restoring the protected file `{path}`: {e}"))?;
        }
        let r = self.env.rt.block_on(ws.container().exec(command)).context("running the verification command")?;
        Ok(r.to_observation())
    }

    fn lost(&self) -> Option<String> {
        self.ws.as_ref().and_then(|ws| ws.lost())
    }
}

impl Drop for SandboxSession<'_> {
    fn drop(&mut self) {
        if let Some(ws) = self.ws.take() {
            let lost = ws.lost().is_some();
            let c = ws.into_container();
            if c.is_gone() || lost {
                // Not reused: dropping it removes it (or, with the engine down, leaves it to
                // `cleanup_orphans` at the next start).
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
