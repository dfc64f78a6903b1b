//! A container's workspace (`/work` in a keel-sandbox container): search rollouts and evaluation.
//! Files are read through the engine's archive API and formatted by the same tools as in the
//! editor, so the same workspace gives the same observations byte for byte.

use std::io::Read;

use futures::StreamExt;
use keel_sandbox::{Container, Sandbox};
use keel_trajectory::Observation;

use crate::workspace::{FileRead, MAX_FILE_BYTES, Workspace};

const WORKDIR: &str = "/work";

pub struct ContainerWorkspace<'a> {
    sandbox: &'a Sandbox,
    container: Container,
    rt: tokio::runtime::Handle,
    /// The first failure of the engine itself (not of the model's action): from then on what the
    /// workspace answers is not the workspace's (a read that failed is not a missing file), so
    /// the episode has no real outcome. See [`ContainerWorkspace::lost`].
    lost: std::sync::Mutex<Option<String>>,
}

/// Whether a sandbox error is the engine's (it stopped or did not answer) or the container's loss,
/// not an answer about the model's request (an upload the engine refused, e.g. `/work` full).
fn engine_failure(e: &keel_sandbox::Error) -> bool {
    use bollard::errors::Error as B;
    match e {
        keel_sandbox::Error::Engine { source: B::DockerResponseServerError { status_code, .. }, .. } => *status_code == 404,
        keel_sandbox::Error::Engine { .. } | keel_sandbox::Error::Unreachable { .. } | keel_sandbox::Error::Gone(_) => true,
        _ => false,
    }
}

impl<'a> ContainerWorkspace<'a> {
    /// `rt` runs the engine calls; the workspace's methods block on it, so call them from outside
    /// the runtime (a plain thread, or `spawn_blocking`).
    pub fn new(sandbox: &'a Sandbox, container: Container, rt: tokio::runtime::Handle) -> Self {
        ContainerWorkspace { sandbox, container, rt, lost: Default::default() }
    }

    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Why the engine failed under this workspace (the first failure), if it did: the engine
    /// stopped or did not answer, or the container was lost. An episode or rollout that saw one
    /// has no outcome to count: a read that failed looked to the agent like a missing file, a
    /// command like a sandbox error.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn note_lost(&self, why: String) {
        let mut l = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if l.is_none() {
            *l = Some(why);
        }
    }

    /// The container back (to reset and reuse, or remove).
    pub fn into_container(self) -> Container {
        self.container
    }

    /// The archive of `/work/rel` as (path relative to `/work`, kind, size, bytes when wanted).
    fn archive(&self, rel: &str, contents: bool) -> Result<Option<Vec<Entry>>, String> {
        let path = if rel.is_empty() { WORKDIR.to_string() } else { format!("{WORKDIR}/{rel}") };
        let options = bollard::query_parameters::DownloadFromContainerOptions { path };
        let tar = self.rt.block_on(async {
            let mut stream = self.sandbox.docker().download_from_container(self.container.id(), Some(options));
            let mut tar = Vec::new();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(b) => tar.extend_from_slice(&b),
                    Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
                    Err(e) => {
                        let why = format!("reading `{rel}` in the container: {e}");
                        self.note_lost(why.clone());
                        return Err(why);
                    }
                }
            }
            Ok(Some(tar))
        })?;
        let Some(tar) = tar else { return Ok(None) };
        // The archive's entries are named from the last component of the path asked for.
        let parent = match rel.rsplit_once('/') {
            Some((p, _)) => format!("{p}/"),
            None => String::new(),
        };
        let mut out = Vec::new();
        let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
        let bad = |e: std::io::Error| format!("reading the archive of `{rel}`: {e}");
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = entry.path().map_err(bad)?.to_string_lossy().trim_end_matches('/').to_string();
            let name = if rel.is_empty() {
                // `/work` comes back as `work/...`.
                match name.split_once('/') {
                    Some((_, r)) => r.to_string(),
                    None => String::new(),
                }
            } else {
                format!("{parent}{name}")
            };
            let kind = entry.header().entry_type();
            let size = entry.header().size().unwrap_or(0);
            let data = if contents && kind.is_file() && size <= MAX_FILE_BYTES {
                let mut d = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut d).map_err(bad)?;
                Some(d)
            } else {
                None
            };
            out.push(Entry { rel: name, dir: kind.is_dir(), file: kind.is_file(), size, data });
            if contents {
                break;
            }
        }
        Ok(Some(out))
    }
}

