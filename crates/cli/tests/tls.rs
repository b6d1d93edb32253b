//! `mqchat serve` over TLS as a user runs it (issue 15): `--listen-tls`/`--listen-wss` with
//! a test CA's certificate made at run time, `mqchat send --ca-file` (and `MQCHAT_CA_FILE`)
//! over `mqtts://` and `wss://`, SIGHUP serving a new certificate to new connections, one
//! clear line for a missing certificate file, and the warning for a listener on the
//! network without TLS. Waits are for printed lines, never for time to pass.

mod common;

use std::path::Path;

use common::MQCHAT;
use mqchat_server::tls::TlsFiles;
use mqchat_testkit::{Banner, Process, Stderr, TestCa, output};

/// `mqchat serve` on `data` with these TCP and WebSocket listeners (an address or "off"),
/// then `rest`.
fn serve_args<'a>(data: &'a str, tcp: &'a str, ws: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--data-dir",
        data,
        "--listen-tcp",
        tcp,
        "--listen-ws",
        ws,
    ];
    args.extend_from_slice(rest);
    args
}

/// Starts `mqchat args` (a `serve`), its stdout and stderr lines arriving on one channel.
fn serve(args: &[&str]) -> Process {
    let mut command = MQCHAT.command(args);
    command.env("MQCHAT_LOG", "info");
    Process::start("mqchat serve", command, Stderr::Lines)
}

/// Runs a command to its end: (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &Path)], stdin: Option<&str>) -> (i32, String, String) {
    let mut command = MQCHAT.command(args);
    command.envs(env.iter().copied());
    output(command, stdin)
}

fn url(banner: &str, scheme: &str) -> String {
    Banner(banner.to_owned()).url(scheme)
}

/// `mqchat send` as alice to bob; `ca` is given with `--ca-file`, or with the
/// `MQCHAT_CA_FILE` environment variable when `by_env`.
fn send(url: &str, ca: Option<&Path>, by_env: bool, text: &str) -> (i32, String, String) {
    let mut args = vec![
        "send", "--server", url, "-u", "alice", "-p", "secret-a", "bob", text,
    ];
    let mut env = Vec::new();
    if let Some(ca) = ca {
        if by_env {
            env.push(("MQCHAT_CA_FILE", ca));
        } else {
            args.extend(["--ca-file", ca.to_str().expect("utf-8")]);
        }
    }
    run(&args, &env, None)
}

#[test]
fn send_over_mqtts_and_wss_and_a_new_certificate_on_sighup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    for (user, password) in [("alice", "secret-a"), ("bob", "secret-b")] {
        let (code, _, err) = run(
            &["user", "add", user, "--password-stdin", "--data-dir", data],
            &[],
            Some(&format!("{password}\n")),
        );
        assert_eq!(code, 0, "{err}");
    }
    let first = TestCa::new("first CA").expect("CA");
    let second = TestCa::new("second CA").expect("CA");
    let first_file = dir.path().join("first.pem");
    let second_file = dir.path().join("second.pem");
    first.write(&first_file).expect("CA file");
    second.write(&second_file).expect("CA file");
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    first
        .issue(&["localhost", "127.0.0.1"])
        .expect("cert")
        .write(&files)
        .expect("write");
    // Reloads on SIGHUP only, so the reload seen below is the signal's.
    let config = dir.path().join("mqchat.toml");
    std::fs::write(&config, "[tls]\nreload_interval_secs = 0\n").expect("config");

    let server = serve(&serve_args(
        data,
        "off",
        "off",
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--listen-tls",
            "127.0.0.1:0",
            "--listen-wss",
            "127.0.0.1:0",
            "--tls-cert",
            files.cert.to_str().expect("utf-8"),
            "--tls-key",
            files.key.to_str().expect("utf-8"),
        ],
    ));
    let banner = server.line_with("mqchat listening:");
    assert!(!banner.contains("mqtt://"), "{banner}");
    let mqtts = url(&banner, "mqtts://");
    let wss = url(&banner, "wss://");

    let (code, out, err) = send(&mqtts, Some(&first_file), false, "over mqtts");
    assert_eq!((code, out.trim()), (0, "sent to bob as #1"), "{err}");
    let (code, out, err) = send(&wss, Some(&first_file), true, "over wss");
    assert_eq!((code, out.trim()), (0, "sent to bob as #2"), "{err}");
    // Without the test CA: unreachable (exit 4), in one line that says why.
    let (code, _, err) = send(&mqtts, None, false, "no CA");
    assert_eq!(code, 4, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("certificate"), "{err}");

    second
        .issue(&["localhost", "127.0.0.1"])
        .expect("cert")
        .write(&files)
        .expect("write");
    server.signal("-HUP");
    server.line_with("TLS certificate reloaded");
    let (code, out, err) = send(&mqtts, Some(&second_file), false, "after the reload");
    assert_eq!((code, out.trim()), (0, "sent to bob as #3"), "{err}");
    let (code, _, err) = send(&wss, Some(&first_file), false, "the old CA");
    assert_eq!(
        code, 4,
        "the first CA's certificate is no longer served: {err}"
    );

    // A reload from a broken key is refused, and the server goes on with what it has.
    std::fs::write(&files.key, "not a key\n").expect("write");
    server.signal("-HUP");
    server.line_with("not reloaded");
    let (code, _, err) = send(&wss, Some(&second_file), true, "still the second");
    assert_eq!(code, 0, "{err}");

    assert!(server.terminate().success(), "serve exits 0 on SIGTERM");
}

#[test]
fn a_missing_certificate_is_one_clear_line_and_plain_listeners_on_the_network_warn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("utf-8");
    let (code, out, err) = run(
        &serve_args(
            data,
            "127.0.0.1:0",
            "off",
            &[
                "--listen-tls",
                "127.0.0.1:0",
                "--tls-cert",
                missing,
                "--tls-key",
                missing,
            ],
        ),
        &[],
        None,
    );
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("TLS certificate file") && err.contains("missing.pem"),
        "{err}"
    );
    let (code, _, err) = run(
        &serve_args(data, "off", "off", &["--listen-tls", "127.0.0.1:0"]),
        &[],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("need a certificate"), "{err}");

    // Every interface, in clear: a warning.
    let server = serve(&serve_args(data, "0.0.0.0:0", "off", &[]));
    let warning = server.line_with("without TLS");
    assert!(
        warning.contains("WARN") && warning.contains("listen_tcp"),
        "{warning}"
    );
    server.line_with("mqchat listening:");
    assert!(server.terminate().success());
}
