//! Where the engine is and how to reach it: a unix socket, plain TCP, TCP with TLS client
//! certificates (Docker's `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH` conventions), or ssh (`ssh` run
//! as `ssh HOST docker system dial-stdio`, the Docker CLI's own transport).
//!
//! Unix sockets and plain TCP use bollard's own clients. TLS and ssh go through bollard's custom
//! transport: HTTP/1.1 over the streams [`Endpoint::connect`] opens, kept alive and reused (a
//! pool of idle connections per endpoint), ssh's multiplexed over one master connection, so a
//! request costs neither a TLS handshake nor an ssh login, and over ssh not even a new channel
//! when an idle connection is there. [`Endpoint::request`] is also how `raw.rs` makes the one
//! request bollard's typed API cannot.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::Docker;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{CLIENT_TIMEOUT, Error, Result, SandboxConfig};

/// A byte stream to the engine's API.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach the engine.
#[derive(Clone)]
pub(crate) enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// `host:port`, plain HTTP.
    Tcp(String),
    /// `host:port` over TLS: the engine's certificate checked against `ca.pem`, ours from
    /// `cert.pem` and `key.pem`.
    Tls {
        addr: String,
        server: ServerName<'static>,
        config: Arc<ClientConfig>,
        certs: PathBuf,
        pool: Arc<Pool>,
    },
    /// `ssh` and its arguments up to (not including) `docker system dial-stdio`.
    Ssh { argv: Vec<String>, pool: Arc<Pool> },
}

/// The body of bollard's requests (its own alias is private).
pub(crate) trait HasBody {
    type Body;
}
impl<B> HasBody for Request<B> {
    type Body = B;
}
pub(crate) type Body = <bollard::BollardRequest as HasBody>::Body;
type Sender = hyper::client::conn::http1::SendRequest<Body>;

/// Idle keep-alive connections (at most [`POOL_MAX`]); a connection goes back in as soon as its
/// response has started, and is taken again only once it is ready for another request.
#[derive(Default)]
pub(crate) struct Pool(Mutex<Vec<Sender>>);

const POOL_MAX: usize = 16;

impl Pool {
    fn take_ready(&self) -> Option<Sender> {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|s| !s.is_closed());
        let i = p.iter().position(|s| s.is_ready())?;
        Some(p.swap_remove(i))
    }

    fn put(&self, sender: Sender) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < POOL_MAX {
            p.push(sender);
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{p}"),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Tls { addr, certs, .. } => {
                write!(f, "tcp://{addr} (TLS, certificates in {})", certs.display())
            }
            Endpoint::Ssh { argv, .. } => write!(f, "{}", argv.join(" ")),
        }
    }
}

/// Whether `DOCKER_TLS_VERIFY` asks for TLS (set, non-empty and not `0`).
fn tls_from_env() -> bool {
    std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0")
}

/// The client certificate folder: the config's, else `DOCKER_CERT_PATH`, else `~/.docker`.
fn cert_dir(config: &SandboxConfig) -> PathBuf {
    if let Some(d) = &config.tls_certs {
        return d.clone();
    }
    match std::env::var_os("DOCKER_CERT_PATH") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".docker"),
    }
}

