//! Keel's container sandbox: run an agent's commands in a capped container with no network.
//!
//! A [`Sandbox`] is a connection to a Docker-API engine (Docker, or podman's compatible service; the
//! address comes from `DOCKER_HOST` or the config: a unix socket, `tcp://` with or without TLS
//! client certificates, or `ssh://`, see `engine.rs`) and the [`Limits`] every container gets. Each
//! [`Container`] starts from a [`WorkspaceSnapshot`] copied into `/work` as a tar and runs commands
//! with [`Container::exec`] (`sh -c`, in `/work`, with a wall-clock timeout and an output cap).
//!
//! Containment, per container:
//! - no network (`network_mode: none`), all capabilities dropped, `no-new-privileges`, user
//!   `nobody` (65534);
//! - a read-only root filesystem; `/work` and `/tmp` are size-capped tmpfs mounts (a full disk is
//!   `ENOSPC` in the container, never the host's disk);
//! - memory (no swap), CPU and pids caps;
//! - a command past its timeout is killed with its container (later calls answer
//!   [`Error::Gone`]); a command whose output passes the cap is killed and its output truncated;
//! - the container is removed on every path out: [`Container::remove`], or the drop guard (error,
//!   timeout, cancellation, panic), and, should the process die outright, the container's own
//!   lifetime (its init exits after [`Limits::lifetime`] and the engine auto-removes it).
//!   Containers carry the label `keel.sandbox=1`; [`Sandbox::cleanup_leftovers`] removes old ones,
//!   and [`Sandbox::cleanup_orphans`] those whose process is gone (their owner label says which).
//!
//! Files move in and out with [`Container::write_file`] and [`Container::read_file`]. What an
//! action means (locating an edit's `old_text`, formatting an observation) is the agent's
//! (keel-agent, which builds on this crate): the agent's tools are written once, over any workspace.

mod engine;
pub mod image;
mod raw;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use futures::StreamExt;
use keel_trajectory::Observation;

pub use image::{BASE_IMAGE, PYTHON_IMAGE, ensure_base_image, import_rootfs};
pub use snapshot::WorkspaceSnapshot;

/// The label every sandbox container carries (`keel.sandbox=1`).
pub const LABEL: &str = "keel.sandbox";
/// Unix seconds at creation, as a label (the engine's own `Created` is kept too).
const LABEL_CREATED: &str = "keel.sandbox.created";
/// Which [`Sandbox`] (one per [`Sandbox::connect`]) made a container, as a label.
pub const LABEL_SESSION: &str = "keel.sandbox.session";
/// Which process made a container: `SPACE/PID/START` (the machine's boot id and the process's pid
/// namespace, the process id, its start time in clock ticks since boot), so
/// [`Sandbox::cleanup_orphans`] can tell a container whose process is gone from one still in use.
pub const LABEL_OWNER: &str = "keel.sandbox.owner";
/// The workspace inside the container.
pub const WORKDIR: &str = "/work";
/// `PATH` in the container: the standard one, so an image's tools are found wherever it keeps
/// them (busybox's are in `/bin`, Debian's in `/usr/bin`).
pub const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The user commands run as (`nobody`).
pub const USER: &str = "65534:65534";
/// [`Container::reset`] refuses a container with more processes than this left after it (init,
/// its own shell and pipeline, and zombies).
pub const RESET_MAX_PROCESSES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no container engine socket: DOCKER_HOST is not set and the config names none. Run `cargo xtask setup` \
         (it starts podman's API service on .keel/podman.sock), then `eval \"$(cargo xtask env)\"`"
    )]
    NoSocket,
    #[error("the container engine at {socket} does not answer ({reason}). {}", advice(.socket))]
    Unreachable { socket: String, reason: String },
    #[error(
        "TLS client certificates: {0}. DOCKER_CERT_PATH (or the config's certificate folder) must name a \
         folder with ca.pem, cert.pem and key.pem (docs/sandbox.md, \"Remote engines\")"
    )]
    Certificates(String),
    #[error("container engine: {what}: {source}")]
    Engine {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("sandbox image: {0}")]
    Image(String),
    #[error("workspace snapshot: {0}")]
    Snapshot(String),
    #[error("the workspace patch does not apply: {0}")]
    Patch(String),
    #[error("the container cannot be reused: {0}")]
    Reset(String),
    #[error("`{0}` is outside the workspace (/work)")]
    OutsideWorkspace(String),
    #[error("the container is gone: {0}")]
    Gone(String),
    #[error("{0}: not found in the container")]
    NotFound(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about an engine that does not answer: start the local one, or check the remote one.
fn advice(socket: &str) -> &'static str {
    if socket.starts_with("unix://") || socket.starts_with('/') {
        "Run `cargo xtask setup` (it starts podman's API service), then `eval \"$(cargo xtask env)\"`"
    } else {
        "Check that the engine runs there and the address, certificates or ssh access are right \
         (docs/sandbox.md, \"Remote engines\")"
    }
}

