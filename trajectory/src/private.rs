//! Files Keel writes are its user's alone: every file is created 0600 and every directory 0700.
//!
//! Trajectories hold code, prompts and decisions; adapters, pairs, logs and scores are learned from
//! them. Every writer in the workspace goes through these helpers (the store itself opens its file
//! 0600; SQLite gives its `-wal` and `-shm` files the database file's mode). Files written by
//! libraries that take a path (libtorch's safetensors, the plot backend, the tokenizer) are passed
//! to [`restrict`] after; the binaries also set the umask to `077` ([`set_umask`]), so whatever
//! they or their children create is private too.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// `create_dir_all` with 0700 for every directory it creates (existing ones are left as they are:
/// they may be the user's, like `/tmp`), and 0700 for `dir` itself when it is new.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// A new or truncated file, 0600 (an existing file's mode is narrowed to 0600).
pub fn create(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    narrow(&f)?;
    Ok(f)
}

/// A file opened for appending, created 0600 if missing (an existing file's mode is narrowed).
pub fn append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().append(true).create(true).mode(FILE_MODE).open(path)?;
    narrow(&f)?;
    Ok(f)
}

/// A file opened for writing without truncating it (a lock file), created 0600 if missing.
pub fn open_write(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().write(true).create(true).truncate(false).mode(FILE_MODE).open(path)?;
    narrow(&f)?;
    Ok(f)
}

/// `fs::write`, 0600.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    use std::io::Write;
    let mut f = create(path)?;
    f.write_all(bytes.as_ref())
}

/// `fs::copy` (which keeps the source's mode), then 0600.
pub fn copy(from: &Path, to: &Path) -> io::Result<u64> {
    let n = std::fs::copy(from, to)?;
    std::fs::set_permissions(to, Permissions::from_mode(FILE_MODE))?;
    Ok(n)
}

/// Narrows a file a library wrote to 0600, or a directory to 0700.
pub fn restrict(path: &Path) -> io::Result<()> {
    let mode = if std::fs::symlink_metadata(path)?.is_dir() { DIR_MODE } else { FILE_MODE };
    std::fs::set_permissions(path, Permissions::from_mode(mode))
}

fn narrow(f: &File) -> io::Result<()> {
    let m = f.metadata()?.permissions().mode();
    if m & 0o077 != 0 {
        f.set_permissions(Permissions::from_mode(m & 0o700))?;
    }
    Ok(())
}

/// Sets the process umask to `077`: files and directories the process and its children create
/// (libraries included) are private. For binaries, at the start of `main`.
pub fn set_umask() {
    // SAFETY: umask only changes the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// The paths under `dir` (itself included) that the group or others may read, write or enter.
pub fn readable_by_others(dir: &Path) -> io::Result<Vec<(std::path::PathBuf, u32)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p)?;
        let mode = md.permissions().mode() & 0o777;
        if md.file_type().is_symlink() {
            continue;
        }
        if mode & 0o077 != 0 {
            out.push((p.clone(), mode));
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_0600_and_new_directories_0700() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), Permissions::from_mode(0o755)).unwrap();
        create_dir_all(&d.path().join("a/b")).unwrap();
        write(&d.path().join("a/b/f"), "x").unwrap();
        append(&d.path().join("a/log")).unwrap();
        std::fs::write(d.path().join("wide"), "y").unwrap();
        std::fs::set_permissions(d.path().join("wide"), Permissions::from_mode(0o644)).unwrap();
        copy(&d.path().join("wide"), &d.path().join("a/copied")).unwrap();
        create(&d.path().join("wide")).unwrap();
        let found = readable_by_others(d.path()).unwrap();
        // Only the directory that existed before keeps its mode.
        assert_eq!(found, vec![(d.path().to_path_buf(), 0o755)]);
    }
}
