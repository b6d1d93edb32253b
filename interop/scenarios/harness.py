"""The scenario harness: a real `mqchat serve` on free ports with its own data directory,
and the three kinds of clients that talk through it.

- Python devices: mqchat_py.Device, in this process.
- Node devices: interop/node/agent.js, one process each, driven by JSON lines.
- The Rust side: the `mqchat` command line (`listen --json` as a process, one-shot commands).

Everything that arrives is waited for with a timeout (EventLog), never slept for.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mqchat_py import Device
from mqchat_py.waiting import EventLog

REPO = Path(__file__).resolve().parents[2]
MQCHAT = Path(os.environ.get("MQCHAT_BIN", REPO / "target" / "debug" / "mqchat"))
NODE_AGENT = REPO / "interop" / "node" / "agent.js"
TIMEOUT = 15.0
LISTENING = re.compile(r"mqchat listening: (.*) root=(\S+) data=")

ABSENT = object()
"""In an expected JSON object: this key must not be there."""


def matches(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether `actual` has every key of `expected` with that value (ABSENT: not there)."""
    return all(
        (key not in actual) if value is ABSENT else actual.get(key, ABSENT) == value for key, value in expected.items()
    )


def stamped(obj: dict[str, Any], key: str = "ts") -> dict[str, Any]:
    """`obj` without its time `key`, after checking that time is within the last minute."""
    rest = dict(obj)
    ts = rest.pop(key, None)
    now = time.time() * 1000
    assert isinstance(ts, int) and now - 60_000 < ts <= now + 1000, f"{key} {ts!r} is not a recent time in {obj}"
    return rest


def password_of(user: str) -> str:
    return f"{user}-secret"


def _read_lines(stream: IO[str], log: EventLog[str]) -> None:
    for line in stream:
        log.append(line.rstrip("\n"))


def _reader(process: subprocess.Popen[str]) -> EventLog[str]:
    """Collects a process's standard output, line by line, on a thread."""
    log: EventLog[str] = EventLog()
    assert process.stdout is not None
    threading.Thread(target=_read_lines, args=(process.stdout, log), daemon=True).start()
    return log


class Server:
    """`mqchat serve` on 127.0.0.1 with free ports (read from its one stdout line)."""

    def __init__(self, data_dir: Path, *extra_args: str) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.log_path = data_dir.parent / "serve.log"
        self.process: subprocess.Popen[str] | None = None
        self.tcp_url = self.ws_url = self.tls_url = self.wss_url = ""

    def add_user(self, name: str) -> None:
        subprocess.run(
            [MQCHAT, "user", "add", name, "--password-stdin", "--data-dir", self.data_dir],
            input=password_of(name) + "\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
        )

    def start(self) -> None:
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    MQCHAT,
                    "serve",
                    "--data-dir",
                    self.data_dir,
                    "--listen-tcp",
                    "127.0.0.1:0",
                    "--listen-ws",
                    "127.0.0.1:0",
                    *self.extra_args,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        line = _reader(self.process).wait_for(lambda line: LISTENING.match(line) is not None, TIMEOUT, "listening line")
        listening = LISTENING.match(line)
        assert listening is not None
        urls = {url.split("://")[0]: url for url in listening[1].split()}
        self.tcp_url, self.ws_url = urls.get("mqtt", ""), urls.get("ws", "")
        self.tls_url, self.wss_url = urls.get("mqtts", ""), urls.get("wss", "")

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"mqchat serve did not stop within {TIMEOUT} s on SIGTERM") from None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class RustCli:
    """The `mqchat` command line as `user` (device `cli-once` for one-shot commands)."""

    def __init__(self, server: Server, user: str) -> None:
        self.server, self.user = server, user

    def args(self, command: str, *rest: str) -> list[Any]:
        """`command` may have several words (`group accept`)."""
        return [
            MQCHAT,
            *command.split(),
            "--json",
            "--server",
            self.server.tcp_url,
            "-u",
            self.user,
            "-p",
            password_of(self.user),
            *rest,
        ]

    def run(self, command: str, *rest: str) -> list[dict[str, Any]]:
        """Runs a one-shot command; returns its JSON lines."""
        done = subprocess.run(self.args(command, *rest), text=True, capture_output=True, timeout=TIMEOUT)
        assert done.returncode == 0, f"mqchat {command} {rest}: exit {done.returncode}: {done.stderr}"
        return [json.loads(line) for line in done.stdout.splitlines()]


