//! Each way out of the box, tried: the command is stopped or fails, the host is untouched, and no
//! container is left.

use std::process::Command;
use std::time::Duration;

use keel_sandbox::{Error, Limits, WorkspaceSnapshot};

use crate::common::{harness, small_limits};

/// Processes on the host that run as the sandbox user (`nobody`): a bomb inside a container shows
/// up here, the rest of the machine (compilers, other tests) does not.
fn host_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    == Some("65534")
            })
        })
        .count()
}

/// Free kilobytes of the filesystem holding `path`, on the host.
fn host_free_kb(path: &str) -> u64 {
    let out = Command::new("df").args(["-Pk", path]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .expect("df output")
}

#[tokio::test]
async fn a_command_that_loops_forever_is_killed_with_its_container() {
    let h = harness(Limits {
        exec_timeout: Duration::from_secs(2),
        ..small_limits()
    })
    .await;
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let r = c.exec("echo started; while :; do :; done").await.unwrap();
    assert!(r.timed_out, "{r:?}");
    assert_eq!(r.exit_code, None);
    assert_eq!(r.stdout, "started\n", "output before the timeout is kept");
    assert!(r.to_observation().output.contains("timed out"));
    assert!(c.is_gone());
    h.assert_gone(c.id()).await;
    let later = c.exec("echo again").await.unwrap_err();
    assert!(
        matches!(later, Error::Gone(_)) && later.to_string().contains("timeout"),
        "{later}"
    );
    drop(c);
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn a_fork_bomb_hits_the_pids_cap() {
    let limits = Limits {
        pids: 64,
        exec_timeout: Duration::from_secs(8),
        ..small_limits()
    };
    let h = harness(limits).await;
    // Counting: a subshell starts 200 sleepers and dies at the first fork that fails (ash exits
    // 2 on "can't fork"); then the container's processes are counted with shell builtins only.
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let r = c
        .exec("(for i in $(seq 200); do sleep 1000 & done) 2>/dev/null; echo sub=$?; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n")
        .await
        .unwrap();
    assert!(
        r.stdout.starts_with("sub=2\n"),
        "the fork loop did not fail: {r:?}"
    );
    let n: usize = r
        .stdout
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(
        (10..=64).contains(&n),
        "{n} processes in a container capped at 64"
    );
    drop(c);

    // The real thing, while the host is watched.
    let before = host_processes();
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    // The bomb's own shell then spins on builtins (it could not fork a `sleep`), so it runs into
    // the timeout, and the container goes with everything in it.
    let bomb = c.exec("b() { b | b & }; b; while :; do :; done");
    let watch = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        host_processes()
    };
    let (r, during) = tokio::join!(bomb, watch);
    let r = r.unwrap();
    assert!(r.timed_out, "{r:?}");
    // Unconfined, the bomb reaches thousands of processes; capped, 64 (plus the sandbox processes
    // of tests running alongside). The host does see it: the count is the container's processes.
    assert!(during >= before + 10, "the bomb's processes are not visible on the host ({before} → {during})");
    assert!(
        during <= before + 64 + 16,
        "host processes went from {before} to {during}"
    );
    assert!(c.is_gone());
    h.assert_gone(c.id()).await;
    drop(c);
    // The host can still start processes.
    assert!(Command::new("true").status().unwrap().success());
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn filling_the_disk_stops_at_the_work_cap() {
    let h = harness(Limits {
        work_size: 32 << 20,
        ..small_limits()
    })
    .await;
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let before = host_free_kb("/var/lib/containers");
    let r = c
        .exec("dd if=/dev/zero of=big bs=1M count=1024 2>&1; echo rc=$?; stat -c %s big")
        .await
        .unwrap();
    let after = host_free_kb("/var/lib/containers");
    assert!(r.stdout.contains("No space left on device"), "{r:?}");
    assert!(!r.stdout.contains("rc=0"), "{r:?}");
    let size: u64 = r.stdout.lines().last().unwrap().trim().parse().unwrap();
    assert!(size <= 32 << 20, "{size} bytes written past a 32 MiB cap");
    // 1 GiB was attempted; the host's disk did not take it.
    assert!(
        before.saturating_sub(after) < 256 * 1024,
        "host free space fell from {before} to {after} KiB"
    );
    // /tmp is capped too, and the container still works after a full disk.
    let t = c.exec("dd if=/dev/zero of=/tmp/big bs=1M count=1024 2>&1 | grep -c 'No space'; rm big; echo fine > small; cat small").await.unwrap();
    assert_eq!(t.stdout, "1\nfine\n", "{t:?}");
    drop(c);
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn there_is_no_network() {
    let h = harness(Limits {
        exec_timeout: Duration::from_secs(30),
        ..small_limits()
    })
    .await;
    // A listener on the host, on every interface: nothing from the container reaches it.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ips =
        String::from_utf8(Command::new("hostname").arg("-I").output().unwrap().stdout).unwrap();
    let ip = ips
        .split_whitespace()
        .find(|s| !s.contains(':'))
        .unwrap_or("192.0.2.2")
        .to_string();
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let script = format!(
        "wget -q -T 3 -O- http://1.1.1.1/ 2>&1; echo wget=$?; \
         echo x | nc -w 3 {ip} {port} 2>&1; echo nc=$?; \
         echo x | nc -w 3 10.0.2.2 {port} 2>&1; echo gw=$?; \
         cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"
    );
    let r = c.exec(&script).await.unwrap();
    assert!(!r.timed_out, "{r:?}");
    assert!(
        r.stdout.contains("wget=") && !r.stdout.contains("wget=0"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("nc=") && !r.stdout.contains("nc=0"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("gw=0"), "{r:?}");
    let ifaces: Vec<&str> = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("gw="))
        .skip(1)
        .collect();
    assert_eq!(ifaces, ["lo"], "{r:?}");
    assert!(listener.accept().is_err(), "the container reached the host");
    drop(c);
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn writing_outside_the_work_directory_fails() {
    let h = harness(small_limits()).await;
    let host_file =
        std::env::temp_dir().join(format!("keel-sandbox-host-{}.txt", std::process::id()));
    std::fs::write(&host_file, "original\n").unwrap();
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let p = host_file.display();
    let script = format!(
        "echo pwned > /etc/passwd; echo etc=$?; echo pwned > /bin/sh; echo bin=$?; touch /newfile; echo root=$?; \
         mkdir /work/../escape; echo up=$?; echo inside > {p}; echo tmp=$?"
    );
    let r = c.exec(&script).await.unwrap();
    for key in ["etc", "bin", "root", "up"] {
        assert!(
            r.stdout.contains(&format!("{key}=")) && !r.stdout.contains(&format!("{key}=0")),
            "{key}: {r:?}"
        );
    }
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    // The container's /tmp is its own tmpfs: the write lands there, not on the host.
    assert!(r.stdout.contains("tmp=0"), "{r:?}");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "original\n");
    assert_eq!(
        c.exec("cat /etc/passwd | head -1").await.unwrap().stdout,
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    // The file API refuses paths outside /work before anything reaches the container.
    assert!(matches!(
        c.write_file("/etc/passwd", b"x").await,
        Err(Error::OutsideWorkspace(_))
    ));
    assert!(matches!(
        c.write_file("../../bin/sh", b"x").await,
        Err(Error::OutsideWorkspace(_))
    ));
    // No privileges to gain back: capabilities are all dropped.
    let caps = c
        .exec("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status")
        .await
        .unwrap();
    assert_eq!(
        caps.stdout.matches("0000000000000000").count(),
        3,
        "{caps:?}"
    );
    drop(c);
    std::fs::remove_file(&host_file).unwrap();
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn huge_output_is_truncated_at_the_cap() {
    let cap = 64 << 10;
    let h = harness(Limits {
        max_output: cap,
        exec_timeout: Duration::from_secs(60),
        ..small_limits()
    })
    .await;
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let r = c.exec("yes 0123456789abcdef").await.unwrap();
    assert!(r.truncated, "{:?}", (r.exit_code, r.stdout.len()));
    assert!(
        !r.timed_out,
        "the command was stopped at the cap, not at the timeout"
    );
    assert_eq!(r.stdout.len(), cap);
    assert!(r.stdout.starts_with("0123456789abcdef\n0123456789abcdef\n"));
    assert_ne!(r.exit_code, Some(0));
    assert!(r.to_observation().truncated);
    // Stderr counts too, and the container still works afterwards.
    let e = c.exec("yes err >&2").await.unwrap();
    assert!(
        e.truncated && e.stderr.len() == cap && e.stdout.is_empty(),
        "{:?}",
        (e.stdout.len(), e.stderr.len())
    );
    assert_eq!(
        c.exec("echo still here").await.unwrap().stdout,
        "still here\n"
    );
    drop(c);
    h.assert_no_leftovers().await;
}
