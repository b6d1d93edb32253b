//! The data directory's writer: one server or hub at a time.
//!
//! A second `mqchat serve` (or `mqchat hub`) on the same directory would share the database
//! safely but not the live traffic: what one hub stores never reaches the devices of the
//! other. So the process that runs a hub holds an exclusive advisory lock on
//! `{data_dir}/mqchat.lock` (`flock`, released by the kernel when the process ends however
//! it ends, so a crash leaves nothing to clean up) and a second one refuses to start, naming
//! the holder. Admin commands (`mqchat user`, `mqchat device`) do not take the lock: they
//! write through SQLite's own locking beside the running server, as they are meant to.
//!
//! The lock file also tells how the previous holder ended: it records the holder while it
//! runs and [`DirLock::release`] replaces that with a clean stop. A record still there when
//! the next holder comes means the previous one died (SIGKILL, power loss, a panic), and the
//! server checks the database before it serves ([`crate::Store::check_integrity`]).

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

/// What the lock file wrote when a holder stopped cleanly.
const CLEAN_STOP: &str = "stopped cleanly";

/// How the previous holder of a data directory ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastStop {
    /// No server ran here before (or only one older than the lock file).
    Unknown,
    /// It stopped cleanly (its store was flushed and closed).
    Clean,
    /// It died while holding the directory; the text is its record.
    Unclean(String),
}

/// An exclusive hold on a data directory, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    // Holding the open file holds the lock.
    file: File,
    last_stop: LastStop,
    /// The file's text before this hold, put back when a hold that never served ends
    /// (a start that failed, an admin repair), so that it leaves no trace.
    previous: String,
    /// Whether the hold has served: then only [`DirLock::release`] records a clean stop, and
    /// any other end leaves the record of a holder that died.
    serving: bool,
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
        let mut previous = String::new();
        let _ = (&file).take(200).read_to_string(&mut previous);
        let last_stop = match previous.trim() {
            "" => LastStop::Unknown,
            CLEAN_STOP => LastStop::Clean,
            record => LastStop::Unclean(record.to_owned()),
        };
        rewrite(
            &mut file,
            &format!("{role}, process {}", std::process::id()),
        )
        .map_err(io)?;
        Ok(Self {
            file,
            last_stop,
            previous: previous.trim().to_owned(),
            serving: false,
        })
    }

    /// Marks the start of serving: from now on, an end other than [`DirLock::release`]
    /// (a kill, a crash, a panic) leaves the record that makes the next start check the
    /// database. Until then, dropping the lock gives the directory back as it was.
    pub fn serving(&mut self) {
        self.serving = true;
    }

    /// How the previous holder ended.
    pub fn last_stop(&self) -> &LastStop {
        &self.last_stop
    }

    /// Releases the directory after a clean stop (the store flushed and closed), so that
    /// the next holder knows it needs no check. Dropping the lock without this leaves the
    /// record of a holder that died.
    pub fn release(mut self) {
        if let Err(e) = rewrite(&mut self.file, CLEAN_STOP) {
            tracing::warn!(error = %e, "cannot record the clean stop in the lock file");
        }
        // Recorded: nothing for the drop to put back.
        self.serving = true;
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if !self.serving
            && let Err(e) = rewrite(&mut self.file, &self.previous)
        {
            tracing::warn!(error = %e, "cannot restore the lock file's record");
        }
    }
}

/// Replaces the lock file's text with `line`.
fn rewrite(file: &mut File, line: &str) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{line}")?;
    file.sync_data()
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
        assert_eq!(first.last_stop(), &LastStop::Unknown);
        // Serving, then dropped without a release: as if the process had died.
        let mut first = first;
        first.serving();
        drop(first);
        let again = DirLock::acquire(dir.path(), "mqchat hub").expect("free again");
        let record = std::fs::read_to_string(dir.path().join(LOCK_FILE)).expect("record");
        assert!(record.starts_with("mqchat hub, process "), "{record}");
        assert!(
            matches!(again.last_stop(), LastStop::Unclean(r) if r.starts_with("mqchat serve, process ")),
            "{:?}",
            again.last_stop()
        );
        // A hold that never served (a start that failed) leaves the record as it found it.
        drop(again);
        let again = DirLock::acquire(dir.path(), "mqchat hub").expect("free again");
        assert!(matches!(again.last_stop(), LastStop::Unclean(_)));
        again.release();
        let third = DirLock::acquire(dir.path(), "mqchat serve").expect("free again");
        assert_eq!(third.last_stop(), &LastStop::Clean);
        drop(third);
        let fourth = DirLock::acquire(dir.path(), "mqchat serve").expect("free again");
        assert_eq!(fourth.last_stop(), &LastStop::Clean);
    }

    #[test]
    fn a_directory_that_cannot_hold_the_file_is_an_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("not-created");
        let err = DirLock::acquire(&missing, "mqchat serve").expect_err("no directory");
        assert!(matches!(err, LockError::Io { .. }), "{err}");
    }
}
