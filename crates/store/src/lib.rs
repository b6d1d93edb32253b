//! mqchat's storage: accounts, devices, conversations, the event archive, markers, contact
//! states and profiles, in SQLite (one file under the data directory, WAL mode).
//!
//! This is the only crate with SQL. The hub holds one [`Store`] for writing and runs each
//! batch of upstream packets in one [`archive::Tx`] (group commit); authentication opens
//! its own read-mostly [`Store`] on the same file. Schema migrations live in `migrations/`
//! and are applied in order at open.

pub mod account;
pub mod archive;
pub mod lock;
pub mod push;
pub mod retention;
pub mod sip;
mod tail;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::config::DbConfig;

pub use account::{
    AuthFailure, Credentials, DeviceRecord, LoginRecord, LoginWrite, PasswordMemory, SessionEnd,
    UserRecord, prepare_decoy, verify_password,
};
pub use archive::{
    Author, ConvId, ConversationRow, EventRow, GroupProfile, Membership, ParticipantRow,
    ProfileRow, Tx,
};
pub use lock::{DirLock, LastStop, LockError};
pub use push::PushDevice;
pub use retention::{RetentionPass, RetentionPolicy};
pub use sip::CallRow;

/// How a store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (disk, corruption, lock timeout). The server's fault.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    /// A user or device that must exist does not.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A user or device that must not exist does.
    #[error("{0} already exists")]
    Exists(String),
    /// Stored data does not parse (written by a newer or broken version).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database's schema is newer than this program.
    #[error("the database has schema version {found}, this program knows up to {known}")]
    NewerSchema {
        /// The database's version.
        found: i64,
        /// The newest version this program knows.
        known: i64,
    },
    /// Hashing a password failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// The database file is damaged: SQLite's check found the problems named.
    #[error(
        "the database {path} is damaged ({problems}); restore it from a backup, or salvage \
         what is readable with sqlite3's .recover (README: Where data lives)"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// The first problems SQLite reported.
        problems: String,
    },
    /// Events the database had committed are gone (its WAL was lost or damaged, or an older
    /// copy was put back): their sequence numbers must not be handed out again.
    #[error(
        "the database {path} lacks the last {lost} events it had stored (its WAL was lost or \
         damaged, or an older copy was put back): restore the newest backup, or accept the \
         loss with `mqchat store accept-loss` (README: Where data lives)"
    )]
    LostTail {
        /// The database file.
        path: PathBuf,
        /// How many events are missing.
        lost: u64,
    },
    /// The data directory is another server's, or its lock file cannot be made.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// How hard a commit tries to survive a power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is synced to disk before it returns (SQLite `synchronous=FULL`).
    #[default]
    Full,
    /// Commits survive a crash of the process but not of the machine (`synchronous=NORMAL`
    /// in WAL mode): faster, for tests and benchmarks that say so.
    Normal,
}

impl std::str::FromStr for Durability {
    type Err = String;

    /// `full` or `normal`, as in the configuration file and on the command line.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!("durability {other:?}: use full or normal")),
        }
    }
}

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_groups.sql"),
    include_str!("../migrations/0003_push.sql"),
    include_str!("../migrations/0004_sip.sql"),
    include_str!("../migrations/0005_session_ends.sql"),
    include_str!("../migrations/0006_event_count.sql"),
];

/// Prepared statements kept per connection: more than the hub's pipeline, sync and group
/// administration use together.
const STATEMENT_CACHE: usize = 256;

