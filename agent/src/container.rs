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
}

impl<'a> ContainerWorkspace<'a> {
    /// `rt` runs the engine calls; the workspace's methods block on it, so call them from outside
    /// the runtime (a plain thread, or `spawn_blocking`).
    pub fn new(sandbox: &'a Sandbox, container: Container, rt: tokio::runtime::Handle) -> Self {
        ContainerWorkspace { sandbox, container, rt }
    }

    pub fn container(&self) -> &Container {
        &self.container
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
                    Err(e) => return Err(format!("reading `{rel}` in the container: {e}")),
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
        self.rt.block_on(self.container.write_file(rel, text.as_bytes())).map_err(|e| e.to_string())
    }

    fn run(&self, command: &str) -> Observation {
        match self.rt.block_on(self.container.exec(command)) {
            Ok(r) => r.to_observation(),
            Err(e) => Observation { output: format!("sandbox error: {e}"), exit_code: None, ..Default::default() },
        }
    }
}
