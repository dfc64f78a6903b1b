//! Images other than the base one: the Python image (`cargo xtask setup` builds it), where a
//! task's Python tests run under the same containment and their exit status is what a rollout
//! sees; and an image imported from a rootfs tar, as a project's own would be.

use keel_sandbox::{PYTHON_IMAGE, Sandbox, SandboxConfig, WorkspaceSnapshot};

use crate::common::{harness, harness_with, small_limits};

#[tokio::test]
async fn a_rootfs_tar_imports_as_an_image() {
    let h = harness(small_limits()).await;
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("rootfs.tar");
    std::fs::write(
        &tar,
        keel_sandbox::image::rootfs_tar(&keel_sandbox::image::busybox_path()).unwrap(),
    )
    .unwrap();
    let tag = format!("localhost/keel-import-test:{}", std::process::id());
    keel_sandbox::import_rootfs(h.sandbox.docker(), &tag, &tar)
        .await
        .unwrap();
    let own = Sandbox::connect(SandboxConfig {
        image: Some(tag.clone()),
        ..SandboxConfig::with_limits(small_limits())
    })
    .await
    .unwrap();
    let c = own
        .start(&WorkspaceSnapshot::from_files([("a.txt", "a\n")]))
        .await
        .unwrap();
    let r = c.exec("cat a.txt; echo $PATH").await;
    c.remove().await.unwrap();
    drop(c);
    let removed = h
        .sandbox
        .docker()
        .remove_image(
            &tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
    let r = r.unwrap();
    assert_eq!(
        r.stdout,
        format!("a\n{}\n", keel_sandbox::CONTAINER_PATH),
        "{r:?}"
    );
    removed.unwrap();
    let e = keel_sandbox::import_rootfs(h.sandbox.docker(), &tag, &dir.path().join("missing.tar"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing.tar"), "{e}");
    h.assert_no_leftovers().await;
}

#[tokio::test]
async fn python_tests_pass_and_fail_in_the_python_image() {
    let h = harness_with(SandboxConfig {
        image: Some(PYTHON_IMAGE.into()),
        ..SandboxConfig::with_limits(small_limits())
    })
    .await;
    let snap = WorkspaceSnapshot::from_files([
        ("calc.py", "def add(a, b):\n    return a + b\n"),
        (
            "test_ok.py",
            "from calc import add\n\ndef test_add():\n    assert add(2, 2) == 4\n\nif __name__ == '__main__':\n    test_add()\n    print('ok')\n",
        ),
        (
            "test_bad.py",
            "from calc import add\n\ndef test_add():\n    assert add(2, 2) == 5\n",
        ),
    ])
    // The workspace's uncommitted changes apply with the image's `patch`.
    .with_patch("--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,3 @@\n+# patched\n def add(a, b):\n     return a + b\n");
    let c = h.sandbox.start(&snap).await.unwrap();
    let who = c
        .exec("id -u; pwd; head -1 calc.py; python3 --version")
        .await
        .unwrap();
    assert!(who.success(), "{who:?}");
    assert!(
        who.stdout.starts_with("65534\n/work\n# patched\nPython 3."),
        "{who:?}"
    );

    let ok = c.exec("python3 test_ok.py").await.unwrap();
    assert_eq!(
        (ok.exit_code, ok.stdout.as_str()),
        (Some(0), "ok\n"),
        "{ok:?}"
    );
    let pass = c.exec("python3 -m pytest -q test_ok.py").await.unwrap();
    assert_eq!(pass.exit_code, Some(0), "{pass:?}");
    let fail = c.exec("python3 -m pytest -q test_bad.py").await.unwrap();
    assert_eq!(
        fail.exit_code,
        Some(1),
        "pytest's code for failed tests: {fail:?}"
    );
    assert!(fail.stdout.contains("1 failed"), "{fail:?}");
    // An edit of the same length in the same second as the last run is what runs next (no stale
    // bytecode cache: `a + b` made `a - b` changes neither the size nor the mtime's second).
    let mtime = c.exec("stat -c %Y calc.py").await.unwrap().stdout;
    c.write_file("calc.py", b"# patched\ndef add(a, b):\n    return a - b\n").await.unwrap();
    let edited = c
        .exec(&format!("touch -d @{} calc.py && python3 -c 'from calc import add; print(add(2, 2))'", mtime.trim()))
        .await
        .unwrap();
    assert_eq!(edited.stdout, "0\n", "{edited:?}");
    // No network here either.
    let net = c
        .exec("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)\"")
        .await
        .unwrap();
    assert_ne!(net.exit_code, Some(0), "{net:?}");

    // Reuse: reset to another workspace (kill, ls, rm, wc in the image).
    c.reset(&WorkspaceSnapshot::from_files([(
        "test_ok.py",
        "print('again')\n",
    )]))
    .await
    .unwrap();
    let again = c.exec("ls; python3 test_ok.py").await.unwrap();
    assert_eq!(again.stdout, "test_ok.py\nagain\n", "{again:?}");
    c.remove().await.unwrap();
    drop(c);
    h.assert_no_leftovers().await;
}