/// A connection to the store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Where commits that stored events record the count (`tail.rs`).
    counts: tail::CountFile,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        // Query plans must not depend on bound values: otherwise SQLite marks a statement
        // whose WHERE compares a column with a parameter as "re-prepare when rebound", and
        // clearing the bindings (which the statement cache does after every use) expires
        // it, so every cached statement was parsed and planned again at each use (issue 9:
        // 15 % of the server's CPU). The plans here come from the indexes, not from
        // statistics of values.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        // Every statement of the hub's pipeline stays prepared (the default keeps 16).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut store = Self {
            conn,
            path: path.to_owned(),
            counts: tail::CountFile::new(path),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Checks the database at `path` page by page (SQLite's `quick_check`: every b-tree page
    /// readable and well-formed, without comparing indexes to their tables) before it is
    /// opened for writing, as a server does after a previous run that did not stop cleanly.
    /// Returns how long the check took.
    pub fn check_integrity(path: &Path) -> Result<Duration, StoreError> {
        let started = std::time::Instant::now();
        if !path.exists() {
            return Ok(started.elapsed());
        }
        let damaged = |problems: String| StoreError::Damaged {
            path: path.to_owned(),
            problems,
        };
        let conn = Connection::open(path).map_err(|e| damaged(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mut statement = conn
            .prepare("PRAGMA quick_check(5)")
            .map_err(|e| damaged(e.to_string()))?;
        let problems: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| damaged(e.to_string()))?;
        match problems.as_slice() {
            [ok] if ok == "ok" => Ok(started.elapsed()),
            _ => Err(damaged(problems.join("; "))),
        }
    }

    /// Checks that no committed event is missing: the database's count of stored events
    /// against the count recorded beside it after each commit (`tail.rs`).
    pub fn check_tail(&self) -> Result<(), StoreError> {
        match self.lost_tail()? {
            Some(lost) => Err(StoreError::LostTail {
                path: self.path.clone(),
                lost,
            }),
            None => Ok(()),
        }
    }

    /// After events were lost ([`Store::check_tail`]), goes on without them: every
    /// conversation's next sequence number moves past the numbers the lost events may have
    /// had (at most as many as were lost), so that no number is handed out twice; devices
    /// see the skipped numbers as a gap that history answers with nothing. Returns how many
    /// were lost, or `None` when nothing was.
    pub fn accept_lost_tail(&mut self) -> Result<Option<u64>, StoreError> {
        let Some(lost) = self.lost_tail()? else {
            return Ok(None);
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let step = i64::try_from(lost).unwrap_or(i64::MAX);
        tx.execute("UPDATE conversations SET last_seq = last_seq + ?1", [step])?;
        tx.execute(
            "UPDATE counters SET value = value + ?1 WHERE name = 'events'",
            [step],
        )?;
        tx.commit()?;
        tracing::warn!(
            lost,
            "accepted the loss of events: every conversation skips as many sequence numbers"
        );
        Ok(Some(lost))
    }

    /// How many stored events the database lacks against its count file, if any.
    fn lost_tail(&self) -> Result<Option<u64>, StoreError> {
        let recorded = tail::recorded(&self.path).map_err(|e| {
            StoreError::Corrupt(format!("{}: {e}", tail::count_path(&self.path).display()))
        })?;
        let Some(recorded) = recorded else {
            return Ok(None);
        };
        let stored: i64 = self.conn.query_row(
            "SELECT value FROM counters WHERE name = 'events'",
            [],
            |r| r.get(0),
        )?;
        let stored = u64::try_from(stored).unwrap_or(0);
        Ok((recorded > stored).then(|| recorded - stored))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > known {
            return Err(StoreError::NewerSchema {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tracing::info!(version = i + 1, "applying store migration");
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }

    /// Starts a write transaction (taking the write lock at once).
    pub fn transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        Tx::begin(&mut self.conn, &mut self.counts)
    }

    /// Forces the WAL into the main database file (at shutdown).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("mqchat.db"), Durability::Normal).expect("open");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_keeps_data_and_schema() {
        let (dir, mut store) = test_store();
        let alice = mqchat_proto::UserId::parse("alice").expect("valid");
        store.add_user(&alice, Some("pw"), 1).expect("add");
        drop(store);
        let store = Store::open(&dir.path().join("mqchat.db"), Durability::Full).expect("reopen");
        assert_eq!(store.users().expect("list").len(), 1);
    }

    #[test]
    fn refuses_newer_schema() {
        let (dir, store) = test_store();
        store
            .conn
            .pragma_update(None, "user_version", 99)
            .expect("set");
        drop(store);
        let err = Store::open(&dir.path().join("mqchat.db"), Durability::Full).expect_err("newer");
        assert!(matches!(err, StoreError::NewerSchema { found: 99, .. }));
    }

    #[test]
    fn the_integrity_check_finds_an_overwritten_page() {
        use std::io::{Seek, SeekFrom, Write};
        let (dir, mut store) = test_store();
        for i in 0..200 {
            let user = mqchat_proto::UserId::parse(&format!("user{i}")).expect("valid");
            store.add_user(&user, None, 1).expect("add");
        }
        store.checkpoint().expect("checkpoint");
        drop(store);
        let path = dir.path().join("mqchat.db");
        Store::check_integrity(&path).expect("a sound store passes");

        // The users table's pages hold the second half of the file: overwrite one.
        let size = std::fs::metadata(&path).expect("size").len();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.seek(SeekFrom::Start(size - 4096)).expect("seek");
        file.write_all(&[0xA5; 4096]).expect("overwrite");
        drop(file);
        let err = Store::check_integrity(&path).expect_err("damaged");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Damaged { .. }), "{text}");
        assert!(
            text.contains("mqchat.db") && text.contains("backup"),
            "{text}"
        );
    }
}
