//! `mqchat serve` as a child process, for faults that need a process to kill. Devices reach
//! it through a relay whose address stays while the server restarts on a port of its own
//! (port 0), so a restart never waits for the killed process's port to be free.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use mqchat_testkit::{Mqchat, Process, Relay, Stderr};

/// The binary cargo built for this crate's tests, from the current code.
const MQCHAT: Mqchat = Mqchat::at(env!("CARGO_BIN_EXE_mqchat"));

/// A running `mqchat serve` behind a relay.
pub struct ServerProcess {
    data_dir: PathBuf,
    process: Process,
    relay: Relay,
    /// How many times it was started, for the log file names.
    starts: u32,
}

impl ServerProcess {
    /// Starts a server on `data_dir`.
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let (process, addr) = spawn(data_dir.to_owned(), 1).await?;
        Ok(Self {
            data_dir: data_dir.to_owned(),
            process,
            relay: Relay::start(addr).await?,
            starts: 1,
        })
    }

    /// The relay's `mqtt://` URL, the same across restarts.
    pub fn url(&self) -> String {
        self.relay.url()
    }

    /// SIGKILL: no shutdown, no flush, connections dropped by the kernel.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same data directory, behind the same relay, which the
    /// clients reconnect to; returns how long the new process took to listen.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        let began = Instant::now();
        self.starts += 1;
        let (process, addr) = spawn(self.data_dir.clone(), self.starts).await?;
        self.process = process;
        self.relay.retarget(addr);
        Ok(began.elapsed())
    }
}

/// Spawns `mqchat serve` (its log in `serve-{start}.log` of the data directory) and reads
/// the address it listens on from its banner, on a blocking thread: the clients' tasks
/// keep running meanwhile.
async fn spawn(data_dir: PathBuf, start: u32) -> anyhow::Result<(Process, SocketAddr)> {
    tokio::task::spawn_blocking(move || {
        let mut command = MQCHAT.serve_command(&data_dir, &[]);
        command.env("MQCHAT_LOG", "info");
        let log = Stderr::File(data_dir.join(format!("serve-{start}.log")));
        let (process, banner) = MQCHAT.serve_as(command, log);
        let addr = banner.addr("mqtt://");
        let addr = addr
            .parse()
            .with_context(|| format!("an address: {addr}"))?;
        Ok((process, addr))
    })
    .await?
}
