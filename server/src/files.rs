//! The user's files a handler reads itself (a document the client names but has not opened): only
//! regular files inside the workspace root, at most [`MAX_READ_BYTES`], read on the blocking pool —
//! never on the runtime's workers, where a FIFO, a device or a huge file would stall every handler.
//! [`write_text`]: an accepted edit written by Keel itself, for an ACP client that does not write
//! files (an LSP client always applies edits itself).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Files larger than this are not read for the client.
pub const MAX_READ_BYTES: u64 = 8 * 1024 * 1024;

/// `path` (absolute) resolved inside `root`, links followed; a clear error when it leaves it.
pub fn inside_root(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    let s = path.to_str().ok_or_else(|| format!("{shown} is not a UTF-8 path"))?;
    keel_trajectory::action::workspace_path(root, s)
        .map_err(|_| format!("{shown} is outside the workspace root {}; Keel reads and edits only the files in it", root.display()))
}

/// [`inside_root`] on the blocking pool (it follows links: a slow file system must not stall the
/// handler's thread).
pub async fn check_inside_root(root: PathBuf, path: PathBuf) -> Result<PathBuf, String> {
    tokio::task::spawn_blocking(move || inside_root(&root, &path)).await.map_err(|e| format!("checking a path failed: {e}"))?
}

/// The text of the regular file at `path`; `None` when it does not exist. Runs on the blocking
/// pool.
pub async fn read_text(path: PathBuf) -> Result<Option<String>, String> {
    tokio::task::spawn_blocking(move || read_text_blocking(&path, MAX_READ_BYTES)).await.map_err(|e| format!("reading a file failed: {e}"))?
}

/// Writes an accepted edit's result to `path`, which must resolve inside `root` (checked again
/// here: a directory may have been replaced by a link out since the edit was proposed) and be a
/// regular file or not exist yet. On the blocking pool.
pub async fn write_text(root: PathBuf, path: PathBuf, text: String) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let real = inside_root(&root, &path)?;
        match std::fs::symlink_metadata(&real) {
            Ok(m) if !m.is_file() => return Err(format!("{} is not a regular file", path.display())),
            _ => {}
        }
        if let Some(dir) = real.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&real, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    })
    .await
    .map_err(|e| format!("writing a file failed: {e}"))?
}

fn read_text_blocking(path: &Path, max: u64) -> Result<Option<String>, String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    // A FIFO blocks `open` until a writer comes, a device never ends: look before opening.
    check_meta(&meta, path, max)?;
    let mut file = open_nonblocking(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    // It may have been replaced between the look and the open: check what was opened.
    check_meta(&file.metadata().map_err(|e| format!("cannot read {shown}: {e}"))?, path, max)?;
    let mut bytes = Vec::new();
    (&mut file).take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(too_large(path, bytes.len() as u64, max));
    }
    String::from_utf8(bytes).map(Some).map_err(|_| format!("{shown} is not UTF-8 text"))
}

fn check_meta(meta: &std::fs::Metadata, path: &Path, max: u64) -> Result<(), String> {
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > max {
        return Err(too_large(path, meta.len(), max));
    }
    Ok(())
}

fn too_large(path: &Path, len: u64, max: u64) -> String {
    format!("{} is too large for Keel to read ({len} bytes; the limit is {max})", path.display())
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.py");
        std::fs::write(&f, "x = 1\n").unwrap();
        assert_eq!(read_text_blocking(&f, 100).unwrap().as_deref(), Some("x = 1\n"));
        assert_eq!(read_text_blocking(&dir.path().join("nope"), 100).unwrap(), None);
        assert!(read_text_blocking(&f, 3).unwrap_err().contains("too large"));
        assert!(read_text_blocking(dir.path(), 100).unwrap_err().contains("not a regular file"));
        assert!(read_text_blocking(Path::new("/dev/zero"), 100).unwrap_err().contains("not a regular file"));
        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(read_text_blocking(&fifo, 100).unwrap_err().contains("not a regular file"));
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        assert!(read_text_blocking(&dir.path().join("bin"), 100).unwrap_err().contains("not UTF-8"));
        assert!(inside_root(dir.path(), &f).is_ok());
        assert!(inside_root(dir.path(), Path::new("/etc/passwd")).unwrap_err().contains("outside the workspace root"));
    }

    #[tokio::test]
    async fn writes_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir(&root).unwrap();
        write_text(root.clone(), root.join("sub/new.py"), "x = 2\n".into()).await.unwrap();
        assert_eq!(std::fs::read_to_string(root.join("sub/new.py")).unwrap(), "x = 2\n");
        let e = write_text(root.clone(), dir.path().join("out.py"), "x".into()).await.unwrap_err();
        assert!(e.contains("outside the workspace root"), "{e}");
        assert!(!dir.path().join("out.py").exists());
        std::os::unix::fs::symlink(dir.path(), root.join("link")).unwrap();
        let e = write_text(root.clone(), root.join("link/out.py"), "x".into()).await.unwrap_err();
        assert!(e.contains("outside the workspace root"), "{e}");
        assert!(!dir.path().join("out.py").exists());
    }
}