impl ContainerWorkspace<'_> {
    /// [`Workspace::check`] in the container. The engine's archive API follows links (podman's
    /// even the last component), so the container resolves the path itself: the longest part of
    /// `/work/rel` that exists, resolved with `readlink -f`, must stay in `/work`; when the rest is
    /// missing, no entry of the last existing directory may differ from the next name only by case.
    fn check_in_container(&self, rel: &str) -> Result<String, String> {
        if rel.is_empty() {
            return Ok(String::new());
        }
        let mut rel = rel.to_string();
        // Each round either ends or replaces one more name by its Unicode twin on disk.
        for _ in 0..=rel.split('/').count() {
            let quoted = rel.replace('\'', "'\\''");
            let script = format!(
                "p='{WORKDIR}/{quoted}'; while [ ! -e \"$p\" ] && [ ! -L \"$p\" ]; do p=$(dirname \"$p\"); done; \
                 printf '%s\\n' \"$p\"; readlink -f \"$p\" || echo '?'; [ \"$p\" = '{WORKDIR}/{quoted}' ] || ls -A \"$p\" 2>/dev/null"
            );
            let r = self.rt.block_on(self.container.exec(&script)).map_err(|e| {
                let why = format!("cannot check `{rel}` in the container: {e}");
                if engine_failure(&e) {
                    self.note_lost(why.clone());
                }
                why
            })?;
            let mut lines = r.stdout.lines();
            let (Some(existing), Some(resolved)) = (lines.next(), lines.next()) else {
                return Err(format!("cannot check `{rel}` in the container: {}", r.stderr.trim()));
            };
            let inside = resolved == WORKDIR || resolved.strip_prefix(WORKDIR).is_some_and(|r| r.starts_with('/'));
            if !inside {
                let through = existing.strip_prefix(WORKDIR).unwrap_or(existing).trim_start_matches('/');
                return Err(format!("`{rel}` leaves the workspace through a link (`{through}` is `{resolved}`)"));
            }
            let full = format!("{WORKDIR}/{rel}");
            if existing == full {
                return Ok(rel);
            }
            let done = existing.strip_prefix(WORKDIR).unwrap_or("").trim_start_matches('/').to_string();
            let rest = rel.strip_prefix(done.as_str()).unwrap_or(&rel).trim_start_matches('/').to_string();
            let (next, after) = rest.split_once('/').map_or((rest.as_str(), None), |(n, a)| (n, Some(a)));
            let entries: Vec<&str> = lines.collect();
            let join = |name: &str| {
                let mut p = if done.is_empty() { name.to_string() } else { format!("{done}/{name}") };
                if let Some(a) = after {
                    p = format!("{p}/{a}");
                }
                p
            };
            match crate::workspace::same_name(next, entries.iter().copied()).map_err(|e| format!("`{rel}`: {e}"))? {
                // Another Unicode form of an entry: check again with the entry's name.
                Some(twin) if twin != next => {
                    rel = join(twin);
                    continue;
                }
                _ => {}
            }
            let lower = next.to_lowercase();
            if let Some(twin) = entries.iter().find(|n| n.to_lowercase() == lower) {
                let twin = if done.is_empty() { twin.to_string() } else { format!("{done}/{twin}") };
                return Err(format!("`{rel}` differs only by case from `{twin}`, which exists; use the exact name"));
            }
            return Ok(rel);
        }
        Err(format!("cannot check `{rel}` in the container: its names kept changing form"))
    }
}

struct Entry {
    rel: String,
    dir: bool,
    file: bool,
    size: u64,
    data: Option<Vec<u8>>,
}

