//! Setup for the container sandbox (`keel-sandbox`), all idempotent:
//!
//! - Debian packages `podman`, `runc` and `busybox-static` (skipped when `podman` and a static
//!   `/bin/busybox` are there), and `socat`, `openssh-server` and `openssh-client` for the remote
//!   engine tests (a TLS proxy and an ssh server in front of the local engine; about 10 s).
//! - `/etc/containers/containers.conf`: `runtime = "runc"` and `exit_command_delay = 5` under
//!   `[engine]`, default ulimits under `[containers]`, each only if not set already.
//! - Podman's Docker-compatible API service on `.keel/podman.sock`, started detached (it outlives
//!   xtask); skipped when the socket answers `GET /_ping`. `env.rs` exports `DOCKER_HOST` for it.
//! - The base image `localhost/keel-sandbox:<version>`, imported from a busybox rootfs made here
//!   (no image can be pulled); skipped when the image exists. The library builds the same image
//!   through the API (`keel_sandbox::image::ensure_base_image`) when xtask has not.
//! - The Python image `localhost/keel-python:<version>`: a minimal Debian (`mmdebstrap
//!   --variant=essential`) with `python3`, `python3-pytest`, `patch` and `procps`, from the Debian
//!   mirror this machine's apt uses (`KEEL_DEBIAN_MIRROR` overrides it), packed as a tar and
//!   imported; skipped when the image exists. `mmdebstrap` is installed with apt if missing.

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

/// Must match `keel_sandbox::image::PYTHON_IMAGE`.
pub fn python_image() -> String {
    format!("localhost/keel-python:{}", env!("CARGO_PKG_VERSION"))
}

/// What the Python image holds besides Debian's essential packages: the interpreter and pytest,
/// and what the sandbox itself runs (`patch` for a workspace's changes, `kill` from procps).
const PYTHON_PACKAGES: &[&str] = &["python3", "python3-pytest", "patch", "procps"];

/// Must match the `ENV PATH` of `keel_sandbox::image::IMPORT_CHANGES`.
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const CONF: &str = "/etc/containers/containers.conf";

pub fn setup() -> Result<()> {
    packages()?;
    if containers_conf()? {
        // The service reads the configuration when it starts.
        stop_service();
    }
    service()?;
    image()?;
    python_image_build()?;
    Ok(())
}

pub fn socket() -> PathBuf {
    env::state_dir().join("podman.sock")
}

