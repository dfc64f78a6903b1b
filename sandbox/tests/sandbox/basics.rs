use std::process::Command;
use std::time::Duration;

use keel_sandbox::{Error, Sandbox, SandboxConfig, WorkspaceSnapshot};
use keel_trajectory::{FileSnapshot, Observation, VcsState};

use crate::common::{harness, small_limits};

#[tokio::test]
async fn runs_a_command_and_returns_its_output_and_exit_code() {
    let h = harness(small_limits()).await;
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let r = c.exec("echo hello; echo oops >&2; exit 3").await.unwrap();
    assert_eq!(r.stdout, "hello\n");
    assert_eq!(r.stderr, "oops\n");
    assert_eq!(r.exit_code, Some(3));
    assert!(!r.truncated && !r.timed_out);
    let o: Observation = (&r).into();
    assert_eq!(o.output, "hello\noops\n");
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.duration_ms, Some(r.duration.as_millis() as u64));

    let who = c.exec("id -u; pwd").await.unwrap();
    assert_eq!(
        who.stdout, "65534\n/work\n",
        "commands run as nobody in /work"
    );
    assert!(who.success());
    // State persists between commands of one container.
    c.exec("echo 42 > n.txt").await.unwrap();
    assert_eq!(c.exec("cat n.txt").await.unwrap().stdout, "42\n");

    let id = c.id().to_string();
    c.remove().await.unwrap();
    assert!(matches!(c.exec("true").await, Err(Error::Gone(_))));
    h.assert_gone(&id).await;
    drop(c);
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn files_copied_in_are_visible() {
    let h = harness(small_limits()).await;
    let snap =
        WorkspaceSnapshot::from_files([("a.txt", "alpha\n"), ("src/deep/b.rs", "fn b() {}\n")]);
    let c = h.sandbox.start(&snap).await.unwrap();
    let r = c
        .exec("cat a.txt src/deep/b.rs; find . -type f | sort")
        .await
        .unwrap();
    assert_eq!(r.stdout, "alpha\nfn b() {}\n./a.txt\n./src/deep/b.rs\n");
    // The copied files belong to the sandbox user: commands can change them.
    let w = c.exec("echo beta >> a.txt && cat a.txt").await.unwrap();
    assert_eq!(w.stdout, "alpha\nbeta\n", "{w:?}");
    drop(c);

    // A host directory, without its .git, with a patch on top.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/HEAD"), "ref: x\n").unwrap();
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("lib/m.py"), "x = 1\ny = 2\n").unwrap();
    let patch = "--- a/lib/m.py\n+++ b/lib/m.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3\n";
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::from_dir(dir.path()).with_patch(patch))
        .await
        .unwrap();
    let r = c.exec("cat lib/m.py; ls -a").await.unwrap();
    assert_eq!(r.stdout, "x = 1\ny = 3\n.\n..\nlib\n", "{r:?}");
    drop(c);

    // A patch that does not apply is an error, and leaves no container.
    let bad = WorkspaceSnapshot::from_dir(dir.path()).with_patch(patch.replace("y = 2", "y = 9"));
    assert!(matches!(h.sandbox.start(&bad).await, Err(Error::Patch(_))));
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn a_recorded_git_state_is_rebuilt() {
    let h = harness(small_limits()).await;
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    git(&["init", "-q"]);
    std::fs::write(repo.path().join("main.c"), "int main() { return 1; }\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "init"]);
    let commit = git(&["rev-parse", "HEAD"]).trim().to_string();
    std::fs::write(repo.path().join("main.c"), "int main() { return 0; }\n").unwrap();
    let patch = git(&["diff", "--binary", "HEAD"]);
    let vcs = VcsState {
        kind: "git".into(),
        commit,
        patch,
        untracked: vec![FileSnapshot {
            path: "notes/todo.txt".into(),
            content: "later\n".into(),
        }],
        left_out: vec![],
    };
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::from_vcs(repo.path(), &vcs))
        .await
        .unwrap();
    let r = c.exec("cat main.c notes/todo.txt").await.unwrap();
    assert_eq!(r.stdout, "int main() { return 0; }\nlater\n", "{r:?}");
    drop(c);

    let missing = VcsState {
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        ..vcs
    };
    assert!(matches!(
        h.sandbox
            .start(&WorkspaceSnapshot::from_vcs(repo.path(), &missing))
            .await,
        Err(Error::Snapshot(_))
    ));
    h.assert_no_leftovers().await;
}