impl Workspace for ContainerWorkspace<'_> {
    fn root_hint(&self) -> Option<&str> {
        Some(WORKDIR)
    }

    /// The editor's checks, in the container: a path through a link that leaves `/work` (the
    /// engine's archive API would follow it inside the container's file system), or a missing name
    /// that differs only by case from an existing entry, is refused. One `exec` per path the model
    /// gives.
    fn check(&self, rel: &str) -> Result<String, String> {
        self.check_in_container(rel)
    }

    fn read(&self, rel: &str) -> Result<FileRead, String> {
        let Some(entries) = self.archive(rel, true)? else { return Ok(FileRead::Missing) };
        let Some(e) = entries.into_iter().next() else { return Ok(FileRead::Missing) };
        if e.dir {
            return Ok(FileRead::Directory);
        }
        if !e.file {
            return Err(format!("`{rel}` is not a regular file"));
        }
        if e.size > MAX_FILE_BYTES {
            return Ok(FileRead::TooLarge(e.size));
        }
        Ok(String::from_utf8(e.data.unwrap_or_default()).map(FileRead::Text).unwrap_or(FileRead::Binary))
    }

    fn files(&self, base: &str) -> Result<Vec<(String, u64)>, String> {
        let entries = self.archive(base, false)?.unwrap_or_default();
        Ok(entries.into_iter().filter(|e| e.file && !e.rel.is_empty()).map(|e| (e.rel, e.size)).collect())
    }

    fn write(&self, rel: &str, text: &str) -> Result<(), String> {
        self.rt.block_on(self.container.write_file(rel, text.as_bytes())).map_err(|e| {
            if engine_failure(&e) {
                self.note_lost(format!("writing `{rel}` in the container: {e}"));
            }
            e.to_string()
        })
    }

    fn run(&self, command: &str) -> Observation {
        match self.rt.block_on(self.container.exec(command)) {
            Ok(r) => r.to_observation(),
            Err(e) => {
                if engine_failure(&e) {
                    self.note_lost(format!("running `{command}`: {e}"));
                }
                Observation { output: format!("sandbox error: {e}"), exit_code: None, ..Default::default() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_sandbox::{Limits, SandboxConfig, WorkspaceSnapshot};

    /// Needs the container engine (`cargo xtask setup`, `DOCKER_HOST`), like the sandbox's tests.
    #[test]
    fn links_out_of_work_and_case_twins_are_refused_in_the_container() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let sandbox = rt.block_on(keel_sandbox::Sandbox::connect(SandboxConfig::with_limits(Limits::default()))).unwrap_or_else(|e| panic!("this test needs a container engine: {e}"));
        let snap = WorkspaceSnapshot::from_files([("sub/a.txt", "a\n"), ("Notes.md", "n\n")]);
        let container = rt.block_on(sandbox.start(&snap)).unwrap();
        let ws = ContainerWorkspace::new(&sandbox, container, rt.handle().clone());
        let made = ws.run("ln -s /etc out && ln -s /etc/passwd pw && ln -s sub in && ln -s ../../etc up && ln -s out chain && ln -s in/a.txt ina && mkdir -p deep && ln -s ../sub deep/back && echo ok");
        assert!(made.output.contains("ok"), "{}", made.output);
        // Before the check, the archive API followed such a link to the container's own files.
        assert!(matches!(ws.read("out/passwd"), Ok(FileRead::Text(t)) if t.contains("root")));
        for (path, why) in [
            ("out/passwd", "leaves the workspace through a link (`out/passwd` is `/etc/passwd`)"),
            ("out", "leaves the workspace"),
            ("pw", "leaves the workspace"),
            ("up/passwd", "leaves the workspace"),
            ("chain/passwd", "leaves the workspace"),
            ("out/nope/x", "leaves the workspace through a link (`out` is `/etc`)"),
            ("notes.md", "differs only by case from `Notes.md`"),
            ("SUB/a.txt", "differs only by case from `sub`"),
            ("sub/A.txt", "differs only by case from `sub/a.txt`"),
        ] {
            let e = ws.check(path).expect_err(path);
            assert!(e.contains(why), "{path}: {e}");
        }
        // Links that stay inside, plain files, directories and new files are fine.
        for path in ["in/a.txt", "ina", "deep/back/a.txt", "sub/a.txt", "sub", "Notes.md", "new.txt", "sub/new/b.txt", ""] {
            assert_eq!(ws.check(path).as_deref(), Ok(path), "{path}");
        }
        // Another Unicode form of an entry's name means the entry, and is checked as it: an NFD
        // spelling of an NFC directory resolves to it, and of a link out is refused.
        let made = ws.run("mkdir -p 'caf\u{e9}' && echo x > 'caf\u{e9}/a.txt' && ln -s /etc 'r\u{e9}s' && echo ok");
        assert!(made.output.contains("ok"), "{}", made.output);
        assert_eq!(ws.check("cafe\u{301}/a.txt").as_deref(), Ok("caf\u{e9}/a.txt"));
        assert_eq!(ws.check("cafe\u{301}/new.txt").as_deref(), Ok("caf\u{e9}/new.txt"));
        let e = ws.check("re\u{301}s/passwd").expect_err("an NFD spelling of a link out");
        assert!(e.contains("leaves the workspace"), "{e}");
        let c = ws.into_container();
        rt.block_on(c.remove()).unwrap();
    }
}