pub fn is_root() -> bool {
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

pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    let apt = |args: &[&str]| {
        let mut c = privileged("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    env::run_retry(|| apt(&["update", "-q"]))?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(pkgs);
    env::run_retry(|| apt(&args))
}

fn packages() -> Result<()> {
    let sshd = Path::new("/usr/sbin/sshd").exists();
    let remote = have("socat") && have("ssh") && have("ssh-keygen") && sshd;
    if have("podman") && have("runc") && Path::new("/bin/busybox").exists() && remote {
        return Ok(());
    }
    if !have("apt-get") {
        bail!(
            "the sandbox needs podman, runc and busybox-static (and socat, openssh-server and openssh-client for its remote engine tests), and apt-get is not here to install them"
        );
    }
    eprintln!(
        "xtask: installing podman, runc, busybox-static, socat and openssh (apt), for the container \
         sandbox and its remote engine tests"
    );
    let mut pkgs = vec![
        "podman",
        "runc",
        "busybox-static",
        "socat",
        "openssh-server",
        "openssh-client",
    ];
    if !is_root() {
        // Rootless podman maps users through newuidmap.
        pkgs.push("uidmap");
    }
    apt_install(&pkgs)
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

/// Sets what Keel needs in containers.conf; `true` when the file changed.
fn containers_conf() -> Result<bool> {
    let old = std::fs::read_to_string(CONF).unwrap_or_default();
    let mut text = old.clone();
    if let Some(t) = ensure_key(&text, "engine", "runtime", "runtime = \"runc\"") {
        text = t;
    }
    // An exec through the API keeps its `conmon` alive this long after the command ends (Docker's
    // 5-minute reaper, by default): a search or an evaluation runs thousands of commands, and
    // thousands of idle monitors slowed the whole machine. Keel reads each exit code at once.
    if let Some(t) = ensure_key(&text, "engine", "exit_command_delay", "exit_command_delay = 5") {
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
        return Ok(false);
    }
    eprintln!("xtask: setting the runtime (runc), the exec exit delay and default ulimits in {CONF}");
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
    Ok(true)
}

/// Stops the API service this setup started on `.keel/podman.sock`, if it runs (its containers
/// keep running: each has its own monitor).
fn stop_service() {
    let sock = socket();
    if !ping(&sock) {
        return;
    }
    eprintln!("xtask: restarting podman's API service to apply {CONF}");
    let pattern = format!("podman system service --time=0 unix://{}", sock.display());
    let _ = Command::new("pkill").args(["-f", &pattern]).status();
    let start = Instant::now();
    while ping(&sock) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
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

fn podman_image_exists(image: &str) -> Result<bool> {
    Ok(Command::new("podman")
        .args(["image", "exists", image])
        .status()
        .context("running podman")?
        .success())
}

/// The suite to build: this machine's Debian release, else Debian 12.
fn debian_codename() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        release
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
    };
    match (field("ID").as_deref(), field("VERSION_CODENAME")) {
        (Some("debian"), Some(c)) if !c.is_empty() => c,
        _ => "bookworm".into(),
    }
}

/// The apt sources of this machine: every `sources.list`, `*.list` and `*.sources` file (not the
/// disabled ones), as (file name, text).
fn apt_sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        files.push(("sources.list".to_string(), t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut entries: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".list") || name.ends_with(".sources") {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    files.push((name, t));
                }
            }
        }
    }
    files
}

/// The Debian archives among apt sources, as one-line `deb URI SUITE main` entries for
/// mmdebstrap: the suites of `codename` (`bookworm`, `bookworm-updates`, `bookworm-security`, ...),
/// so the image gets its packages where this machine gets its own; third-party repositories
/// (other suite names) and backports are left out.
fn debian_mirrors(files: &[(String, String)], codename: &str) -> Vec<String> {
    // Not backports: the image should hold the release's own packages.
    let ours = |suite: &str| {
        suite == codename
            || suite
                .strip_prefix(codename)
                .is_some_and(|r| r.starts_with('-') && r != "-backports")
    };
    let mut out = Vec::new();
    let mut add = |uri: &str, suite: &str| {
        let line = format!("deb {} {suite} main", uri.trim_end_matches('/'));
        if ours(suite) && !out.contains(&line) {
            out.push(line);
        }
    };
    for (name, text) in files {
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |k: &str| {
                    stanza.lines().find_map(|l| {
                        let (key, v) = l.split_once(':')?;
                        key.trim()
                            .eq_ignore_ascii_case(k)
                            .then(|| v.trim().to_string())
                    })
                };
                let types = field("Types").unwrap_or_default();
                if !types.split_whitespace().any(|t| t == "deb")
                    || field("Enabled").is_some_and(|e| e == "no")
                {
                    continue;
                }
                let (uris, suites) = (
                    field("URIs").unwrap_or_default(),
                    field("Suites").unwrap_or_default(),
                );
                for uri in uris.split_whitespace() {
                    for suite in suites.split_whitespace() {
                        add(uri, suite);
                    }
                }
            }
        } else {
            for line in text.lines().map(str::trim) {
                let Some(rest) = line.strip_prefix("deb ") else {
                    continue;
                };
                let mut words = rest.split_whitespace().peekable();
                // `deb [arch=amd64 signed-by=...] URI SUITE COMPONENTS`
                if words.peek().is_some_and(|w| w.starts_with('[')) {
                    while let Some(w) = words.next() {
                        if w.ends_with(']') {
                            break;
                        }
                    }
                }
                if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
                    add(uri, suite);
                }
            }
        }
    }
    out
}

