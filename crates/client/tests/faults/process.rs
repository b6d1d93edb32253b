//! `mqchat serve` as a child process, for faults that need a process to kill.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to start.
const START: Duration = Duration::from_secs(30);

/// How long a restart waits for its port to be free again. Connections the killed process
/// had stay in TIME_WAIT for up to 60 s on Linux, and a listener without SO_REUSEADDR
/// cannot bind the port meanwhile.
const PORT_FREE: Duration = Duration::from_secs(75);

/// Builds the `mqchat` binary (so the test runs the current code) and returns its path.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("MQCHAT_BIN") {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", "mqchat"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("running cargo build -p mqchat")?;
    if !status.success() {
        bail!("cargo build -p mqchat failed: {status}");
    }
    // This test runs as target/debug/deps/faults-*; the binary is target/debug/mqchat.
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("mqchat"))
        .context("locating the target directory")?;
    if !path.exists() {
        bail!("no binary at {}", path.display());
    }
    Ok(path)
}

/// A running `mqchat serve`.
pub struct ServerProcess {
    binary: PathBuf,
    data_dir: PathBuf,
    port: u16,
    child: Child,
    /// How many times it was started, for the log file names.
    starts: u32,
}

impl ServerProcess {
    /// Starts a server on `data_dir`, on any free port.
    pub async fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let (child, port) = spawn(binary, data_dir, 0, 1).await?;
        Ok(Self {
            binary: binary.to_owned(),
            data_dir: data_dir.to_owned(),
            port,
            child,
            starts: 1,
        })
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no flush, connections dropped by the kernel.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Starts it again on the same data directory and the same port, which the clients
    /// reconnect to. While the port is still taken it tries again, for a bounded time;
    /// returns how long the port kept it waiting.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        let began = tokio::time::Instant::now();
        loop {
            self.starts += 1;
            match spawn(&self.binary, &self.data_dir, self.port, self.starts).await {
                Ok((child, port)) => {
                    assert_eq!(port, self.port);
                    self.child = child;
                    return Ok(began.elapsed());
                }
                Err(e) if e.to_string().contains("Address already in use") => {
                    if began.elapsed() > PORT_FREE {
                        bail!(
                            "port {} still taken {PORT_FREE:?} after the kill: {e}",
                            self.port
                        );
                    }
                    // A bounded poll for the port, not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e.context(format!("restarting on port {}", self.port))),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Spawns `mqchat serve` and reads the port it listens on from its first line.
async fn spawn(
    binary: &Path,
    data_dir: &Path,
    port: u16,
    start: u32,
) -> anyhow::Result<(Child, u16)> {
    let log_path = data_dir.join(format!("serve-{start}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(binary)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen-tcp",
            &format!("127.0.0.1:{port}"),
            "--listen-ws",
            "off",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", binary.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(START, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(_) => {
            let status = child.wait().await?;
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!("mqchat serve exited ({status}) before listening; its log ends: {tail:?}");
        }
        Err(_) => bail!("mqchat serve did not start within {START:?}"),
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let port = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("mqtt://"))
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .with_context(|| format!("no mqtt:// address in {line:?}"))?;
    Ok((child, port))
}