fn engine(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Error {
    let what = what.into();
    move |source| Error::Engine { what, source }
}

/// The caps every container of a [`Sandbox`] gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Memory in bytes (swap is not allowed beyond it). tmpfs contents count towards it.
    pub memory: i64,
    /// CPU in billionths of a CPU (`1_000_000_000` = one CPU).
    pub nano_cpus: i64,
    /// Processes and threads in the container.
    pub pids: i64,
    /// Wall-clock limit of one [`Container::exec`].
    pub exec_timeout: Duration,
    /// Bytes kept of a command's output (stdout and stderr together); past it the command is
    /// killed and the result marked truncated.
    pub max_output: usize,
    /// Size of the `/work` tmpfs in bytes.
    pub work_size: u64,
    /// Size of the `/tmp` tmpfs in bytes.
    pub tmp_size: u64,
    /// How long a container may live at all: its init exits then and the engine removes it, so
    /// even a killed host process leaves nothing behind for long.
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 1 << 30,
            nano_cpus: 1_000_000_000,
            pids: 256,
            exec_timeout: Duration::from_secs(120),
            max_output: 1 << 20,
            work_size: 512 << 20,
            tmp_size: 64 << 20,
            lifetime: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SandboxConfig {
    /// `unix:///path/to.sock` (or a bare path), `tcp://host:port` (TLS when `tls_certs` is set or
    /// `DOCKER_TLS_VERIFY` is), `https://host:port`, or `ssh://[user@]host[:port]`; `None`:
    /// `DOCKER_HOST`.
    pub socket: Option<String>,
    /// For `tcp://`: use TLS with the client certificates in this folder (`ca.pem`, `cert.pem`,
    /// `key.pem`). `None`: TLS if `DOCKER_TLS_VERIFY` is set, from `DOCKER_CERT_PATH` (else
    /// `~/.docker`).
    pub tls_certs: Option<std::path::PathBuf>,
    /// For `ssh://`: the ssh command line to use (split at whitespace, e.g. `ssh -i KEY`). `None`:
    /// `KEEL_SSH_COMMAND`, else `ssh`.
    pub ssh_command: Option<String>,
    /// `None`: [`BASE_IMAGE`], imported on connect if missing. Any other image (e.g.
    /// [`PYTHON_IMAGE`]) must be on the engine already; [`Sandbox::connect`] says how to make it.
    pub image: Option<String>,
    pub limits: Limits,
}

impl SandboxConfig {
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }
}

/// The engine's socket: the config's, else `DOCKER_HOST`.
pub fn socket_from_env(config: &SandboxConfig) -> Result<String> {
    match &config.socket {
        Some(s) if !s.trim().is_empty() => Ok(s.clone()),
        _ => match std::env::var("DOCKER_HOST") {
            Ok(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(Error::NoSocket),
        },
    }
}

/// A connection to the engine; cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    docker: Docker,
    socket: String,
    endpoint: engine::Endpoint,
    image: String,
    limits: Limits,
    session: String,
}

/// A value unique to this connection: process id, time and a counter.
fn new_session() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("socket", &self.socket)
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

