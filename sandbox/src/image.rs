//! The sandbox's images, built here because no image can be pulled.
//!
//! - [`BASE_IMAGE`], the default: a busybox rootfs, small and quick to build (the tests use it).
//! - [`PYTHON_IMAGE`]: a minimal Debian with `python3` and `python3-pytest`, for tasks whose tests
//!   are Python. `cargo xtask setup` builds it with `mmdebstrap` from Debian's packages (the
//!   machine's own apt mirror) and imports it; the library only checks it is there.
//! - Any other image with a project's own toolchain: a rootfs tar imported with
//!   [`import_rootfs`] (or `podman import`), see `docs/sandbox.md`.
//!
//! What the sandbox needs from an image: `/bin/sh`, `/bin/sleep` (the container's init) and
//! `/bin/kill`; `patch`, `rm`, `ls` and `wc` (populating and resetting `/work`); user 65534
//! (`nobody`) may have any name. `/work` and `/tmp` are tmpfs mounts, so they need not exist.
//!
//! The busybox rootfs is `bin/busybox` (the host's static busybox, from Debian's `busybox-static`) with a
//! symbolic link per applet (`sh`, `ls`, `cat`, `grep`, `sed`, `patch`, `diff`, `wget`, `nc`, ...),
//! empty `/tmp` and `/work` (mode 1777), and an `/etc/passwd` with `root` and `nobody`. It is
//! imported through the Docker API (`POST /images/create?fromSrc=-`), which podman serves too.
//! `cargo xtask setup` builds the same image with `podman import`.

use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;

use crate::{Error, Result};

/// The base image's reference. The tag is the crate version: a new rootfs layout means a new
/// version, so a stale image is never reused.
pub const BASE_IMAGE: &str = concat!("localhost/keel-sandbox:", env!("CARGO_PKG_VERSION"));

/// The Python image's reference: Debian's `python3` and `python3-pytest` on a minimal Debian,
/// built by `cargo xtask setup` (nothing builds it on connect: it needs `mmdebstrap` and a mirror).
pub const PYTHON_IMAGE: &str = concat!("localhost/keel-python:", env!("CARGO_PKG_VERSION"));

/// The image settings every import gets: `/work` as the working directory, a standard `PATH`
/// (busybox has only `/bin`; a Debian rootfs merges it into `/usr/bin`), `sh` as the command.
pub const IMPORT_CHANGES: &[&str] = &[
    "WORKDIR /work",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "CMD [\"/bin/sh\"]",
];

/// Applets linked even when `busybox --list` cannot be run (it always can with busybox-static).
const CORE_APPLETS: &[&str] = &[
    "sh",
    "ash",
    "ls",
    "cat",
    "echo",
    "printf",
    "grep",
    "egrep",
    "sed",
    "awk",
    "mkdir",
    "rm",
    "rmdir",
    "cp",
    "mv",
    "ln",
    "find",
    "xargs",
    "head",
    "tail",
    "wc",
    "sort",
    "uniq",
    "cut",
    "tr",
    "tee",
    "sleep",
    "timeout",
    "dd",
    "yes",
    "wget",
    "nc",
    "diff",
    "patch",
    "true",
    "false",
    "test",
    "[",
    "[[",
    "env",
    "id",
    "ps",
    "kill",
    "touch",
    "chmod",
    "stat",
    "df",
    "du",
    "tar",
    "gzip",
    "gunzip",
    "base64",
    "md5sum",
    "sha256sum",
    "basename",
    "dirname",
    "pwd",
    "seq",
    "expr",
    "which",
    "ip",
    "mount",
    "whoami",
    "date",
    "uname",
    "hostname",
    "cmp",
    "od",
    "hexdump",
];

/// Where the static busybox comes from: `KEEL_BUSYBOX`, else `/bin/busybox`.
pub fn busybox_path() -> PathBuf {
    std::env::var_os("KEEL_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"))
}

fn applets(busybox: &Path) -> Vec<String> {
    let listed = Command::new(busybox)
        .arg("--list")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        });
    let mut all = listed.unwrap_or_default();
    all.extend(CORE_APPLETS.iter().map(|s| s.to_string()));
    all.retain(|a| a != "busybox" && !a.contains('/'));
    all.sort();
    all.dedup();
    all
}