impl Endpoint {
    /// Parse an engine address (`unix://PATH` or a bare path, `tcp://HOST:PORT`, `http://`,
    /// `https://`, `ssh://[USER@]HOST[:PORT]`). A `tcp://` address uses TLS when the config names
    /// a certificate folder or `DOCKER_TLS_VERIFY` is set; the certificates are read here, so a
    /// missing or bad one is an [`Error::Certificates`] naming it.
    pub(crate) fn parse(socket: &str, config: &SandboxConfig) -> Result<Endpoint> {
        let unsupported = || Error::Unreachable {
            socket: socket.to_string(),
            reason:
                "only unix://, tcp:// (with or without TLS), https:// and ssh:// engine addresses \
                     are supported"
                    .into(),
        };
        if let Some(path) = socket.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.to_string()));
        }
        if socket.starts_with('/') {
            return Ok(Endpoint::Unix(socket.to_string()));
        }
        if let Some(rest) = socket.strip_prefix("ssh://") {
            return ssh_argv(rest, config).map(|argv| Endpoint::Ssh {
                argv,
                pool: Arc::default(),
            });
        }
        let (addr, tls) = if let Some(a) = socket.strip_prefix("tcp://") {
            (a, config.tls_certs.is_some() || tls_from_env())
        } else if let Some(a) = socket.strip_prefix("http://") {
            (a, false)
        } else if let Some(a) = socket.strip_prefix("https://") {
            (a, true)
        } else {
            return Err(unsupported());
        };
        let addr = addr.trim_end_matches('/').to_string();
        if addr.is_empty() {
            return Err(unsupported());
        }
        if !tls {
            return Ok(Endpoint::Tcp(addr));
        }
        let host = host_of(&addr);
        let server = ServerName::try_from(host.to_string()).map_err(|e| Error::Unreachable {
            socket: socket.to_string(),
            reason: format!("`{host}` is not a host name for TLS: {e}"),
        })?;
        let certs = cert_dir(config);
        Ok(Endpoint::Tls {
            config: tls_config(&certs)?,
            addr,
            server,
            certs,
            pool: Arc::default(),
        })
    }

    /// A bollard client for this endpoint.
    pub(crate) fn docker(&self) -> Result<Docker> {
        let made = match self {
            Endpoint::Unix(path) => {
                Docker::connect_with_unix(path, CLIENT_TIMEOUT, bollard::API_DEFAULT_VERSION)
            }
            Endpoint::Tcp(addr) => Docker::connect_with_http(
                &format!("http://{addr}"),
                CLIENT_TIMEOUT,
                bollard::API_DEFAULT_VERSION,
            ),
            Endpoint::Tls { .. } | Endpoint::Ssh { .. } => {
                let endpoint = Arc::new(self.clone());
                Docker::connect_with_custom_transport(
                    move |req: bollard::BollardRequest| {
                        let endpoint = endpoint.clone();
                        async move {
                            endpoint.request(req).await.map_err(|reason| {
                                bollard::errors::Error::IOError {
                                    err: io::Error::other(reason),
                                }
                            })
                        }
                    },
                    Some("http://engine"),
                    CLIENT_TIMEOUT,
                    bollard::API_DEFAULT_VERSION,
                )
            }
        };
        made.map_err(|e| Error::Unreachable {
            socket: format!("{self:?}"),
            reason: e.to_string(),
        })
    }

    /// A fresh stream to the engine's API, and for ssh what `ssh` says on stderr.
    async fn connect(&self) -> std::result::Result<(Box<dyn Io>, Option<SshStderr>), String> {
        match self {
            Endpoint::Unix(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(|s| (Box::new(s) as Box<dyn Io>, None))
                .map_err(|e| format!("connecting to {path}: {e}")),
            Endpoint::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map(|s| (Box::new(s) as Box<dyn Io>, None))
                .map_err(|e| format!("connecting to {addr}: {e}")),
            Endpoint::Tls {
                addr,
                server,
                config,
                certs,
                ..
            } => {
                let tcp = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| format!("connecting to {addr}: {e}"))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(server.clone(), tcp)
                    .await
                    .map_err(|e| {
                        format!(
                            "TLS handshake with {addr}: {e} (the engine's certificate must be signed by \
                             the CA in {} and name {})",
                            certs.join("ca.pem").display(),
                            server.to_str()
                        )
                    })?;
                Ok((Box::new(tls), None))
            }
            Endpoint::Ssh { argv, .. } => {
                let mut child = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .args(["docker", "system", "dial-stdio"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("running `{}`: {e}", argv[0]))?;
                let (Some(stdin), Some(stdout), Some(stderr)) =
                    (child.stdin.take(), child.stdout.take(), child.stderr.take())
                else {
                    return Err("ssh's standard streams are missing".into());
                };
                let stderr = SshStderr::collect(stderr);
                Ok((
                    Box::new(SshIo {
                        io: tokio::io::join(stdout, stdin),
                        _child: child,
                    }),
                    Some(stderr),
                ))
            }
        }
    }

    /// The same endpoint with a pool of its own: for a client on another runtime (the drop
    /// guard's), which must not wait on connections driven by a runtime it may be blocking.
    pub(crate) fn unpooled(&self) -> Endpoint {
        let mut e = self.clone();
        if let Endpoint::Tls { pool, .. } | Endpoint::Ssh { pool, .. } = &mut e {
            *pool = Arc::default();
        }
        e
    }

    fn pool(&self) -> Option<&Pool> {
        match self {
            Endpoint::Tls { pool, .. } | Endpoint::Ssh { pool, .. } => Some(pool),
            _ => None,
        }
    }

    /// Send one request, on an idle pooled connection if one is ready, else on a new one
    /// (upgrades, e.g. an exec's attached stream, work). A pooled connection the engine closed
    /// meanwhile is replaced by a new one if the request had not gone out on it. The error says
    /// what failed, with ssh's own words if it has any.
    pub(crate) async fn request(
        &self,
        req: bollard::BollardRequest,
    ) -> std::result::Result<Response<Incoming>, String> {
        let (mut parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        parts.uri = target.parse().map_err(|e| format!("{target}: {e}"))?;
        parts.headers.insert(
            hyper::header::HOST,
            hyper::header::HeaderValue::from_static("engine"),
        );
        let mut req = Request::from_parts(parts, body);
        if let Some(mut sender) = self.pool().and_then(Pool::take_ready) {
            match sender.try_send_request(req).await {
                Ok(r) => {
                    self.give_back(sender);
                    return Ok(r);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(format!("{self:?}: {}", chain(e.error()))),
                },
            }
        }
        let (io, stderr) = self.connect().await?;
        let sent = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.with_upgrades().await {
                    tracing::debug!("engine connection: {e}");
                }
            });
            let r = sender.send_request(req).await?;
            Ok::<_, hyper::Error>((sender, r))
        }
        .await;
        match sent {
            Ok((sender, r)) => {
                self.give_back(sender);
                Ok(r)
            }
            Err(e) => {
                let mut reason = format!("{self:?}: {}", chain(&e));
                if let Some(said) = stderr {
                    let said = said.text().await;
                    if !said.is_empty() {
                        reason.push_str(&format!("; ssh said: {said}"));
                    }
                }
                Err(reason)
            }
        }
    }

    fn give_back(&self, sender: Sender) {
        if let Some(pool) = self.pool() {
            pool.put(sender);
        }
    }
}

