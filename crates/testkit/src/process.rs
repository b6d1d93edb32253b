//! Child processes for tests: the `mqchat` binary (one-shot commands, and `serve` with the
//! addresses its banner reports) and any other program whose output lines a test waits for.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use crate::{WAIT, until};

/// Where a [`Process`]'s stderr goes.
#[derive(Debug)]
pub enum Stderr {
    /// The test's own stderr, so it shows with a failing test.
    Inherit,
    /// Read as lines, like stdout (on the same channel, in the order they arrive).
    Lines,
    /// A file, appended to (a restarted process adds to its log), for a log the test shows
    /// only when it fails.
    File(PathBuf),
}

/// A child process whose output lines arrive on a channel; killed when dropped, so a
/// failing test leaves no process behind.
#[derive(Debug)]
pub struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    name: String,
}

impl Process {
    /// Starts `command` (named `name` in failures) with its stdout read line by line.
    pub fn start(name: &str, mut command: Command, stderr: Stderr) -> Self {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
        match &stderr {
            Stderr::Inherit => command.stderr(Stdio::inherit()),
            Stderr::Lines => command.stderr(Stdio::piped()),
            Stderr::File(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path);
                command.stderr(file.unwrap_or_else(|e| panic!("{path:?}: {e}")))
            }
        };
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let mut streams: Vec<Box<dyn Read + Send>> = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            streams.push(Box::new(stdout));
        }
        if let Some(stderr) = child.stderr.take() {
            streams.push(Box::new(stderr));
        }
        for stream in streams {
            let tx = tx.clone();
            // Reading to the end also keeps the child from blocking on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            name: name.to_owned(),
        }
    }

    /// The next line containing `needle`, within [`WAIT`]; earlier lines are skipped.
    pub fn line_with(&self, needle: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(WAIT).unwrap_or_else(|_| {
                panic!("{}: no line with {needle:?} within {WAIT:?}", self.name)
            });
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`-HUP`, `-TERM`...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {signal} {}", self.name);
    }

    /// SIGKILL, at once: no shutdown, connections dropped by the kernel.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits, within [`WAIT`], for the process to end by itself.
    pub fn wait(mut self) -> ExitStatus {
        let name = self.name.clone();
        until(&format!("end of {name}"), || {
            self.child.try_wait().expect("wait for a child")
        })
    }

    /// SIGTERM, then waits for the exit within [`WAIT`].
    pub fn terminate(self) -> ExitStatus {
        self.signal("-TERM");
        self.wait()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `mqchat` binary at a path cargo gives the tests of its crate,
/// `env!("CARGO_BIN_EXE_mqchat")` (so cargo builds it, from the current code, before them).
#[derive(Clone, Copy, Debug)]
pub struct Mqchat {
    path: &'static str,
}

impl Mqchat {
    /// The binary at `path`.
    pub const fn at(path: &'static str) -> Self {
        Self { path }
    }

    /// Its path.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// `mqchat args`, logging warnings and errors only.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.path);
        command.args(args).env("MQCHAT_LOG", "warn");
        command
    }

    /// Runs `mqchat args` to its end, with `stdin` as its input: (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        output(self.command(args), stdin)
    }

    /// Runs `mqchat args` as a [`Process`] whose stdout the test reads.
    pub fn spawn(&self, args: &[&str]) -> Process {
        Process::start("mqchat", self.command(args), Stderr::Inherit)
    }

    /// Adds each of `users` to the store in `data_dir`, with the password `{user}-pw`.
    pub fn add_users(&self, data_dir: &Path, users: &[&str]) {
        let data = data_dir.to_str().expect("a UTF-8 path");
        for user in users {
            let (code, _, err) = self.run(
                &["user", "add", user, "--password-stdin", "--data-dir", data],
                Some(&format!("{user}-pw\n")),
            );
            assert_eq!(code, 0, "user add {user}: {err}");
        }
    }

    /// `mqchat serve` on `data_dir`, TCP on 127.0.0.1 port 0 and no WebSocket listener,
    /// with `args` added (a configuration file, more listeners), once its banner reports
    /// the addresses it bound.
    pub fn serve(&self, data_dir: &Path, args: &[&str]) -> (Process, Banner) {
        self.serve_as(self.serve_command(data_dir, args), Stderr::Inherit)
    }

    /// The command [`Mqchat::serve`] runs, to adjust before [`Mqchat::serve_as`].
    pub fn serve_command(&self, data_dir: &Path, args: &[&str]) -> Command {
        let mut command = self.command(&["serve", "--data-dir"]);
        command
            .arg(data_dir)
            .args(["--listen-tcp", "127.0.0.1:0", "--listen-ws", "off"])
            .args(args);
        command
    }

    /// Starts `command` (an `mqchat serve`) and waits for its banner.
    pub fn serve_as(&self, command: Command, stderr: Stderr) -> (Process, Banner) {
        let process = Process::start("mqchat serve", command, stderr);
        let banner = Banner(process.line_with("mqchat listening:"));
        (process, banner)
    }
}

/// `mqchat serve`'s first line: `mqchat listening: mqtt://127.0.0.1:PORT ...`, every
/// address the server bound (ports chosen by the system for port 0).
#[derive(Clone, Debug)]
pub struct Banner(pub String);

impl Banner {
    /// The address printed after `scheme` (`mqtt://`, `mqtts://`, `sip+udp://`...), as
    /// printed: `127.0.0.1:PORT`, with a path for WebSocket listeners.
    pub fn addr(&self, scheme: &str) -> String {
        self.0
            .split_whitespace()
            .find_map(|word| word.strip_prefix(scheme))
            .unwrap_or_else(|| panic!("no {scheme} address in {:?}", self.0))
            .to_owned()
    }

    /// The URL with `scheme`: `mqtt://127.0.0.1:PORT`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}{}", self.addr(scheme))
    }
}

/// Runs `command` to its end, with `stdin` as its input: (exit code, stdout, stderr).
pub fn output(mut command: Command, stdin: Option<&str>) -> (i32, String, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut input = child.stdin.take().expect("piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("run a command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
