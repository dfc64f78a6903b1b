//! Setup for the container sandbox (`keel-sandbox`), all idempotent:
//!
//! - Debian packages `podman`, `runc` and `busybox-static` (skipped when `podman` and a static
//!   `/bin/busybox` are there).
//! - `/etc/containers/containers.conf`: `runtime = "runc"` under `[engine]` and default ulimits under
//!   `[containers]`, each only if not set already.
//! - Podman's Docker-compatible API service on `.keel/podman.sock`, started detached (it outlives
//!   xtask); skipped when the socket answers `GET /_ping`. `env.rs` exports `DOCKER_HOST` for it.
//! - The base image `localhost/keel-sandbox:<version>`, imported from a busybox rootfs made here
//!   (no image can be pulled); skipped when the image exists. The library builds the same image
//!   through the API (`keel_sandbox::image::ensure_base_image`) when xtask has not.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::env;

/// Must match `keel_sandbox::image::BASE_IMAGE` (both are the workspace version).
pub fn base_image() -> String {
    format!("localhost/keel-sandbox:{}", env!("CARGO_PKG_VERSION"))
}

const CONF: &str = "/etc/containers/containers.conf";

pub fn setup() -> Result<()> {
    packages()?;
    containers_conf()?;
    service()?;
    image()?;
    Ok(())
}

pub fn socket() -> PathBuf {
    env::state_dir().join("podman.sock")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args` as root: directly when we are root, else through sudo.
fn privileged(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    }
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn packages() -> Result<()> {
    if have("podman") && have("runc") && Path::new("/bin/busybox").exists() {
        return Ok(());
    }
    if !have("apt-get") {
        bail!(
            "the sandbox needs podman, runc and busybox-static, and apt-get is not here to install them"
        );
    }
    eprintln!("xtask: installing podman, runc and busybox-static (apt), for the container sandbox");
    let mut pkgs = vec!["podman", "runc", "busybox-static"];
    if !is_root() {
        // Rootless podman maps users through newuidmap.
        pkgs.push("uidmap");
    }
    let apt = |args: &[&str]| {
        let mut c = privileged("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    env::run_retry(|| apt(&["update", "-q"]))?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&pkgs);
    env::run_retry(|| apt(&args))
}

/// Insert `line` into `[section]` of a TOML text unless `key` is set (uncommented) there already.
fn ensure_key(text: &str, section: &str, key: &str, line: &str) -> Option<String> {
    let header = format!("[{section}]");
    let mut in_section = false;
    let mut header_at = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_section = t == header;
            if in_section {
                header_at = Some(i);
            }
            continue;
        }
        if in_section && t.split('=').next().map(str::trim) == Some(key) {
            return None;
        }
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match header_at {
        Some(i) => lines.insert(i + 1, line.to_string()),
        None => {
            lines.push(header);
            lines.push(line.to_string());
        }
    }
    Some(lines.join("\n") + "\n")
}

fn containers_conf() -> Result<()> {
    let old = std::fs::read_to_string(CONF).unwrap_or_default();
    let mut text = old.clone();
    if let Some(t) = ensure_key(&text, "engine", "runtime", "runtime = \"runc\"") {
        text = t;
    }
    if let Some(t) = ensure_key(
        &text,
        "containers",
        "default_ulimits",
        "default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]",
    ) {
        text = t;
    }
    if text == old {
        return Ok(());
    }
    eprintln!("xtask: setting the runtime (runc) and default ulimits in {CONF}");
    let mut c = privileged("tee");
    c.arg(CONF).stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = c.spawn().with_context(|| format!("writing {CONF}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("writing {CONF} failed ({status})");
    }
    Ok(())
}

/// Whether the API service on `sock` answers `GET /_ping` with `OK`.
pub fn ping(sock: &Path) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.") && buf.contains(" 200 ") && buf.ends_with("OK")
}

fn service() -> Result<()> {
    let sock = socket();
    if ping(&sock) {
        return Ok(());
    }
    std::fs::create_dir_all(env::state_dir())?;
    let _ = std::fs::remove_file(&sock);
    let log_path = env::state_dir().join("podman-service.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "xtask: starting podman's API service on {} (log: {})",
        sock.display(),
        log_path.display()
    );
    use std::os::unix::process::CommandExt;
    Command::new("podman")
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", sock.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C at xtask's terminal does not stop it.
        .process_group(0)
        .spawn()
        .context("starting `podman system service`")?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if ping(&sock) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "podman's API service did not answer on {} within 60 s; see {}",
        sock.display(),
        log_path.display()
    )
}

fn image() -> Result<()> {
    let image = base_image();
    let exists = Command::new("podman")
        .args(["image", "exists", &image])
        .status()
        .context("running podman")?;
    if exists.success() {
        return Ok(());
    }
    eprintln!("xtask: building the sandbox base image {image} (busybox rootfs, podman import)");
    let dir = env::state_dir().join("sandbox-rootfs");
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("rootfs");
    for d in ["bin", "tmp", "work", "etc"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .context("copying /bin/busybox (busybox-static)")?;
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .context("running busybox --list")?;
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/work:/bin/sh\n",
    )?;
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    // /tmp and /work: world-writable with the sticky bit, as everywhere.
    use std::os::unix::fs::PermissionsExt;
    for d in ["tmp", "work"] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o1777))?;
    }
    let tarball = dir.join("rootfs.tar");
    env::run(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&tarball)
            .arg("."),
    )?;
    env::run(
        Command::new("podman")
            .arg("import")
            .args([
                "--change",
                "WORKDIR=/work",
                "--change",
                "ENV=PATH=/bin",
                "--change",
                "CMD=[\"/bin/sh\"]",
            ])
            .arg(&tarball)
            .arg(&image),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ensure_key;

    #[test]
    fn inserts_keys_once() {
        let t = ensure_key(
            "# comment\n[engine]\n#runtime = \"crun\"\n",
            "engine",
            "runtime",
            "runtime = \"runc\"",
        )
        .unwrap();
        assert_eq!(
            t,
            "# comment\n[engine]\nruntime = \"runc\"\n#runtime = \"crun\"\n"
        );
        assert_eq!(
            ensure_key(&t, "engine", "runtime", "runtime = \"runc\""),
            None
        );
        let u = ensure_key(&t, "containers", "default_ulimits", "default_ulimits = []").unwrap();
        assert!(u.ends_with("[containers]\ndefault_ulimits = []\n"), "{u}");
    }
}
