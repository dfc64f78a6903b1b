//! Remote engines, for real: the local podman socket behind a TLS-terminating proxy (`socat`, with
//! certificates made by the `openssl` CLI) and behind `sshd` (a throwaway server on a loopback
//! port whose forced command answers `docker system dial-stdio` with `podman system dial-stdio`).
//! `cargo xtask setup` installs socat and openssh-server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_sandbox::{Error, Sandbox, SandboxConfig, WorkspaceSnapshot};

use crate::common::{harness_with, small_limits};

/// A process of the test's, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The local engine's socket path (from `DOCKER_HOST`, as `cargo xtask env` exports it).
fn local_socket() -> String {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    match host.strip_prefix("unix://") {
        Some(p) => p.to_string(),
        None => panic!(
            "these tests put a proxy in front of the local engine's unix socket; DOCKER_HOST is `{host}`. \
             Run `eval \"$(cargo xtask env)\"`"
        ),
    }
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed (cargo xtask setup installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something listens on `port` (the daemon just started), or panic.
async fn listening(port: u16, what: &mut Daemon) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = what.0.try_wait() {
            panic!("the test's daemon exited before listening on {port}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port} after 10 s");
}

/// A CA named `name` in `dir/name/`: `ca.pem` and `ca-key.pem`, and a certificate signed by it
/// (`cert.pem`, `key.pem`) with the extensions in `ext`.
fn ca_and_cert(dir: &Path, name: &str, ext: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let subject = format!("/CN={name}-ca");
    let mut args = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ];
    args.extend(ec);
    args.extend(["-subj", &subject]);
    run(&d, "openssl", &args);
    let mut args = vec![
        "req", "-keyout", "key.pem", "-out", "req.csr", "-subj", "/CN=keel",
    ];
    args.extend(ec);
    run(&d, "openssl", &args);
    std::fs::write(d.join("ext.cnf"), ext).unwrap();
    run(
        &d,
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
    d
}

/// The local engine behind `socat` terminating TLS on a loopback port: it presents a
/// certificate for 127.0.0.1 signed by `server/ca.pem` and accepts clients whose certificate
/// `client/ca.pem` signed. `stranger/` is a CA and client certificate neither side trusts.
struct TlsProxy {
    port: u16,
    dir: tempfile::TempDir,
    _socat: Daemon,
}

impl TlsProxy {
    async fn start() -> TlsProxy {
        let dir = tempfile::tempdir().unwrap();
        let server = ca_and_cert(
            dir.path(),
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        let client = ca_and_cert(dir.path(), "client", "extendedKeyUsage=clientAuth\n");
        ca_and_cert(dir.path(), "stranger", "extendedKeyUsage=clientAuth\n");
        // What a Keel user's DOCKER_CERT_PATH holds: the engine's CA, and the client's identity.
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::copy(server.join("ca.pem"), certs.join("ca.pem")).unwrap();
        std::fs::copy(client.join("cert.pem"), certs.join("cert.pem")).unwrap();
        std::fs::copy(client.join("key.pem"), certs.join("key.pem")).unwrap();

        let port = free_port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
            server.join("cert.pem").display(),
            server.join("key.pem").display(),
            client.join("ca.pem").display(),
        );
        let connect = format!("UNIX-CONNECT:{}", local_socket());
        let mut socat = Daemon(
            Command::new("socat")
                .args([&listen, &connect])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("socat is needed (cargo xtask setup installs it)"),
        );
        listening(port, &mut socat).await;
        TlsProxy {
            port,
            dir,
            _socat: socat,
        }
    }

    fn config(&self, certs: &str) -> SandboxConfig {
        SandboxConfig {
            socket: Some(format!("tcp://127.0.0.1:{}", self.port)),
            tls_certs: Some(self.dir.path().join(certs)),
            ..SandboxConfig::with_limits(small_limits())
        }
    }
}

/// What every remote test checks through its sandbox: a command runs, files go in and out, the
/// container is listed, and it is removed (explicitly, and by the drop guard).
async fn runs_lists_and_cleans(config: SandboxConfig) {
    let h = harness_with(config).await;
    let snap = WorkspaceSnapshot::from_files([("a.txt", "alpha\n")]);
    let c = h.sandbox.start(&snap).await.unwrap();
    let r = c.exec("cat a.txt; echo oops >&2; exit 3").await.unwrap();
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.exit_code),
        ("alpha\n", "oops\n", Some(3))
    );
    c.write_file("b.txt", b"beta\n").await.unwrap();
    assert_eq!(c.read_file("b.txt").await.unwrap(), b"beta\n");
    assert_eq!(
        h.sandbox.own_containers().await.unwrap(),
        vec![c.id().to_string()]
    );
    assert!(
        h.sandbox
            .labelled_containers()
            .await
            .unwrap()
            .contains(&c.id().to_string())
    );
    let id = c.id().to_string();
    c.remove().await.unwrap();
    h.assert_gone(&id).await;

    // The drop guard reconnects over the same transport.
    let d = h.sandbox.start(&snap).await.unwrap();
    let id = d.id().to_string();
    drop(d);
    h.assert_gone(&id).await;

    // Leftovers are found and removed remotely too.
    let e = h.sandbox.start(&snap).await.unwrap();
    std::mem::forget(e);
    assert_eq!(
        h.sandbox
            .cleanup_own_leftovers(Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn tls_with_client_certificates_runs_lists_and_cleans() {
    let proxy = TlsProxy::start().await;
    runs_lists_and_cleans(proxy.config("certs")).await;
}

#[tokio::test]
async fn tls_refuses_strangers_clearly() {
    let proxy = TlsProxy::start().await;

    // Our certificate is not one the engine trusts: the engine refuses us.
    let strange = proxy.dir.path().join("strange");
    std::fs::create_dir(&strange).unwrap();
    let certs = proxy.dir.path().join("certs");
    let stranger = proxy.dir.path().join("stranger");
    std::fs::copy(certs.join("ca.pem"), strange.join("ca.pem")).unwrap();
    std::fs::copy(stranger.join("cert.pem"), strange.join("cert.pem")).unwrap();
    std::fs::copy(stranger.join("key.pem"), strange.join("key.pem")).unwrap();
    let e = Sandbox::connect(proxy.config("strange")).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Unreachable { .. }), "{text}");
    assert!(
        text.contains("alert") && text.contains("Remote engines"),
        "the engine's refusal is reported: {text}"
    );

    // The engine's certificate is not signed by the CA we trust.
    std::fs::copy(stranger.join("ca.pem"), strange.join("ca.pem")).unwrap();
    std::fs::copy(certs.join("cert.pem"), strange.join("cert.pem")).unwrap();
    std::fs::copy(certs.join("key.pem"), strange.join("key.pem")).unwrap();
    let text = Sandbox::connect(proxy.config("strange"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("invalid peer certificate") && text.contains("strange/ca.pem"),
        "an unverified engine is reported with the CA it was checked against: {text}"
    );

    // A missing key is named.
    std::fs::remove_file(strange.join("key.pem")).unwrap();
    let e = Sandbox::connect(proxy.config("strange")).await.unwrap_err();
    assert!(
        matches!(e, Error::Certificates(_)) && e.to_string().contains("strange/key.pem"),
        "{e}"
    );
}

/// The local engine behind a throwaway `sshd` on a loopback port: key login as the current user
/// with an ephemeral key, and a forced command that answers `docker system dial-stdio` with
/// `podman system dial-stdio` (what podman-docker's `docker` does on a remote running Podman;
/// `--url` because the test's service is not on Podman's default socket) and refuses anything
/// else.
struct SshServer {
    port: u16,
    dir: tempfile::TempDir,
    _sshd: Daemon,
}

impl SshServer {
    async fn start() -> SshServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run(
            d,
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", "host_key"],
        );
        run(
            d,
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", "id"],
        );
        let dial = d.join("dial-stdio");
        std::fs::write(
            &dial,
            format!(
                "#!/bin/sh\n\
                 [ \"$SSH_ORIGINAL_COMMAND\" = 'docker system dial-stdio' ] || \
                 {{ echo \"not a dial-stdio: $SSH_ORIGINAL_COMMAND\" >&2; exit 1; }}\n\
                 exec podman --url unix://{} system dial-stdio\n",
                local_socket()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dial, std::fs::Permissions::from_mode(0o755)).unwrap();
        let public = std::fs::read_to_string(d.join("id.pub")).unwrap();
        std::fs::write(
            d.join("authorized_keys"),
            format!("command=\"{}\",restrict {public}", dial.display()),
        )
        .unwrap();
        let port = free_port();
        let host_public = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_public}"),
        )
        .unwrap();
        let user = whoami();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowUsers {user}\n",
                hk = d.join("host_key").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        // sshd wants its privilege separation folder (Debian's package makes it at boot).
        let _ = std::fs::create_dir_all("/run/sshd");
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd is needed (cargo xtask setup installs openssh-server)");
        let mut daemon = Daemon(
            Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        listening(port, &mut daemon).await;
        SshServer {
            port,
            dir,
            _sshd: daemon,
        }
    }

    fn config(&self, key: &str) -> SandboxConfig {
        let d = self.dir.path();
        SandboxConfig {
            socket: Some(format!("ssh://{}@127.0.0.1:{}", whoami(), self.port)),
            ssh_command: Some(format!(
                "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} \
                 -o StrictHostKeyChecking=yes -o ControlPath={}/mux-%C -o ControlPersist=1",
                d.join(key).display(),
                d.join("known_hosts").display(),
                d.display()
            )),
            ..SandboxConfig::with_limits(small_limits())
        }
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn ssh_runs_lists_and_cleans() {
    let server = SshServer::start().await;
    runs_lists_and_cleans(server.config("id")).await;
}

#[tokio::test]
async fn ssh_refuses_an_unknown_key_clearly() {
    let server = SshServer::start().await;
    let d = server.dir.path();
    run(
        d,
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", "other"],
    );
    let e = Sandbox::connect(server.config("other")).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("ssh said") && text.contains("Permission denied"),
        "ssh's own reason is reported: {text}"
    );
}