/// Request timeout of the engine client, in seconds. Our own timeouts govern commands.
pub(crate) const CLIENT_TIMEOUT: u64 = 24 * 3600;

impl Sandbox {
    /// Connect and check the engine answers and has the image; import the base image if it is the
    /// one asked for and it is missing (any other missing image is an [`Error::Image`] that says
    /// how to build it: `cargo xtask setup` for [`PYTHON_IMAGE`]).
    pub async fn connect(config: SandboxConfig) -> Result<Sandbox> {
        let socket = socket_from_env(&config)?;
        let endpoint = engine::Endpoint::parse(&socket, &config)?;
        let docker = endpoint.docker()?;
        let unreachable = |reason: String| Error::Unreachable {
            socket: socket.clone(),
            reason,
        };
        match tokio::time::timeout(Duration::from_secs(15), docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("no answer to /_ping within 15 s".into())),
        }
        let docker =
            match tokio::time::timeout(Duration::from_secs(15), docker.clone().negotiate_version())
                .await
            {
                Ok(Ok(d)) => d,
                _ => docker,
            };
        let image = config
            .image
            .clone()
            .unwrap_or_else(|| BASE_IMAGE.to_string());
        image::require_image(&docker, &image).await?;
        Ok(Sandbox {
            session: new_session(),
            docker,
            socket,
            endpoint,
            image,
            limits: config.limits,
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    fn create_body(&self) -> ContainerCreateBody {
        let l = &self.limits;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let labels = HashMap::from([
            (LABEL.to_string(), "1".to_string()),
            (LABEL_CREATED.to_string(), now.to_string()),
            (LABEL_SESSION.to_string(), self.session.clone()),
            (LABEL_OWNER.to_string(), owner(std::process::id())),
        ]);
        let tmpfs = HashMap::from([
            (
                WORKDIR.to_string(),
                format!("rw,exec,nosuid,nodev,size={},mode=1777", l.work_size),
            ),
            (
                "/tmp".to_string(),
                format!("rw,exec,nosuid,nodev,size={},mode=1777", l.tmp_size),
            ),
        ]);
        ContainerCreateBody {
            image: Some(self.image.clone()),
            // The container's init: sleep out the lifetime, then exit (and be auto-removed).
            cmd: Some(vec![
                "/bin/sleep".into(),
                l.lifetime.as_secs().max(1).to_string(),
            ]),
            user: Some(USER.into()),
            working_dir: Some(WORKDIR.into()),
            env: Some(vec![
                format!("PATH={CONTAINER_PATH}"),
                format!("HOME={WORKDIR}"),
                "LANG=C.UTF-8".into(),
                // Python's bytecode cache is keyed by the source's mtime in whole seconds and its
                // size: an edit of the same length made in the same second as an earlier run (a
                // `<` made `>`) would run the stale bytecode, and a right fix would be judged wrong.
                "PYTHONDONTWRITEBYTECODE=1".into(),
            ]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                readonly_rootfs: Some(true),
                tmpfs: Some(tmpfs),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(l.memory),
                memory_swap: Some(l.memory),
                nano_cpus: Some(l.nano_cpus),
                pids_limit: Some(l.pids),
                // No ulimits here: podman's compatible API then sets nproc to 1048576, which runc
                // cannot raise to. Its defaults (containers.conf, `cargo xtask setup`) apply.
                auto_remove: Some(true),
                init: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Create and start a container with `snapshot` in `/work` (and its patch applied).
    pub async fn start(&self, snapshot: &WorkspaceSnapshot) -> Result<Container> {
        let tar = snapshot.to_tar()?;
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, self.create_body())
            .await
            .map_err(engine(format!("creating a container from {}", self.image)))?;
        // From here on the guard removes the container whatever happens.
        let container = Container {
            docker: self.docker.clone(),
            endpoint: self.endpoint.clone(),
            id: created.id,
            limits: self.limits.clone(),
            gone: Mutex::new(None),
        };
        self.docker
            .start_container(
                &container.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(engine("starting the container"))?;
        container.populate(tar, snapshot.patch()).await?;
        Ok(container)
    }

    /// Remove every container labelled `keel.sandbox=1` created more than `older_than` ago,
    /// whichever process made it. Returns how many it removed.
    pub async fn cleanup_leftovers(&self, older_than: Duration) -> Result<usize> {
        self.cleanup_labelled(&format!("{LABEL}=1"), older_than)
            .await
    }

    /// Remove this sandbox's own containers (its session label) created more than `older_than`
    /// ago, leaving other processes' alone.
    pub async fn cleanup_own_leftovers(&self, older_than: Duration) -> Result<usize> {
        self.cleanup_labelled(&format!("{LABEL_SESSION}={}", self.session), older_than)
            .await
    }

    async fn cleanup_labelled(&self, label: &str, older_than: Duration) -> Result<usize> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut removed = 0;
        for c in raw::list_with_label(&self.endpoint, label).await? {
            if now - c.created < older_than.as_secs() as i64 {
                continue;
            }
            force_remove(&self.docker, &c.id).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Remove the containers whose process is gone: labelled `keel.sandbox=1` with an owner
    /// ([`LABEL_OWNER`]) on this machine and in this pid namespace that no longer runs. They are what a process
    /// killed outright, or one whose engine stopped under it (its drop guard could not reach the
    /// engine), left behind; they would otherwise live out their [`Limits::lifetime`]. Containers
    /// of live processes, of other machines and without an owner label are left alone. Returns
    /// how many it removed.
    pub async fn cleanup_orphans(&self) -> Result<usize> {
        let Some(space) = pid_space() else {
            return Ok(0);
        };
        let mut removed = 0;
        for c in raw::list_with_label(&self.endpoint, &format!("{LABEL}=1")).await? {
            let Some(o) = c.labels.get(LABEL_OWNER) else {
                continue;
            };
            let mut parts = o.split('/');
            let (Some(b), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if b != space
                || start == "0"
                || process_start(pid).is_some_and(|s| s.to_string() == start)
            {
                continue;
            }
            force_remove(&self.docker, &c.id).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// This sandbox's session label value (`keel.sandbox.session`): one per [`Sandbox::connect`],
    /// shared by its clones.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Ids of this sandbox's containers (its session), running or not.
    pub async fn own_containers(&self) -> Result<Vec<String>> {
        let label = format!("{LABEL_SESSION}={}", self.session);
        Ok(raw::list_with_label(&self.endpoint, &label)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect())
    }

    /// Ids of all containers labelled `keel.sandbox=1` (any process's), running or not.
    pub async fn labelled_containers(&self) -> Result<Vec<String>> {
        Ok(raw::list_with_label(&self.endpoint, &format!("{LABEL}=1"))
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect())
    }
}

/// This machine's boot and this process's pid namespace (`BOOT_ID:pid:[INODE]`): where a pid
/// means one process. A process in another namespace (a container sharing the engine) or on
/// another machine has another, and its containers (or its scheduler runs) are never judged by our pids.
pub fn pid_space() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}:{}", boot.trim(), ns.display())).filter(|_| !boot.trim().is_empty())
}

/// When process `pid` started (clock ticks since boot, `/proc/PID/stat`), `None` when it is not
/// running (no such process, or a zombie).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, which may hold anything): the state, then field 4...
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(rest.first(), Some(&"Z") | Some(&"X") | None) {
        return None;
    }
    rest.get(19)?.parse().ok()
}

/// The [`LABEL_OWNER`] value of process `pid`.
fn owner(pid: u32) -> String {
    format!(
        "{}/{pid}/{}",
        pid_space().unwrap_or_default(),
        process_start(pid).unwrap_or(0)
    )
}

/// Kill and remove; a container already gone (404) or being removed (409) is fine.
async fn force_remove(docker: &Docker, id: &str) -> Result<()> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => Ok(()),
        Err(e) => Err(Error::Engine {
            what: format!("removing container {id}"),
            source: e,
        }),
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecResult {
    /// `None` when it timed out (it was killed with its container).
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The output passed [`Limits::max_output`]: what is here is its start, and the command was
    /// killed.
    pub truncated: bool,
    pub timed_out: bool,
    pub duration: Duration,
}

impl ExecResult {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The observation the agent sees for a `run` step: stdout, then stderr, with a note when the
    /// command timed out.
    pub fn to_observation(&self) -> Observation {
        let mut output = self.stdout.clone();
        if !self.stderr.is_empty() {
            if !output.is_empty() && !output.ends_with('\n') {
                output.push('\n');
            }
            output.push_str(&self.stderr);
        }
        if self.timed_out {
            if !output.is_empty() && !output.ends_with('\n') {
                output.push('\n');
            }
            output.push_str(&format!(
                "[timed out after {:.1} s; the command was killed]",
                self.duration.as_secs_f64()
            ));
        }
        Observation {
            output,
            exit_code: self.exit_code,
            truncated: self.truncated,
            duration_ms: Some(self.duration.as_millis() as u64),
        }
    }
}

impl From<&ExecResult> for Observation {
    fn from(r: &ExecResult) -> Self {
        r.to_observation()
    }
}

/// A running container. Removed by [`Container::remove`] or, failing that, when dropped.
pub struct Container {
    docker: Docker,
    endpoint: engine::Endpoint,
    id: String,
    limits: Limits,
    /// `Some(reason)` once removed.
    gone: Mutex<Option<String>>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn check(&self) -> Result<()> {
        match &*self.gone.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(reason) => Err(Error::Gone(reason.clone())),
            None => Ok(()),
        }
    }

    fn mark_gone(&self, reason: &str) -> bool {
        let mut g = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        let first = g.is_none();
        if first {
            *g = Some(reason.to_string());
        }
        first
    }

    /// Whether the container was removed (explicitly, or after a timeout).
    pub fn is_gone(&self) -> bool {
        self.check().is_err()
    }

    /// Kill and remove the container. Idempotent.
    pub async fn remove(&self) -> Result<()> {
        self.mark_gone("it was removed");
        force_remove(&self.docker, &self.id).await
    }

    /// Run `sh -c command` in `/work` under [`Limits::exec_timeout`].
    pub async fn exec(&self, command: &str) -> Result<ExecResult> {
        self.exec_timeout(command, self.limits.exec_timeout).await
    }

    /// [`Container::exec`] with its own timeout. On timeout the container is killed and removed
    /// (a runaway command may have left anything behind); later calls answer [`Error::Gone`].
    pub async fn exec_timeout(&self, command: &str, timeout: Duration) -> Result<ExecResult> {
        self.check()?;
        let start = Instant::now();
        let options = CreateExecOptions::<String> {
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), command.into()]),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            working_dir: Some(WORKDIR.into()),
            user: Some(USER.into()),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(&self.id, options)
            .await
            .map_err(engine("creating an exec"))?;
        let mut out = Capture::new(self.limits.max_output);
        let run = async {
            let start_options = StartExecOptions {
                detach: false,
                ..Default::default()
            };
            let started = self
                .docker
                .start_exec(&exec.id, Some(start_options))
                .await
                .map_err(engine("starting an exec"))?;
            let StartExecResults::Attached { mut output, .. } = started else {
                return Err(Error::Gone("the engine detached an attached exec".into()));
            };
            let mut killed = false;
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        out.push(false, &message)
                    }
                    Ok(LogOutput::StdErr { message }) => out.push(true, &message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => {
                        return Err(Error::Engine {
                            what: "reading a command's output".into(),
                            source: e,
                        });
                    }
                }
                if out.truncated && !killed {
                    killed = true;
                    self.kill_commands().await?;
                }
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r?,
            Err(_) => {
                self.mark_gone(&format!(
                    "a command ran past its {:.1} s timeout and the container was killed",
                    timeout.as_secs_f64()
                ));
                force_remove(&self.docker, &self.id).await?;
                let (stdout, stderr) = out.into_strings();
                return Ok(ExecResult {
                    exit_code: None,
                    stdout,
                    stderr,
                    truncated: false,
                    timed_out: true,
                    duration: start.elapsed(),
                });
            }
        }
        let exit_code = self.exit_code(&exec.id).await?;
        let truncated = out.truncated;
        let (stdout, stderr) = out.into_strings();
        Ok(ExecResult {
            exit_code,
            stdout,
            stderr,
            truncated,
            timed_out: false,
            duration: start.elapsed(),
        })
    }

    async fn exit_code(&self, exec_id: &str) -> Result<Option<i32>> {
        // The stream can end a moment before the engine records the exit.
        for _ in 0..50 {
            let info = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(engine("inspecting an exec"))?;
            if info.running != Some(true) {
                return Ok(info.exit_code.map(|c| c as i32));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    }

    /// Kill every process of the sandbox user but the container's init (`kill -9 -1` spares
    /// PID 1 and the caller).
    async fn kill_commands(&self) -> Result<()> {
        let options = CreateExecOptions::<String> {
            cmd: Some(vec!["/bin/kill".into(), "-9".into(), "-1".into()]),
            user: Some(USER.into()),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(&self.id, options)
            .await
            .map_err(engine("creating a kill exec"))?;
        self.docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(engine("killing a command"))?;
        Ok(())
    }

    /// Copies a workspace into `/work` and applies its patch.
    async fn populate(&self, tar: Vec<u8>, patch: Option<&str>) -> Result<()> {
        self.upload(tar).await?;
        if let Some(patch) = patch {
            self.upload(snapshot::files_tar(
                &[(".keel.patch".to_string(), patch.as_bytes().to_vec())].into(),
                None,
            )?)
            .await?;
            let r = self
                .exec("patch -p1 -i .keel.patch 2>&1; s=$?; rm -f .keel.patch; exit $s")
                .await?;
            if r.exit_code != Some(0) {
                return Err(Error::Patch(
                    format!("{}{}", r.stdout, r.stderr).trim().to_string(),
                ));
            }
        }
        Ok(())
    }

    /// Makes a used container fresh for another workspace: every process of the sandbox user is
    /// killed, `/work` and `/tmp` are emptied, and `snapshot` is copied in (much cheaper than a new
    /// container; the limits stay as they were).
    ///
    /// Fails — and the caller should [`Container::remove`] it and start a new one — when `/work`
    /// cannot be emptied or more than [`RESET_MAX_PROCESSES`] processes are left. The container's
    /// init does not reap, so a killed orphan (a command's background child) stays as a zombie
    /// that counts towards the pids cap until the container goes.
    pub async fn reset(&self, snapshot: &WorkspaceSnapshot) -> Result<()> {
        let tar = snapshot.to_tar()?;
        // One exec. `kill -9 -1` spares init and the caller (Linux never signals the caller with
        // -1); a process forked before the first kill returned gets the second. Then it prints
        // the entries left in /work and the processes (including its own few).
        let r = self
            .exec(
                "kill -9 -1; kill -9 -1; rm -rf /work/* /work/.[!.]* /work/..?* /tmp/* /tmp/.[!.]* 2>/dev/null; \
                 echo $(ls -A /work | wc -l) $(ls -d /proc/[0-9]* | wc -l)",
            )
            .await?;
        let counts: Vec<usize> = r.stdout.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        match counts[..] {
            [0, procs] if procs <= RESET_MAX_PROCESSES => {}
            [0, procs] => return Err(Error::Reset(format!("{procs} processes are left (killed orphans stay as zombies)"))),
            _ => return Err(Error::Reset(format!("could not empty /work: {}{}", r.stdout, r.stderr))),
        }
        self.populate(tar, snapshot.patch()).await
    }

    async fn upload(&self, tar: Vec<u8>) -> Result<()> {
        self.check()?;
        // Keep the tar's owners (`nobody`): the sandbox user must be able to change the files.
        let options = UploadToContainerOptions {
            path: WORKDIR.into(),
            copy_uidgid: Some("true".into()),
            ..Default::default()
        };
        self.docker
            .upload_to_container(&self.id, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(engine("copying files into the container"))
    }

    /// Write `content` to `path` (relative to `/work`, or absolute inside it), creating parents.
    pub async fn write_file(&self, path: &str, content: &[u8]) -> Result<()> {
        let rel = snapshot::relative_path(path)?;
        let tar = snapshot::files_tar(&[(rel, content.to_vec())].into(), None)?;
        self.upload(tar).await
    }

    /// The bytes of the file at `path` (relative to `/work`, or absolute inside it).
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        self.check()?;
        let rel = snapshot::relative_path(path)?;
        let options = DownloadFromContainerOptions {
            path: format!("{WORKDIR}/{rel}"),
        };
        let mut stream = self.docker.download_from_container(&self.id, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => tar.extend_from_slice(&b),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    return Err(Error::NotFound(rel));
                }
                Err(e) => {
                    return Err(Error::Engine {
                        what: format!("reading {rel} from the container"),
                        source: e,
                    });
                }
            }
        }
        let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
        let bad = |e: std::io::Error| Error::Snapshot(format!("reading the archive of {rel}: {e}"));
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if entry.header().entry_type().is_file() {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).map_err(bad)?;
                return Ok(data);
            }
        }
        Err(Error::NotFound(rel))
    }
}

impl Drop for Container {
    /// The guard: a container not removed yet is force-removed before the drop returns, on a
    /// thread of its own (so it works inside or outside a runtime, while a runtime shuts down, and
    /// while a panic unwinds).
    fn drop(&mut self) {
        if !self.mark_gone("it was dropped") {
            return;
        }
        let endpoint = self.endpoint.unpooled();
        let id = self.id.clone();
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let docker = endpoint.docker().map_err(|e| e.to_string())?;
                force_remove(&docker, &id).await.map_err(|e| e.to_string())
            })
        })
        .join();
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(container = %self.id, "could not remove a sandbox container: {e}")
            }
            Err(_) => tracing::warn!(container = %self.id, "the sandbox removal thread panicked"),
        }
    }
}