/// An error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// The host of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    }
}

/// Read `DIR/ca.pem`, `cert.pem` and `key.pem` into a client config that trusts only that CA.
fn tls_config(dir: &Path) -> Result<Arc<ClientConfig>> {
    let read = |name: &str| -> Result<(PathBuf, Vec<u8>)> {
        let path = dir.join(name);
        std::fs::read(&path)
            .map(|b| (path.clone(), b))
            .map_err(|e| Error::Certificates(format!("cannot read {}: {e}", path.display())))
    };
    let certs_in = |(path, pem): &(PathBuf, Vec<u8>)| -> Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Certificates(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Certificates(format!(
                "{}: no PEM certificate in it",
                path.display()
            )));
        }
        Ok(certs)
    };
    let ca = read("ca.pem")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_in(&ca)? {
        roots
            .add(c)
            .map_err(|e| Error::Certificates(format!("{}: {e}", ca.0.display())))?;
    }
    let chain = certs_in(&read("cert.pem")?)?;
    let (key_path, key) = read("key.pem")?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| Error::Certificates(format!("{}: {e}", key_path.display())))?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Certificates(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                Error::Certificates(format!(
                    "{} and {}: {e}",
                    dir.join("cert.pem").display(),
                    key_path.display()
                ))
            })?;
    // Every request is a connection of its own, so resumption would save a handshake each; but an
    // OpenSSL server that checks client certificates and sets no session id context (socat, the
    // tests' proxy) answers a resumption attempt with an internal-error alert. A full handshake
    // is a millisecond.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The folder for ssh's multiplexing sockets: `$TMPDIR/keel-ssh-UID`, private; `None` (no