class RustListener:
    """`mqchat listen --json`: the Rust SDK's events, one JSON object per line."""

    def __init__(self, cli: RustCli, *rest: str) -> None:
        self.process = subprocess.Popen(
            cli.args("listen", *rest), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.lines = _reader(self.process)
        self.wait({"event": "connected"})

    def wait(self, expected: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        line = self.lines.wait_for(lambda line: matches(json.loads(line), expected), timeout, f"listen line {expected}")
        return json.loads(line)

    def close(self) -> None:
        """Interrupts it (as Ctrl-C) and waits for it to leave cleanly."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(TIMEOUT) == 0

    def kill(self) -> None:
        """Drops the connection abruptly (no DISCONNECT: the broker sends the will)."""
        self.process.kill()
        self.process.wait(TIMEOUT)


class NodeFailure(Exception):
    """A command of the Node agent failed; `code` is the hub's error code, if it refused."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


class NodeDevice:
    """A device in Node (interop/node/agent.js): commands in, events out, as JSON lines."""

    def __init__(self, server_url: str, user: str, device: str, mqtt_version: int, password: str | None = None) -> None:
        self.user, self.device = user, device
        self.process = subprocess.Popen(
            [
                "node",
                NODE_AGENT,
                "--server",
                server_url,
                "--user",
                user,
                "--device",
                device,
                "--password",
                password or password_of(user),
                "--mqtt",
                str(mqtt_version),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines = _reader(self.process)
        self._next = 0
        first = json.loads(self.lines.wait_for(lambda _: True, TIMEOUT, "Node agent start"))
        if first.get("event") == "failed":
            self.process.wait(TIMEOUT)
            raise ConnectionRefusedError(first["error"])
        assert first.get("event") == "connected", first
        self.session_present: bool = first["session-present"]

    def call(self, cmd: str, **args: Any) -> Any:
        """Runs a command and returns its result; raises NodeFailure if it failed."""
        self._next += 1
        n = self._next
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"n": n, "cmd": cmd, "args": args}) + "\n")
        self.process.stdin.flush()
        reply = json.loads(
            self.lines.wait_for(lambda line: json.loads(line).get("n") == n, TIMEOUT, f"answer to {cmd}")
        )
        if not reply["ok"]:
            raise NodeFailure(reply["error"], reply["code"])
        return reply["result"]

    def received(self) -> list[dict[str, Any]]:
        return [e for e in map(json.loads, self.lines.snapshot()) if e.get("event") == "received"]

    def wait(self, kind: str, expected: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        """The first packet (JSON rendering) received on `kind` topics that matches `expected`."""

        def match(line: str) -> bool:
            e = json.loads(line)
            return (
                e.get("event") == "received"
                and e["kind"] == kind
                and e["packet"] is not None
                and matches(e["packet"], expected)
            )

        return json.loads(self.lines.wait_for(match, timeout, f"{kind} packet {expected}"))["packet"]

    def close(self) -> None:
        """Ends its input: the agent finishes its commands and exits."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(TIMEOUT)

    def kill(self) -> None:
        """Drops the connection abruptly (no DISCONNECT: the broker sends the will)."""
        self.process.kill()
        self.process.wait(TIMEOUT)


@dataclass
class World:
    """One scenario's server and clients; `close` stops them all and returns the server's
    exit code."""

    server: Server

    def __post_init__(self) -> None:
        self._cleanups: list[Callable[[], None]] = []

    def users(self, *names: str) -> None:
        for name in names:
            self.server.add_user(name)

    def python(
        self,
        user: str,
        device: str = "py",
        mqtt_version: int = 5,
        connect: bool = True,
        url: str | None = None,
        ca_file: str | None = None,
    ) -> Device:
        d = Device(
            url or self.server.tcp_url, user, device, password_of(user), mqtt_version=mqtt_version, ca_file=ca_file
        )
        if connect:
            d.connect()
        self._cleanups.append(lambda: d.connected and d.disconnect())
        return d

    def node(self, user: str, device: str = "node", mqtt_version: int = 4, websocket: bool = False) -> NodeDevice:
        d = NodeDevice(self.server.ws_url if websocket else self.server.tcp_url, user, device, mqtt_version)
        self._cleanups.append(lambda: d.process.poll() is None and d.kill())
        return d

    def rust(self, user: str) -> RustCli:
        return RustCli(self.server, user)

    def rust_listen(self, user: str, *rest: str) -> RustListener:
        listener = RustListener(self.rust(user), *rest)
        self._cleanups.append(lambda: listener.process.poll() is None and listener.kill())
        return listener

    def close(self) -> int:
        for cleanup in reversed(self._cleanups):
            cleanup()
        return self.server.stop()
