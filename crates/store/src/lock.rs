//! The data directory's writer: one server or hub at a time.
//!
//! A second `mqchat serve` (or `mqchat hub`) on the same directory would share the database
//! safely but not the live traffic: what one hub stores never reaches the devices of the
//! other. So the process that runs a hub holds an exclusive advisory lock on
//! `{data_dir}/mqchat.lock` (`flock`, released by the kernel when the process ends however
//! it ends, so a crash leaves nothing to clean up) and a second one refuses to start, naming
//! the holder. Admin commands (`mqchat user`, `mqchat device`) do not take the lock: they
//! write through SQLite's own locking beside the running server, as they are meant to.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "mqchat.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "the data directory {dir} is in use by another mqchat server ({holder}); stop that \
         one first, or give this one its own data directory (--data-dir)"
    )]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// What the holder wrote into the lock file (its process id and role).
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive hold on a data directory, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    // Holding the open file holds the lock.
    _file: File,
}

impl DirLock {
    /// Takes the lock of `data_dir` for this process, recording `role` (e.g. "mqchat serve")
    /// and the process id for whoever is refused next.
    pub fn acquire(data_dir: &Path, role: &str) -> Result<Self, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Not truncated on open: a refused process must not erase the holder's record.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The record is a courtesy: an unreadable one still refuses.
                let _ = (&file).take(200).read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "a process that left no record".to_owned(),
                    record => record.to_owned(),
                };
                return Err(LockError::Held {
                    dir: data_dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{role}, process {}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = DirLock::acquire(dir.path(), "mqchat serve").expect("the first holder");
        let err = DirLock::acquire(dir.path(), "mqchat hub").expect_err("held");
        let text = err.to_string();
        assert!(
            text.contains(&format!("mqchat serve, process {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("--data-dir"), "{text}");
        drop(first);
        let again = DirLock::acquire(dir.path(), "mqchat hub").expect("free again");
        let record = std::fs::read_to_string(dir.path().join(LOCK_FILE)).expect("record");
        assert!(record.starts_with("mqchat hub, process "), "{record}");
        drop(again);
    }

    #[test]
    fn a_directory_that_cannot_hold_the_file_is_an_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("not-created");
        let err = DirLock::acquire(&missing, "mqchat serve").expect_err("no directory");
        assert!(matches!(err, LockError::Io { .. }), "{err}");
    }
}
