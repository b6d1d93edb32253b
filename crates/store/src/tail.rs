//! The store's tail guard: committed events are never lost in silence, and their sequence
//! numbers are never handed out twice.
//!
//! SQLite in WAL mode keeps the newest commits in `mqchat.db-wal` until a checkpoint copies
//! them into the database file. If that file is deleted, truncated or damaged (or an older
//! backup is put back), SQLite opens what is left without a word: the lost events' sequence
//! numbers would be given to new events, and a device that deduplicates by (conversation,
//! sequence number) would drop those as duplicates of what it already has.
//!
//! So the database counts every event it ever stored (the `events` counter, in the same
//! transaction as the event), and after each commit that stored events the count goes to a
//! small file beside the database, `mqchat.db-count`, which lives outside the WAL. At start a
//! server compares the two ([`crate::Store::check_tail`]): a database behind its file has
//! lost committed events, and the server refuses to start until an operator restores a
//! backup or accepts the loss ([`crate::Store::accept_lost_tail`]), which moves every
//! conversation's numbering past what may have been lost.
//!
//! The file is written without a sync of its own: after a crash of the process the write is
//! in the page cache and survives; a crash of the machine that loses it loses the check for
//! those commits only (the WAL itself, with durability `full`, has them on disk).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Distinguishes the file's check word from a count.
const CHECK: u64 = 0x6d71_6368_6174_2d63;

/// The count file of the database at `db`: `{db}-count`.
pub(crate) fn count_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-count");
    PathBuf::from(name)
}

/// Reads the count recorded beside `db`: `None` when there is no file yet (a store that
/// never stored an event since this guard exists) or when it holds no whole record (a first
/// write cut short), which is logged.
pub(crate) fn recorded(db: &Path) -> std::io::Result<Option<u64>> {
    let path = count_path(db);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let record = bytes
        .get(..16)
        .map(|b| {
            let word = |at: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[at..at + 8]);
                u64::from_le_bytes(w)
            };
            (word(0), word(8))
        })
        .filter(|&(count, check)| count ^ CHECK == check);
    match record {
        Some((count, _)) => Ok(Some(count)),
        None => {
            tracing::warn!(file = %path.display(), "the event count file holds no whole record: ignored");
            Ok(None)
        }
    }
}

/// The writer of a store's count file, opened at its first write.
#[derive(Debug)]
pub(crate) struct CountFile {
    path: PathBuf,
    file: Option<File>,
    /// Whether a failed write was already logged (once, not per commit).
    failed: bool,
}

impl CountFile {
    pub(crate) fn new(db: &Path) -> Self {
        Self {
            path: count_path(db),
            file: None,
            failed: false,
        }
    }

    /// Records `count` after a commit that stored events. A failure is logged once and
    /// otherwise ignored: the commit has happened, and the guard only loses its record.
    pub(crate) fn record(&mut self, count: u64) {
        let mut record = [0u8; 16];
        record[..8].copy_from_slice(&count.to_le_bytes());
        record[8..].copy_from_slice(&(count ^ CHECK).to_le_bytes());
        let written = self.open().and_then(|file| file.write_all_at(&record, 0));
        match written {
            Ok(()) => self.failed = false,
            Err(e) => {
                if !self.failed {
                    tracing::error!(file = %self.path.display(), error = %e, "cannot record the event count beside the database; lost commits would go unnoticed");
                }
                self.failed = true;
                self.file = None;
            }
        }
    }

    fn open(&mut self) -> std::io::Result<&File> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            self.file = Some(file);
        }
        self.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the count file is not open"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, Store, StoreError};
    use mqchat_proto::{DeviceId, PacketKind, UserId};

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("valid")
    }

    /// Appends `n` messages from alice to bob, one commit each; returns the last seq.
    fn send(store: &mut Store, n: u64) -> u64 {
        let phone = DeviceId::parse("phone").expect("valid");
        let mut seq = 0;
        for _ in 0..n {
            let tx = store.transaction().expect("tx");
            let conv = tx
                .direct(&user("alice"), &user("bob"), true)
                .expect("direct")
                .expect("created")
                .id;
            seq = tx
                .append(
                    conv,
                    1_000,
                    &user("alice"),
                    &phone,
                    None,
                    PacketKind(1),
                    b"x",
                )
                .expect("append");
            tx.commit().expect("commit");
        }
        seq
    }

    #[test]
    fn a_lost_wal_is_refused_and_accepting_the_loss_skips_its_numbers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("mqchat.db");
        let mut store = Store::open(&db, Durability::Normal).expect("open");
        for name in ["alice", "bob"] {
            store.add_user(&user(name), None, 1).expect("add");
        }
        assert_eq!(send(&mut store, 5), 5);
        store.checkpoint().expect("checkpoint");
        // The database file as it is now: what is left when the WAL that follows is lost.
        let before = std::fs::read(&db).expect("copy");
        assert_eq!(send(&mut store, 4), 9);
        store.check_tail().expect("nothing lost yet");
        drop(store);
        std::fs::write(&db, before).expect("put the old file back");
        for extra in ["mqchat.db-wal", "mqchat.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(extra));
        }

        let mut store = Store::open(&db, Durability::Normal).expect("open");
        let err = store.check_tail().expect_err("four events are gone");
        assert!(matches!(err, StoreError::LostTail { lost: 4, .. }), "{err}");
        assert!(err.to_string().contains("accept-loss"), "{err}");
        assert_eq!(store.accept_lost_tail().expect("accept"), Some(4));
        store.check_tail().expect("accepted");
        // Numbers 6 to 9 were handed out before the loss: the next event is 10.
        assert_eq!(send(&mut store, 1), 10);
        assert_eq!(store.accept_lost_tail().expect("nothing more"), None);
    }

    #[test]
    fn a_count_reads_back_and_a_torn_record_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("mqchat.db");
        assert_eq!(recorded(&db).expect("read"), None);
        let mut file = CountFile::new(&db);
        file.record(41);
        file.record(42);
        assert_eq!(recorded(&db).expect("read"), Some(42));
        let path = count_path(&db);
        assert!(path.ends_with("mqchat.db-count"), "{}", path.display());
        std::fs::write(&path, [1u8; 9]).expect("tear");
        assert_eq!(recorded(&db).expect("read"), None);
        std::fs::write(&path, [7u8; 16]).expect("garbage");
        assert_eq!(recorded(&db).expect("read"), None);
    }
}