/// multiplexing) if it cannot be made so.
fn control_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let dir = std::env::temp_dir().join(format!("keel-ssh-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o077 == 0).then_some(dir)
}

/// `ssh` and its arguments for `ssh://[USER@]HOST[:PORT]`: the config's or `KEEL_SSH_COMMAND`'s
/// command line first (so its options win), then batch mode and multiplexing.
fn ssh_argv(rest: &str, config: &SandboxConfig) -> Result<Vec<String>> {
    let bad = |reason: &str| Error::Unreachable {
        socket: format!("ssh://{rest}"),
        reason: reason.to_string(),
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.starts_with('-') {
        return Err(bad("no host in the address (ssh://[USER@]HOST[:PORT])"));
    }
    if port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad("the port is not a number"));
    }
    if user.is_some_and(|u| u.is_empty() || u.starts_with('-')) {
        return Err(bad("the user name is empty or starts with `-`"));
    }
    let command = config
        .ssh_command
        .clone()
        .or_else(|| std::env::var("KEEL_SSH_COMMAND").ok())
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "ssh".into());
    let mut argv: Vec<String> = command.split_whitespace().map(String::from).collect();
    argv.extend(["-T", "-o", "BatchMode=yes"].map(String::from));
    if let Some(dir) = control_dir() {
        argv.extend([
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}/%C", dir.display()),
            "-o".into(),
            "ControlPersist=60".into(),
        ]);
    }
    if let Some(p) = port {
        argv.extend(["-p".into(), p.to_string()]);
    }
    if let Some(u) = user {
        argv.extend(["-l".into(), u.to_string()]);
    }
    argv.extend(["--".into(), host.to_string()]);
    Ok(argv)
}

/// What `ssh` writes on stderr, collected as it comes (the last 4 KiB).
struct SshStderr {
    text: Arc<Mutex<Vec<u8>>>,
    done: tokio::task::JoinHandle<()>,
}

impl SshStderr {
    fn collect(mut stderr: tokio::process::ChildStderr) -> SshStderr {
        use tokio::io::AsyncReadExt;
        let text = Arc::new(Mutex::new(Vec::new()));
        let into = text.clone();
        let done = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut t = into.lock().unwrap_or_else(|p| p.into_inner());
                t.extend_from_slice(&buf[..n]);
                let excess = t.len().saturating_sub(4096);
                t.drain(..excess);
            }
        });
        SshStderr { text, done }
    }

    /// The text so far, after waiting a little for ssh to finish saying it.
    async fn text(self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.done).await;
        let t = self.text.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&t).trim().replace('\n', " / ")
    }
}

/// `ssh`'s stdout and stdin as one stream; the process is killed when it is dropped.
struct SshIo {
    io: tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
    _child: tokio::process::Child,
}

impl AsyncRead for SshIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_addresses_become_ssh_arguments() {
        let config = SandboxConfig {
            ssh_command: Some("ssh -i /k".into()),
            ..Default::default()
        };
        let argv = ssh_argv("keel@build.example:2222", &config).unwrap();
        assert_eq!(&argv[..3], ["ssh", "-i", "/k"]);
        let tail = argv[argv.len() - 6..].join(" ");
        assert_eq!(tail, "-p 2222 -l keel -- build.example");
        let argv = ssh_argv("[::1]", &config).unwrap();
        assert_eq!(argv.last().unwrap(), "::1");
        assert!(ssh_argv("-oProxyCommand=x", &config).is_err());
        assert!(ssh_argv("host:2x", &config).is_err());
    }

    #[test]
    fn a_missing_certificate_is_named() {
        let dir = std::env::temp_dir().join(format!("keel-no-certs-{}", std::process::id()));
        let config = SandboxConfig {
            tls_certs: Some(dir.clone()),
            ..Default::default()
        };
        let e = Endpoint::parse("tcp://127.0.0.1:2376", &config).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&dir.join("ca.pem").display().to_string()),
            "{text}"
        );
        assert!(matches!(e, Error::Certificates(_)));
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("example.com:2376"), "example.com");
        assert_eq!(host_of("[::1]:2376"), "::1");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
    }
}