/// Output kept up to a cap (stdout and stderr together).
struct Capture {
    cap: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
        }
    }

    fn push(&mut self, err: bool, data: &[u8]) {
        let room = self
            .cap
            .saturating_sub(self.stdout.len() + self.stderr.len());
        if data.len() > room {
            self.truncated = true;
        }
        let keep = &data[..data.len().min(room)];
        if err {
            self.stderr.extend_from_slice(keep)
        } else {
            self.stdout.extend_from_slice(keep)
        }
    }

    fn into_strings(self) -> (String, String) {
        (
            String::from_utf8_lossy(&self.stdout).into_owned(),
            String::from_utf8_lossy(&self.stderr).into_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_stops_at_the_cap() {
        let mut c = Capture::new(10);
        c.push(false, b"123456");
        c.push(true, b"abc");
        assert!(!c.truncated);
        c.push(false, b"XYZ");
        assert!(c.truncated);
        let (o, e) = c.into_strings();
        assert_eq!((o.as_str(), e.as_str()), ("123456X", "abc"));
    }

    #[test]
    fn observations_carry_output_and_status() {
        let r = ExecResult {
            exit_code: Some(1),
            stdout: "out".into(),
            stderr: "err\n".into(),
            truncated: true,
            timed_out: false,
            duration: Duration::from_millis(1500),
        };
        let o = r.to_observation();
        assert_eq!(o.output, "out\nerr\n");
        assert_eq!(
            (o.exit_code, o.truncated, o.duration_ms),
            (Some(1), true, Some(1500))
        );
        let t = ExecResult {
            timed_out: true,
            exit_code: None,
            ..r
        };
        assert!(
            Observation::from(&t)
                .output
                .contains("[timed out after 1.5 s")
        );
    }

    #[test]
    fn missing_socket_is_a_clear_error() {
        let c = SandboxConfig {
            socket: Some("ftp://x".into()),
            ..Default::default()
        };
        let e = engine::Endpoint::parse(&socket_from_env(&c).unwrap(), &c).unwrap_err();
        assert!(e.to_string().contains("ssh://"), "{e}");
    }
}
