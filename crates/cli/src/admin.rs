//! `mqchat user ...` and `mqchat device ...`: administration on the data directory's
//! database (safe while the server runs: SQLite in WAL mode).

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use mqchat_proto::{DeviceId, UserId};
use mqchat_store::{Durability, Store};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Create a user.
    Add {
        /// The user id.
        user: String,
        /// The password (prefer --password-stdin: arguments are visible to other users).
        #[arg(long, conflicts_with_all = ["password_stdin", "no_password"])]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// No password: the user connects with device tokens only.
        #[arg(long)]
        no_password: bool,
    },
    /// List users.
    List {
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Change a user's password (read from standard input).
    Passwd {
        /// The user id.
        user: String,
    },
    /// Disable an account: it can no longer connect.
    Disable {
        /// The user id.
        user: String,
    },
    /// Enable a disabled account.
    Enable {
        /// The user id.
        user: String,
    },
    /// Delete an account and its devices.
    Delete {
        /// The user id.
        user: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum DeviceCommand {
    /// Register a device and print its token (shown once).
    Add {
        /// The user id.
        user: String,
        /// The device id.
        device: String,
    },
    /// List a user's devices.
    List {
        /// The user id.
        user: String,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: its token stops working and it can no longer connect.
    Revoke {
        /// The user id.
        user: String,
        /// The device id.
        device: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum StoreCommand {
    /// When a server refused to start because the database lacks events it had stored (its
    /// WAL was lost or damaged, or an older copy was put back) and no newer backup exists:
    /// go on without them. Every conversation skips as many sequence numbers, so none is
    /// given twice. Run it while no server runs on the data directory.
    AcceptLoss,
}

pub(crate) fn store(data_dir: &Path, command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::AcceptLoss => {
            // Not beside a server. Dropped without a release: the next server still checks
            // the database if the last one did not stop cleanly.
            let _lock = mqchat_store::DirLock::acquire(data_dir, "mqchat store accept-loss")?;
            let mut store = open(data_dir)?;
            match store.accept_lost_tail()? {
                Some(lost) => println!(
                    "accepted the loss of {lost} events: every conversation skips {lost} sequence numbers"
                ),
                None => println!("no stored event is missing: nothing to do"),
            }
        }
    }
    Ok(())
}

fn open(data_dir: &Path) -> anyhow::Result<Store> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("data directory {}", data_dir.display()))?;
    Ok(Store::open(&data_dir.join("mqchat.db"), Durability::Full)?)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "empty password on standard input");
    Ok(password)
}

pub(crate) fn user(data_dir: &Path, command: UserCommand) -> anyhow::Result<()> {
    let mut store = open(data_dir)?;
    match command {
        UserCommand::Add {
            user,
            password,
            password_stdin,
            no_password,
        } => {
            let user = UserId::parse(&user)?;
            let password = match (password, password_stdin, no_password) {
                (Some(p), _, _) => Some(p),
                (None, true, _) => Some(read_password()?),
                (None, false, true) => None,
                (None, false, false) => {
                    anyhow::bail!("give --password-stdin, --password or --no-password")
                }
            };
            store.add_user(&user, password.as_deref(), now())?;
            println!("created user {user}");
        }
        UserCommand::List { json } => {
            for u in store.users()? {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"user": u.id.as_str(), "disabled": u.disabled, "password": u.has_password, "created": u.created_at})
                    );
                } else {
                    let flags = if u.disabled { " (disabled)" } else { "" };
                    println!("{}{flags}", u.id);
                }
            }
        }
        UserCommand::Passwd { user } => {
            store.set_password(&UserId::parse(&user)?, Some(&read_password()?), now())?;
            println!("password of {user} changed");
        }
        UserCommand::Disable { user } => {
            store.set_disabled(&UserId::parse(&user)?, true, now())?;
            println!("disabled {user}");
        }
        UserCommand::Enable { user } => {
            store.set_disabled(&UserId::parse(&user)?, false, now())?;
            println!("enabled {user}");
        }
        UserCommand::Delete { user } => {
            store.delete_user(&UserId::parse(&user)?, now())?;
            println!("deleted {user}");
        }
    }
    Ok(())
}

pub(crate) fn device(data_dir: &Path, command: DeviceCommand) -> anyhow::Result<()> {
    let mut store = open(data_dir)?;
    match command {
        DeviceCommand::Add { user, device } => {
            let token =
                store.add_device(&UserId::parse(&user)?, &DeviceId::parse(&device)?, now())?;
            println!("{token}");
        }
        DeviceCommand::List { user, json } => {
            for d in store.devices(&UserId::parse(&user)?)? {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"device": d.id.as_str(), "token": d.has_token, "created": d.created_at, "revoked": d.revoked_at, "last-seen": d.last_seen})
                    );
                } else {
                    let state = if d.revoked_at.is_some() {
                        " (revoked)"
                    } else {
                        ""
                    };
                    println!("{}{state}", d.id);
                }
            }
        }
        DeviceCommand::Revoke { user, device } => {
            store.revoke_device(&UserId::parse(&user)?, &DeviceId::parse(&device)?, now())?;
            println!("revoked {user}:{device}");
        }
    }
    Ok(())
}
