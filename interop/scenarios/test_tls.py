"""MQTT over TLS (spec section 16) with a client nobody here wrote: Eclipse Paho with
`tls_set(ca_certs=...)` against `mqchat serve --listen-tls`, chatting with the Rust command
line over `mqtts://`; a CA it does not trust is refused. The certificates are made at run
time with the `openssl` command."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import TIMEOUT, Server, World, stamped
from mqchat_py import Device, packet_to_json


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=TIMEOUT)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (P-256): its certificate and key files."""
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", f"/CN={name}", "-keyout", key, "-out", cert)
    return cert, key


def make_server_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 signed by `ca`: its files."""
    cert, key, csr = directory / "server.pem", directory / "server-key.pem", directory / "server.csr"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-days", "2", "-extfile", extensions, "-out", cert)
    return cert, key


@pytest.fixture
def tls_world(tmp_path: Path) -> Iterator[tuple[World, Path, Path]]:
    """A server with a TLS listener; the CA file its certificate chains to, and another."""
    ca = make_ca(tmp_path, "ca")
    stranger = make_ca(tmp_path, "stranger")
    cert, key = make_server_cert(tmp_path, ca)
    server = Server(tmp_path / "data", "--listen-tls", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key))
    server.start()
    world = World(server)
    yield world, ca[0], stranger[0]
    code = world.close()
    assert code == 0, f"mqchat serve exited with {code}; its log ends with:\n{server.log_tail()}"


def test_paho_over_tls_with_the_rust_cli(tls_world: tuple[World, Path, Path]) -> None:
    world, ca_file, stranger_file = tls_world
    world.users("pia", "rust")
    assert world.server.tls_url.startswith("mqtts://127.0.0.1:")
    pia = world.python("pia", url=world.server.tls_url, ca_file=str(ca_file))

    rust = world.rust("rust")

    def over_tls(command: str, *rest: str) -> list[dict[str, object]]:
        args = rust.args(command, *rest, "--ca-file", str(ca_file))
        args[args.index("--server") + 1] = world.server.tls_url
        done = subprocess.run(args, text=True, capture_output=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    over_tls("send", "pia", "over TLS")
    got = packet_to_json(pia.wait_for("durable", "message", seq=1))
    assert stamped(got) == {"type": "message", "conv": "rust", "seq": 1, "text": "over TLS"}

    sent = pia.send_message("rust", "and back")
    pia.wait_sent(sent)
    history = over_tls("history", "pia")
    assert [line.get("text") for line in history] == ["over TLS", "and back"]

    stranger = Device(world.server.tls_url, "pia", "other", "x", ca_file=str(stranger_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.connect()
