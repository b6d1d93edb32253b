//! The login flood of the security suite (issue 15), alone in its test binary: it measures
//! this process's memory, which holds the server, so no other test may run beside it.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{attempt, raw_connect, server_with};
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;

/// The resident set size of this process (the server runs in it), in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_failed_logins_stays_within_bounds_and_others_still_log_in() {
    let server = server_with(|_| {}).await;
    let tokens: Vec<(String, String)> = (0..4)
        .map(|i| {
            let device = format!("phone{i}");
            let token = server.add_device_token("bob", &device).expect("token");
            (device, token)
        })
        .collect();
    // Warm up: the first hash allocates the pool's memory once.
    assert_eq!(attempt(&server, "alice", "phone", "pw").await, Ok(()));
    let before = rss_mib();
    let checks_before = server.password_checks();
    let until = Instant::now() + Duration::from_secs(4);
    let mut attackers = Vec::new();
    // The attackers are hand-made MQTT 3.1.1 clients: this process's RSS is the server's
    // plus theirs, and theirs must stay small (the benchmark runs the server apart).
    let addr = server.tcp_addr();
    let local = IpAddr::from([127, 0, 0, 1]);
    for i in 0..50 {
        attackers.push(tokio::spawn(async move {
            let mut attempts = 0u32;
            let unknown = format!("nobody{i}");
            while Instant::now() < until {
                for user in ["alice", unknown.as_str()] {
                    let code = raw_connect(local, addr, user, &format!("d{i}"), "guess").await;
                    assert_ne!(code, 0, "a wrong password was accepted");
                    attempts += 1;
                }
            }
            attempts
        }));
    }
    let mut peak = before;
    let mut token_logins = 0;
    let mut password_login_elsewhere = None;
    // Phones log in with their device tokens, one every 100 ms, and a person with a
    // password from another address, during the flood.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < until {
        pace.tick().await;
        let (device, token) = &tokens[token_logins % tokens.len()];
        let login = attempt(&server, "bob", device, token).await;
        assert_eq!(
            login,
            Ok(()),
            "token login during the flood, after {token_logins}"
        );
        token_logins += 1;
        if password_login_elsewhere.is_none() {
            let other = IpAddr::from([127, 0, 0, 2]);
            password_login_elsewhere =
                Some(raw_connect(other, server.tcp_addr(), "carol", "laptop", "pw").await);
        }
        peak = peak.max(rss_mib());
    }
    let mut attempts = 0;
    for attacker in attackers {
        attempts += attacker.await.expect("attacker");
    }
    peak = peak.max(rss_mib());
    let checks = server.password_checks() - checks_before;
    assert!(
        token_logins >= 2,
        "token logins during the flood: {token_logins}"
    );
    assert_eq!(
        password_login_elsewhere,
        Some(0),
        "accepted from another address"
    );
    assert!(
        checks * 4 < u64::from(attempts),
        "most attempts are refused without a check once the address waits: {checks} of {attempts} checked"
    );
    assert!(
        peak < before + 150,
        "RSS {before} MiB before the flood, {peak} MiB at its peak; {checks} checks of {attempts}; {}",
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Threads"))
            .unwrap_or_default()
    );
    // After the flood the address waits, but a device token does not.
    assert_eq!(
        attempt(&server, "bob", "phone0", &tokens[0].1).await,
        Ok(())
    );
    let checks = server.password_checks();
    assert_eq!(
        attempt(&server, "alice", "phone", "pw").await,
        Err(ConnectReturnCode::NotAuthorized),
        "the address still waits, whatever the password"
    );
    assert_eq!(server.password_checks(), checks, "refused without a check");
    server.stop().await;
}
