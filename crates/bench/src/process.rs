//! The processes under measurement: starting and stopping them, and reading their CPU time
//! and resident memory from `/proc`.
//!
//! A server is measured as its whole process tree (ejabberd is a shell script that starts
//! `beam.smp`, which starts helpers), summed. CPU times in `/proc/<pid>/stat` are in clock
//! ticks of 1/100 s (`USER_HZ`, fixed at 100 on Linux), so a measurement window of ten
//! seconds reads to within about 0.1 %.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`.
const TICKS_PER_SECOND: u64 = 100;
/// The page size of `/proc/<pid>/stat`'s resident set (x86-64 and aarch64 Linux defaults).
const PAGE_BYTES: u64 = 4096;

/// CPU time and memory of a process tree at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// User plus system CPU time, all threads and descendants.
    pub cpu: Duration,
    /// Resident set, in KiB.
    pub rss_kib: u64,
}

struct Stat {
    ppid: u32,
    ticks: u64,
    rss_pages: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after the last
    // ')'. Counting from field 3 (state) as index 0: ppid 1, utime 11, stime 12, rss 21.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        ppid: u32::try_from(number(1)?).ok()?,
        ticks: number(11)? + number(12)?,
        rss_pages: number(21)?,
    })
}

/// The usage of `pid` and all its descendants.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let mut stats: HashMap<u32, Stat> = HashMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(p) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(s) = stat(p) {
            stats.insert(p, s);
        }
    }
    if !stats.contains_key(&pid) {
        bail!("process {pid} is gone");
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (p, s) in &stats {
        children.entry(s.ppid).or_default().push(*p);
    }
    let (mut ticks, mut pages) = (0, 0);
    let mut todo = vec![pid];
    // A process tree has no cycles, but pid 0's "children" include pid 1: bound the walk.
    let mut budget = stats.len();
    while let Some(p) = todo.pop() {
        if budget == 0 {
            break;
        }
        budget -= 1;
        if let Some(s) = stats.get(&p) {
            ticks += s.ticks;
            pages += s.rss_pages;
        }
        todo.extend(children.get(&p).into_iter().flatten());
    }
    Ok(Usage {
        cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
        rss_kib: pages * PAGE_BYTES / 1024,
    })
}

/// This process's own usage (the load generator's), without its children (the servers).
pub fn own_usage() -> anyhow::Result<Usage> {
    let s = stat(std::process::id()).context("reading /proc/self/stat")?;
    Ok(Usage {
        cpu: Duration::from_millis(s.ticks * 1000 / TICKS_PER_SECOND),
        rss_kib: s.rss_pages * PAGE_BYTES / 1024,
    })
}

/// Raises the open-file limit as far as allowed (as root: to `want`), returning the soft
/// limit in force. Children inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    let target = if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_ok() {
        want
    } else {
        // Not root: the soft limit can still go up to the hard one.
        rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(_, hard)| hard)
    };
    let _ = rlimit::increase_nofile_limit(target);
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// A free loopback TCP port, as the kernel chooses it. Another process could take it before
/// the peer binds it; the peer then fails to start, which the harness reports.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on {addr} after {within:?}")
}

/// Gives a directory tree to a system user (a peer running as itself must write there).
pub fn chown_tree(path: &Path, user: &str) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(path)
        .status()?;
    if !status.success() {
        bail!("chown -R {user} {} failed", path.display());
    }
    Ok(())
}

/// A started process (with its descendants, in a process group of its own) that is stopped
/// when dropped: SIGTERM to the group, then SIGKILL after a grace period.
#[derive(Debug)]
pub struct Guard {
    name: String,
    child: Option<Child>,
}

impl Guard {
    /// A command for `program`, run as a system user (with that user's groups, through
    /// `setpriv`, which execs: the pid is the program's own) or as ourselves.
    pub fn command(program: impl AsRef<std::ffi::OsStr>, as_user: Option<&str>) -> Command {
        match as_user {
            None => Command::new(program),
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(program);
                command
            }
        }
    }

    /// Starts `command` in a new process group.
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Self> {
        command.process_group(0).stdin(Stdio::null());
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    /// The process id (of the group leader).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child's stdout, once (for reading a line it prints at start).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// Fails if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            bail!("{} exited: {status}", self.name);
        }
        Ok(())
    }

    /// Stops the process group and waits for the leader (SIGTERM, SIGKILL after `grace`).
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        let mut stopped = false;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !stopped {
            eprintln!(
                "{} did not stop within {grace:?} of SIGTERM: killed",
                self.name
            );
        }
        // Whatever is left of the group (helpers that ignored SIGTERM) goes too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}
