//! A container engine of a test's own, to stop under a run (`kill -9` of its podman service), and
//! what to look at around it: the containers a process left, a command running in a container, a
//! process that must end by itself. Shared by the engine-stop tests of `eval` and `search`.

use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// A podman API service of a test's own; killed when dropped, so a failing test does not leave it
/// running.
pub struct Engine(Child);

impl std::ops::Deref for Engine {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Engine {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A podman API service of this test's own on `sock` (the same storage, so the images are
/// there), answering once this returns. The shared service (`DOCKER_HOST`) is left alone.
pub fn private_engine(sock: &Path) -> Engine {
    let _ = std::fs::remove_file(sock);
    let child = std::process::Command::new("podman")
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", sock.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("podman (cargo xtask setup installs it)");
    // Guarded from here: a service that never answers is killed with the failing test.
    let engine = Engine(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) {
            let _ = s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.contains("OK") {
                return engine;
            }
        }
        assert!(Instant::now() < deadline, "the private podman service did not answer on {}", sock.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Containers labelled as Keel's whose owner label names process `pid`.
pub fn containers_of(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("podman")
        .args(["ps", "-a", "--filter", "label=keel.sandbox=1", "--format", "{{.ID}} {{index .Labels \"keel.sandbox.owner\"}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1).and_then(|o| o.split('/').nth(1)) == Some(pid.to_string().as_str()))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

/// Whether a process whose command line holds `token` runs on this machine (a container's
/// processes are the host's, in their own pid namespace).
pub fn running(token: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(token)))
}

/// Waits for `child` to end by itself — a hang guard, not a speed figure: it is killed and the
/// test fails if it is still running after `within` — and returns its output.
pub fn ends_by_itself(mut child: Child, within: Duration, what: &str) -> Output {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} hangs after its engine stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}