fn python_image_build() -> Result<()> {
    let image = python_image();
    if podman_image_exists(&image)? {
        return Ok(());
    }
    if !have("mmdebstrap") {
        if !have("apt-get") {
            bail!(
                "building the sandbox's Python image needs mmdebstrap, and apt-get is not here to install it"
            );
        }
        eprintln!("xtask: installing mmdebstrap (apt), for the sandbox's Python image");
        apt_install(&["mmdebstrap"])?;
    }
    let codename = debian_codename();
    let mirrors = match std::env::var("KEEL_DEBIAN_MIRROR") {
        Ok(m) if !m.trim().is_empty() => vec![format!(
            "deb {} {codename} main",
            m.trim().trim_end_matches('/')
        )],
        _ => debian_mirrors(&apt_sources(), &codename),
    };
    let mirrors = if mirrors.is_empty() {
        vec![format!("deb http://deb.debian.org/debian {codename} main")]
    } else {
        mirrors
    };
    eprintln!(
        "xtask: building the sandbox's Python image {image} (mmdebstrap {codename} from {}, about a minute)",
        mirrors[0]
    );
    let dir = env::state_dir().join("python-rootfs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let tarball = dir.join("rootfs.tar");
    let mut c = Command::new("mmdebstrap");
    c.args(["--variant=essential", "--format=tar"]);
    c.arg(format!("--include={}", PYTHON_PACKAGES.join(",")));
    // Set /usr up merged before anything is unpacked, so that `usrmerge` (and perl with it) is
    // not pulled in.
    let merged_usr = Path::new("/usr/share/mmdebstrap/hooks/merged-usr");
    if merged_usr.is_dir() {
        c.arg(format!("--hook-dir={}", merged_usr.display()));
    }
    for p in [
        "/usr/share/doc/*",
        "/usr/share/man/*",
        "/usr/share/info/*",
        "/usr/share/locale/*",
    ] {
        c.arg(format!("--dpkgopt=path-exclude={p}"));
    }
    // mmdebstrap empties apt's lists and caches itself; /work is a tmpfs in the sandbox, its mount
    // point is made here so a read-only root needs nothing created.
    c.arg("--customize-hook=mkdir -p -m 1777 \"$1/work\"");
    c.arg("--customize-hook=rm -rf \"$1\"/var/log/* \"$1\"/var/cache/debconf/*-old");
    c.arg(&codename).arg(&tarball).args(&mirrors);
    env::run_retry(|| {
        let mut again = Command::new(c.get_program());
        again.args(c.get_args());
        again
    })?;
    env::run(
        Command::new("podman")
            .arg("import")
            .args(["--change", "WORKDIR=/work", "--change"])
            .arg(format!("ENV=PATH={IMAGE_PATH}"))
            .args(["--change", "CMD=[\"/bin/sh\"]"])
            .arg(&tarball)
            .arg(&image),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{debian_mirrors, ensure_key};

    #[test]
    fn debian_mirrors_come_from_the_machines_sources() {
        let files = vec![
            (
                "debian.sources".to_string(),
                "Types: deb\n# a snapshot\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                 Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
                 Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n"
                    .to_string(),
            ),
            ("nodesource.sources".to_string(), "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n".to_string()),
            ("cloud.list".to_string(), "deb [signed-by=/k.gpg] https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n".to_string()),
            ("sources.list".to_string(), "# old style\ndeb [arch=amd64] http://mirror.example/debian bookworm main contrib\ndeb http://other.example/debian bookworm-backports main\n".to_string()),
        ];
        assert_eq!(
            debian_mirrors(&files, "bookworm"),
            [
                "deb http://mirror.example/debian bookworm main",
                "deb http://mirror.example/debian bookworm-updates main",
                "deb http://mirror.example/debian-security bookworm-security main",
            ]
        );
        assert!(debian_mirrors(&files, "trixie").is_empty());
    }

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