/// The rootfs as an uncompressed tar, in memory (about 2 MB).
pub fn rootfs_tar(busybox: &Path) -> Result<Vec<u8>> {
    let bin = std::fs::read(busybox).map_err(|e| Error::Image(format!(
        "cannot read the static busybox at {} ({e}); install Debian's busybox-static or run `cargo xtask setup`",
        busybox.display()
    )))?;
    let mut b = tar::Builder::new(Vec::new());
    let io = |e: std::io::Error| Error::Image(format!("building the rootfs tar: {e}"));
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, std::io::empty())
    };
    let file = |b: &mut tar::Builder<Vec<u8>>,
                path: &str,
                mode: u32,
                data: &[u8]|
     -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, data)
    };
    for (d, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("work", 0o1777),
        ("dev", 0o755),
        ("proc", 0o755),
        ("sys", 0o755),
    ] {
        dir(&mut b, d, mode).map_err(io)?;
    }
    file(&mut b, "bin/busybox", 0o755, &bin).map_err(io)?;
    for applet in applets(busybox) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .map_err(io)?;
    }
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/work:/bin/sh\n",
    )
    .map_err(io)?;
    file(&mut b, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n").map_err(io)?;
    b.into_inner().map_err(io)
}

/// Whether `image` exists on the engine.
pub async fn image_exists(docker: &Docker, image: &str) -> Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(Error::Engine {
            what: format!("inspecting image {image}"),
            source: e,
        }),
    }
}

/// Import the busybox rootfs as `image` (`repo:tag`) unless it exists. Returns whether it imported.
pub async fn ensure_image(docker: &Docker, image: &str) -> Result<bool> {
    if image_exists(docker, image).await? {
        return Ok(false);
    }
    let tar = rootfs_tar(&busybox_path())?;
    tracing::info!(image, bytes = tar.len(), "importing the sandbox base image");
    import(docker, image, futures::stream::once(async move { Ok(tar) })).await?;
    Ok(true)
}

/// Import the rootfs tar at `rootfs` (plain, or compressed as the engine accepts: gzip, xz) as
/// `image` (`repo:tag`), replacing an image of that name, with [`IMPORT_CHANGES`]. The tar is
/// streamed, not read into memory.
pub async fn import_rootfs(docker: &Docker, image: &str, rootfs: &Path) -> Result<()> {
    let file = tokio::fs::File::open(rootfs).await.map_err(|e| {
        Error::Image(format!(
            "cannot open the rootfs tar {} ({e})",
            rootfs.display()
        ))
    })?;
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>((n > 0).then_some((buf, file)))
    });
    tracing::info!(image, rootfs = %rootfs.display(), "importing a sandbox image");
    import(docker, image, chunks).await
}

async fn import(
    docker: &Docker,
    image: &str,
    tar: impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static,
) -> Result<()> {
    use futures::TryStreamExt;
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        // The whole reference as `repo`: podman ignores `tag` on an import (and names it
        // `latest`); Docker accepts a tag inside `repo` as well.
        repo: Some(image.into()),
        changes: IMPORT_CHANGES.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    let body = bollard::body_try_stream(tar.map_ok(Into::into));
    let mut stream = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| Error::Engine {
            what: format!("importing image {image}"),
            source: e,
        })?;
        if let Some(e) = info.error_detail.and_then(|d| d.message).or(info.error) {
            return Err(Error::Image(format!("importing {image}: {e}")));
        }
    }
    if !image_exists(docker, image).await? {
        return Err(Error::Image(format!(
            "the engine accepted the import of {image}, but the image is not there"
        )));
    }
    Ok(())
}

/// [`ensure_image`] for [`BASE_IMAGE`].
pub async fn ensure_base_image(docker: &Docker) -> Result<bool> {
    ensure_image(docker, BASE_IMAGE).await
}

/// Checks that `image` is on the engine, importing it first if it is [`BASE_IMAGE`]. A missing
/// image is an error that says how to make it.
pub async fn require_image(docker: &Docker, image: &str) -> Result<()> {
    if image == BASE_IMAGE {
        ensure_base_image(docker).await?;
        return Ok(());
    }
    if image_exists(docker, image).await? {
        return Ok(());
    }
    Err(Error::Image(missing_image_message(image)))
}

fn missing_image_message(image: &str) -> String {
    if image == PYTHON_IMAGE {
        format!(
            "{image} is not on the engine. Run `cargo xtask setup`: it builds the Python image from \
             Debian's packages (mmdebstrap) and imports it"
        )
    } else {
        format!(
            "{image} is not on the engine, and images cannot be pulled here: build a rootfs tar and \
             import it under that name (`podman import`, see docs/sandbox.md)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_image_says_how_to_make_it() {
        assert!(missing_image_message(PYTHON_IMAGE).contains("cargo xtask setup"));
        assert!(missing_image_message("localhost/mine:1").contains("podman import"));
        assert!(PYTHON_IMAGE.starts_with("localhost/keel-python:"));
    }
}