/// The file API moves bytes in and out of `/work`; editing (locating `old_text`) is the agent's
/// tools' job, in keel-agent, over this API.
#[tokio::test]
async fn files_are_written_and_read_back() {
    let h = harness(small_limits()).await;
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::from_files([(
            "src/lib.rs",
            "fn a() {}\nfn b() {}\n",
        )]))
        .await
        .unwrap();
    assert_eq!(
        c.read_file("src/lib.rs").await.unwrap(),
        b"fn a() {}\nfn b() {}\n"
    );
    // A whole new text replaces the old one; commands see it.
    c.write_file("src/lib.rs", b"fn a() {}\nfn b() -> u8 { 1 }\n")
        .await
        .unwrap();
    assert_eq!(
        c.read_file("/work/src/lib.rs").await.unwrap(),
        b"fn a() {}\nfn b() -> u8 { 1 }\n"
    );
    assert_eq!(
        c.exec("cat /work/src/lib.rs").await.unwrap().stdout,
        "fn a() {}\nfn b() -> u8 { 1 }\n"
    );
    // A command's change is what the next read sees.
    c.exec("sed -i 's/u8/u16/' src/lib.rs").await.unwrap();
    assert_eq!(
        c.read_file("src/lib.rs").await.unwrap(),
        b"fn a() {}\nfn b() -> u16 { 1 }\n"
    );

    // New files get their parents; they stay writable by commands. Bytes need not be text.
    c.write_file("new/deep/file.txt", b"created\n").await.unwrap();
    c.write_file("/work/other/x.bin", &[0, 159, 255]).await.unwrap();
    let r = c
        .exec("cat new/deep/file.txt; wc -c < other/x.bin; echo more >> other/x.bin && echo ok")
        .await
        .unwrap();
    assert_eq!(r.stdout, "created\n3\nok\n", "{r:?}");
    assert_eq!(
        c.read_file("other/x.bin").await.unwrap(),
        b"\0\x9f\xffmore\n"
    );

    assert!(matches!(
        c.read_file("nope.txt").await,
        Err(Error::NotFound(_))
    ));
    for outside in ["../etc/passwd", "/etc/passwd", "a/../../x"] {
        assert!(
            matches!(
                c.write_file(outside, b"x").await,
                Err(Error::OutsideWorkspace(_))
            ),
            "{outside}"
        );
        assert!(
            matches!(c.read_file(outside).await, Err(Error::OutsideWorkspace(_))),
            "{outside}"
        );
    }
    drop(c);
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn a_panic_or_a_cancelled_command_leaves_no_container() {
    let h = harness(small_limits()).await;
    // A panic in the task that owns the container.
    let sandbox = h.sandbox.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let c = sandbox.start(&WorkspaceSnapshot::default()).await.unwrap();
        tx.send(c.id().to_string()).unwrap();
        c.exec("true").await.unwrap();
        panic!("the owner panics");
    });
    let id = rx.await.unwrap();
    assert!(task.await.unwrap_err().is_panic());
    h.assert_gone(&id).await;

    // A command cancelled half-way (its future dropped), then the container dropped.
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let id = c.id().to_string();
    let cancelled = tokio::time::timeout(Duration::from_millis(500), c.exec("sleep 30")).await;
    assert!(cancelled.is_err(), "the command finished: {cancelled:?}");
    drop(c);
    h.assert_gone(&id).await;
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn the_base_image_is_built_from_busybox() {
    let h = harness(small_limits()).await;
    let tag = format!("localhost/keel-sandbox-test:{}", std::process::id());
    assert!(
        keel_sandbox::image::ensure_image(h.sandbox.docker(), &tag)
            .await
            .unwrap(),
        "imported"
    );
    assert!(
        !keel_sandbox::image::ensure_image(h.sandbox.docker(), &tag)
            .await
            .unwrap(),
        "second time: already there"
    );
    let config = SandboxConfig {
        image: Some(tag.clone()),
        limits: small_limits(),
        ..Default::default()
    };
    let own = Sandbox::connect(config).await.unwrap();
    let c = own.start(&WorkspaceSnapshot::default()).await.unwrap();
    let r = c
        .exec("which sh grep sed diff patch wget nc timeout; cat /etc/passwd | grep -c nobody")
        .await;
    c.remove().await.unwrap();
    drop(c);
    h.sandbox
        .docker()
        .remove_image(
            &tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
    let r = r.unwrap();
    assert_eq!(
        r.stdout,
        "/bin/sh\n/bin/grep\n/bin/sed\n/bin/diff\n/bin/patch\n/bin/wget\n/bin/nc\n/bin/timeout\n1\n",
        "{r:?}"
    );

    let missing = SandboxConfig {
        image: Some("localhost/keel-no-such-image:0".into()),
        ..Default::default()
    };
    assert!(matches!(
        Sandbox::connect(missing).await,
        Err(Error::Image(_))
    ));
    let nowhere = SandboxConfig {
        socket: Some("unix:///nonexistent/podman.sock".into()),
        ..Default::default()
    };
    let e = Sandbox::connect(nowhere).await.unwrap_err();
    assert!(
        matches!(e, Error::Unreachable { .. }) && e.to_string().contains("cargo xtask setup"),
        "{e}"
    );
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn containers_never_outlive_their_lifetime_and_leftovers_are_cleaned() {
    // Should the owning process die without running any drop, the container's init exits at the
    // end of its lifetime and the engine removes it.
    let h = harness(keel_sandbox::Limits {
        lifetime: Duration::from_secs(2),
        ..small_limits()
    })
    .await;
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::default())
        .await
        .unwrap();
    let id = c.id().to_string();
    std::mem::forget(c);
    let mut gone = false;
    for _ in 0..60 {
        if !h.sandbox.labelled_containers().await.unwrap().contains(&id) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(gone, "container {id} outlived its 2 s lifetime by 30 s");

    // Leftovers older than asked are removed (here the sandbox's own, so that other processes'
    // containers running meanwhile are left alone; `cleanup_leftovers` does the same for all).
    let long = Sandbox::connect(SandboxConfig::with_limits(small_limits()))
        .await
        .unwrap();
    let c = long.start(&WorkspaceSnapshot::default()).await.unwrap();
    let id = c.id().to_string();
    std::mem::forget(c);
    assert_eq!(
        long.cleanup_own_leftovers(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        long.own_containers().await.unwrap(),
        std::slice::from_ref(&id)
    );
    assert!(long.labelled_containers().await.unwrap().contains(&id));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        long.cleanup_own_leftovers(Duration::from_secs(1))
            .await
            .unwrap(),
        1
    );
    h.assert_gone(&id).await;
    assert!(long.own_containers().await.unwrap().is_empty());
    h.assert_no_leftovers().await;
}

/// A used container made fresh for another workspace: the old files in /work and /tmp are gone,
/// the new snapshot (with its patch) is there, a command's leftover background process is dead;
/// one whose killed orphans would keep eating the pids cap is refused instead.
#[tokio::test]
async fn reset_gives_a_fresh_workspace_or_refuses() {
    let h = harness(small_limits()).await;
    let c = h
        .sandbox
        .start(&WorkspaceSnapshot::from_files([("a.txt", "alpha\n")]))
        .await
        .unwrap();
    let r = c
        .exec("echo junk > /work/junk; mkdir -p .hidden; echo t > /tmp/t; (sleep 300 &); echo started")
        .await
        .unwrap();
    assert_eq!(r.stdout, "started\n", "{r:?}");
    assert!(c.exec("ps").await.unwrap().stdout.contains("sleep 300"));

    let b = WorkspaceSnapshot::from_files([("b.txt", "beta\n")])
        .with_patch("--- a/b.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-beta\n+beta patched\n");
    c.reset(&b).await.unwrap();
    let r = c.exec("ls -A /work; echo --; ls -A /tmp; echo --; cat b.txt; ps").await.unwrap();
    let (files, rest) = r.stdout.split_once("--\n").unwrap();
    let (tmp, rest) = rest.split_once("--\n").unwrap();
    assert_eq!((files, tmp), ("b.txt\n", ""), "{r:?}");
    assert!(rest.starts_with("beta patched\n"), "{r:?}");
    assert!(!rest.contains("sleep 300"), "the old background process survived the reset: {rest}");

    // Thirty orphans, killed, stay zombies under an init that does not reap: refused.
    let r = c
        .exec("for i in $(seq 30); do (sleep 300 &); done; echo ok")
        .await
        .unwrap();
    assert_eq!(r.stdout, "ok\n", "{r:?}");
    let e = c.reset(&b).await.unwrap_err();
    assert!(matches!(e, Error::Reset(_)), "{e}");
    assert!(e.to_string().contains("processes are left"), "{e}");
    c.remove().await.unwrap();
    h.assert_no_leftovers().await;
}
