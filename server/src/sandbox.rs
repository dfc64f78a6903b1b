//! Accepted `run` steps execute here: in a container (keel-sandbox) made from a copy of the
//! workspace, with no network and capped CPU, memory, processes, time and output — never on the
//! user's machine. The container is removed on every path out.

use std::path::Path;

use keel_sandbox::{Sandbox, SandboxConfig, WorkspaceSnapshot};
use keel_trajectory::Observation;

/// Runs `command` in a fresh container holding a copy of `root`; the result is the observation.
pub async fn run(socket: &str, root: &Path, command: &str) -> Observation {
    let fail = |e: String| Observation { output: format!("sandbox error: {e}"), exit_code: None, ..Default::default() };
    let sandbox = match Sandbox::connect(SandboxConfig { socket: Some(socket.to_string()), ..Default::default() }).await {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    // In a git repository: the commit, the uncommitted changes and the untracked files that are
    // not ignored (so build output and virtual environments stay out); else the directory.
    let snapshot = match crate::episode::git_snapshot(root).await {
        Some(vcs) => WorkspaceSnapshot::from_vcs(root, &vcs),
        None => WorkspaceSnapshot::from_dir(root),
    };
    let container = match sandbox.start(&snapshot).await {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let out = match container.exec(command).await {
        Ok(r) => r.to_observation(),
        Err(e) => fail(e.to_string()),
    };
    let _ = container.remove().await;
    out
}
