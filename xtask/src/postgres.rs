//! The PostgreSQL server the store's tests run against: Debian's `postgresql` package (installed
//! with apt when missing), one cluster for this machine listening on 127.0.0.1:[`PORT`] and a
//! socket in its data directory, a `keel` role with a random password, allowed to create the
//! databases each test makes for itself.
//!
//! initdb refuses to run as root, so as root the cluster belongs to the `postgres` user the package
//! creates and lives in its home (`/var/lib/postgresql/keel-test`; `.keel/` is private to its
//! owner); otherwise it is the user's own, in `.keel/pg`. [`start`] is idempotent and fast when the
//! server runs already. The tests find it through `KEEL_TEST_POSTGRES` (a URL), restart it through
//! `KEEL_TEST_POSTGRES_CTL` (a `pg_ctl` command line), and fail when `KEEL_REQUIRE_POSTGRES=1` (set
//! by `cargo xtask test`) and the server is not there, so CI cannot skip them silently.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::env;

/// An unusual port, so a system PostgreSQL on 5432 is left alone.
pub const PORT: u16 = 54329;

fn is_root() -> bool {
    crate::podman::is_root()
}

/// The newest `/usr/lib/postgresql/N/bin` with an initdb.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// Where the cluster lives: its data directory and the password of the `keel` role.
fn home() -> PathBuf {
    if is_root() { PathBuf::from("/var/lib/postgresql/keel-test") } else { env::state_dir().join("pg") }
}

fn data_dir() -> PathBuf {
    home().join("data")
}

fn password_file() -> PathBuf {
    home().join("keel-password")
}

/// `program args...` as the cluster's owner.
fn as_owner(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn pg_ctl(bin: &std::path::Path) -> String {
    let runuser = if is_root() { "runuser -u postgres -- " } else { "" };
    format!("{runuser}{} -D {} -w -t 60", bin.join("pg_ctl").display(), data_dir().display())
}

/// Install the package when missing, make the cluster once, start it, and make the role. Local
/// (socket) connections are trusted: the socket sits in the data directory, which only the
/// cluster's owner can enter.
pub fn setup() -> Result<()> {
    if bin_dir().is_none() {
        if Command::new("apt-get").arg("--version").stdout(Stdio::null()).status().is_err() {
            bail!("the store's tests need PostgreSQL, and apt-get is not here to install it");
        }
        eprintln!("xtask: installing postgresql (apt), for the store's PostgreSQL tests");
        crate::podman::apt_install(&["postgresql"])?;
    }
    let bin = bin_dir().context("postgresql is installed but no /usr/lib/postgresql/*/bin/initdb was found")?;
    if !data_dir().join("PG_VERSION").exists() {
        init(&bin)?;
    }
    start()?;
    role(&bin)
}

fn init(bin: &std::path::Path) -> Result<()> {
    eprintln!("xtask: creating the test PostgreSQL cluster in {}", data_dir().display());
    std::fs::create_dir_all(home())?;
    if is_root() {
        env::run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(home()))?;
    }
    std::fs::set_permissions(home(), std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    env::run(
        as_owner(bin.join("initdb"))
            .args(["--no-sync", "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "-D"])
            .arg(data_dir())
            .stdout(Stdio::null()),
    )?;
    let conf = format!(
        "\n# cargo xtask\nlisten_addresses = '127.0.0.1'\nport = {PORT}\nunix_socket_directories = '{}'\nmax_connections = 200\n",
        data_dir().display()
    );
    let mut f = std::fs::OpenOptions::new().append(true).open(data_dir().join("postgresql.conf"))?;
    std::io::Write::write_all(&mut f, conf.as_bytes())?;
    Ok(())
}

/// `psql` as the superuser over the socket.
fn psql(bin: &std::path::Path, sql: &str) -> Result<String> {
    let out = as_owner(bin.join("psql"))
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-U", "postgres", "-d", "postgres", "-p", &PORT.to_string(), "-h"])
        .arg(data_dir())
        .args(["-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The `keel` role (with a new random password, kept in a 0600 file) and its `keel_test` database.
fn role(bin: &std::path::Path) -> Result<()> {
    if psql(bin, "SELECT count(*) FROM pg_roles WHERE rolname = 'keel'")? == "1" && password_file().exists() {
        return Ok(());
    }
    let mut raw = [0u8; 18];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut raw)?;
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(password_file())
        .and_then(|mut f| std::io::Write::write_all(&mut f, password.as_bytes()))
        .context("writing the test role's password")?;
    psql(bin, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'keel') THEN CREATE ROLE keel LOGIN CREATEDB; END IF; END $$")?;
    psql(bin, &format!("ALTER ROLE keel PASSWORD '{password}'"))?;
    if psql(bin, "SELECT count(*) FROM pg_database WHERE datname = 'keel_test'")? == "0" {
        psql(bin, "CREATE DATABASE keel_test OWNER keel")?;
    }
    Ok(())
}

/// Start the server unless it runs.
pub fn start() -> Result<()> {
    let bin = bin_dir().context("PostgreSQL is not installed (cargo xtask setup installs it)")?;
    let status = as_owner(bin.join("pg_ctl")).arg("-D").arg(data_dir()).arg("status").stdout(Stdio::null()).status()?;
    if status.success() {
        return Ok(());
    }
    // A cluster killed uncleanly leaves its pid file; pg_ctl copes with that.
    env::run(
        as_owner(bin.join("pg_ctl"))
            .arg("-D")
            .arg(data_dir())
            .args(["-w", "-t", "60", "-l"])
            .arg(home().join("server.log"))
            .arg("start")
            .stdout(Stdio::null()),
    )
}

/// `KEEL_TEST_POSTGRES` and `KEEL_TEST_POSTGRES_CTL` for the test suites, when the cluster exists.
pub fn test_vars() -> Vec<(String, String)> {
    let (Some(bin), Ok(password)) = (bin_dir(), std::fs::read_to_string(password_file())) else { return Vec::new() };
    vec![
        ("KEEL_TEST_POSTGRES".into(), format!("postgres://keel:{}@127.0.0.1:{PORT}/keel_test", password.trim())),
        ("KEEL_TEST_POSTGRES_CTL".into(), pg_ctl(&bin)),
    ]
}
