//! The login flood (issue 15): attackers keep opening connections with wrong passwords for
//! an existing user and with unknown user ids, each attempt a fresh connection, while a
//! phone logs in with its device token every half second and a person logs in with a
//! password from another address now and then.
//!
//! Accounts: `alice` (a password; attacked), `bob` (device `phone`, token logins),
//! `carol` (a password, logging in from 127.0.0.2). Attackers come from 127.0.0.1, or
//! spread over 127.0.1.1.. with `sources`. The server answers a password it checked and
//! found wrong with CONNACK "bad user name or password" and an attempt it refused without a
//! check (the address or user waits, or its queue is full) with "not authorized", so the
//! reason codes tell how many attempts cost an argon2 hash; the server's own log line says
//! it too.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use rumqttc::NetworkOptions;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
use rumqttc::v5::mqttbytes::{self, v5};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, Incoming, MqttOptions};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::{Account, Memory, Sampler, Samples, field, log_lines, memory, mib, sorted_us};
use crate::load::Percentiles;
use crate::mqchat::Server;
use crate::process;

/// How long one attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the legitimate password login comes from.
const OTHER_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How often the server's memory is read during the flood.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const ALICE_PASSWORD: &str = "alice's real password";
const CAROL_PASSWORD: &str = "carol's real password";

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The mqchat binary.
    pub bin: PathBuf,
    /// Its durability setting.
    pub durability: String,
    /// A settings file for `mqchat serve --config`.
    pub config: Option<PathBuf>,
    /// The flood's length.
    pub duration: Duration,
    /// Attackers, each with one attempt in progress at a time.
    pub attackers: usize,
    /// Addresses the attackers come from (1: 127.0.0.1 alone).
    pub sources: usize,
    /// The device-token login's period.
    pub token_every: Duration,
    /// The password login's period (from 127.0.0.2).
    pub password_every: Duration,
    /// How long after the flood the server's memory is read again.
    pub after: Duration,
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused(ConnectReturnCode),
    /// The connection failed or timed out before a CONNACK.
    Failed,
}

/// The attackers' attempts, counted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Attempts {
    /// Attempts that ended (CONNACK, failure or timeout).
    pub made: u64,
    /// Per second of the flood.
    pub per_s: f64,
    /// Wrong passwords for `alice`.
    pub wrong_password: u64,
    /// Unknown user ids.
    pub unknown_user: u64,
    /// CONNACK "bad user name or password": the server hashed the password.
    pub checked: u64,
    /// CONNACK "not authorized": refused without a check (a waiting address or user, or a
    /// full queue).
    pub refused_unchecked: u64,
    /// Other CONNACK reason codes, by name.
    pub other_refusals: BTreeMap<String, u64>,
    /// Accepted (a wrong password let in: must be 0).
    pub accepted: u64,
    /// Connections that failed or timed out before a CONNACK.
    pub failed: u64,
    /// Refused per second.
    pub refused_per_s: f64,
    /// Time from connecting to the CONNACK of attempts refused after a check, µs.
    pub checked_us: Percentiles,
    /// The same for attempts refused without a check, µs.
    pub unchecked_us: Percentiles,
}

/// One legitimate login during the flood.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Legitimate {
    /// Seconds since the flood began.
    pub at_s: f64,
    /// Whether it was accepted.
    pub accepted: bool,
    /// The refusal or failure, if any.
    pub outcome: String,
    /// Connecting to CONNACK, ms.
    pub ms: f64,
}

/// The login flood's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginFlood {
    /// Attackers.
    pub attackers: usize,
    /// Their addresses.
    pub sources: usize,
    /// The flood's length, s.
    pub seconds: f64,
    /// mqchat's durability setting.
    pub durability: String,
    /// The settings file, if any.
    pub config: Option<String>,
    /// Load average before the run.
    pub load_before: String,
    /// The server just started, accounts in place, no login yet.
    pub fresh: Memory,
    /// After one token and one password login, then two quiet seconds (the pool's first
    /// argon2 memory allocated).
    pub idle: Memory,
    /// The largest resident set during the flood, KiB: sampled every 20 ms, or `VmHWM`
    /// at the end when it grew during the flood.
    pub peak_rss_kib: u64,
    /// At the end of the flood (`VmHWM` covers any peak between samples).
    pub end: Memory,
    /// `after_s` seconds after the flood.
    pub after: Memory,
    /// Seconds after the flood of `after`.
    pub after_s: f64,
    /// The largest RSS (KiB) and thread count sampled in each second from the flood's
    /// start to `after`: (second, KiB, threads).
    pub rss_timeline: Vec<(u64, u64, u64)>,
    /// Server CPU during the flood, s.
    pub server_cpu_s: f64,
    /// The attackers' attempts.
    pub attempts: Attempts,
    /// The device-token logins (from 127.0.0.1, rumqttc).
    pub token_logins: Vec<Legitimate>,
    /// Their latency (connecting to CONNACK), µs.
    pub token_us: Percentiles,
    /// The password logins from 127.0.0.2.
    pub password_logins: Vec<Legitimate>,
    /// The largest `failures=` of the server's "attempts from this address wait" lines, summed
    /// over the attackers' addresses: failed logins the server recorded, each one a hash
    /// (unknown users are checked against a decoy hash).
    pub logged_failures: Option<u64>,
    /// The server's lines saying an address or user waits.
    pub throttle_log_lines: usize,
}

/// Runs the login flood.
pub async fn run(plan: &Plan) -> anyhow::Result<LoginFlood> {
    let dir = tempfile::Builder::new()
        .prefix("mqchat-login-flood-")
        .tempdir()?;
    let tokens = super::add_accounts(
        dir.path(),
        &[
            Account {
                user: "alice".into(),
                password: Some(ALICE_PASSWORD.into()),
                devices: vec![],
            },
            Account {
                user: "bob".into(),
                password: None,
                devices: vec!["phone".into()],
            },
            Account {
                user: "carol".into(),
                password: Some(CAROL_PASSWORD.into()),
                devices: vec![],
            },
        ],
    )?;
    let bob_token = tokens[1][0].clone();
    let sources = attacker_sources(plan.sources)?;
    let load_before = crate::direct::load_average();
    let server = Server::start_with(
        &plan.bin,
        dir.path(),
        &plan.durability,
        plan.config.as_deref(),
    )?;
    let (pid, addr) = (server.pid(), server.addr());

    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh = memory(pid)?;
    let warm_token = token_login(addr, &bob_token).await;
    let warm_password = password_login(addr).await;
    if warm_token.0 != Outcome::Accepted || warm_password.0 != Outcome::Accepted {
        bail!(
            "the logins before the flood failed: token {:?}, password {:?}; see {}",
            warm_token.0,
            warm_password.0,
            dir.path().join("server.log").display()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = memory(pid)?;
    eprintln!(
        "login-flood: RSS {:.1} MiB fresh, {:.1} MiB idle; {} attackers from {} address(es) for {:?}",
        mib(fresh.rss_kib),
        mib(idle.rss_kib),
        plan.attackers,
        sources.len(),
        plan.duration
    );

    let sampler = Sampler::start(pid, SAMPLE_EVERY);
    let before = process::usage(pid)?;
    let start = Instant::now();
    let until = start + plan.duration;
    let tally = Arc::new(Tally::default());
    let attackers = {
        let (tally, sources, n) = (tally.clone(), sources.clone(), plan.attackers);
        super::apart("attackers", move || async move {
            let mut attackers = JoinSet::new();
            for i in 0..n {
                let source = sources[i % sources.len()];
                attackers.spawn(attacker(i, source, addr, until, tally.clone()));
            }
            while attackers.join_next().await.is_some() {}
        })?
    };
    let tokens = tokio::spawn(every(plan.token_every, start, until, move || {
        let token = bob_token.clone();
        async move { token_login(addr, &token).await }
    }));
    let passwords = tokio::spawn(every(plan.password_every, start, until, move || {
        password_login(addr)
    }));
    attackers.await.context("the attackers' thread failed")?;
    let token_logins = tokens.await?;
    let password_logins = passwords.await?;
    let elapsed = start.elapsed();
    let after_usage = process::usage(pid)?;
    let end = memory(pid)?;
    tokio::time::sleep(plan.after).await;
    let after = memory(pid)?;
    let samples = sampler.stop().await;
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    server.stop();

    let flood_samples: Vec<_> = samples.iter().filter(|(t, _)| *t <= elapsed).collect();
    let sampled_peak = flood_samples
        .iter()
        .map(|(_, m)| m.rss_kib)
        .max()
        .unwrap_or(0);
    // VmHWM only grows: past its value before the flood, it is a peak of the flood that
    // may have fallen between two samples.
    let peak_rss_kib = if end.hwm_kib > idle.hwm_kib {
        sampled_peak.max(end.hwm_kib)
    } else {
        sampled_peak
    };
    let (logged_failures, throttle_log_lines) = logged(&log, &sources);
    let token_us = Percentiles::of(&sorted_us(
        token_logins
            .iter()
            .filter(|l| l.accepted)
            .map(|l| Duration::from_secs_f64(l.ms / 1000.0)),
    ));
    Ok(LoginFlood {
        attackers: plan.attackers,
        sources: sources.len(),
        seconds: elapsed.as_secs_f64(),
        durability: plan.durability.clone(),
        config: plan.config.as_ref().map(|p| p.display().to_string()),
        load_before,
        fresh,
        idle,
        peak_rss_kib,
        end,
        after,
        after_s: plan.after.as_secs_f64(),
        rss_timeline: super::per_second_peaks(&samples),
        server_cpu_s: (after_usage.cpu - before.cpu).as_secs_f64(),
        attempts: tally.attempts(elapsed),
        token_logins,
        token_us,
        password_logins,
        logged_failures,
        throttle_log_lines,
    })
}

/// The attackers' addresses: 127.0.0.1 alone, or 127.0.1.1, 127.0.1.2, ...
fn attacker_sources(n: usize) -> anyhow::Result<Vec<Option<IpAddr>>> {
    match n {
        0 => bail!("the attackers need at least one address"),
        // rumqttc's own client, from the default address.
        1 => Ok(vec![None]),
        n if n <= 254 => Ok((1..=n)
            .map(|i| Some(IpAddr::from([127, 0, 1, i as u8])))
            .collect()),
        n => bail!("at most 254 attacker addresses, not {n}"),
    }
}

/// The attempts of one attacker, one at a time, until `until`: wrong passwords for `alice`
/// and unknown user ids, alternately.
async fn attacker(
    i: usize,
    source: Option<IpAddr>,
    addr: SocketAddr,
    until: Instant,
    tally: Arc<Tally>,
) {
    let mut n = 0u64;
    while Instant::now() < until {
        let wrong_password = n.is_multiple_of(2);
        let (client_id, user, password) = if wrong_password {
            (
                format!("alice:x{i}"),
                "alice".to_owned(),
                format!("guess {n}"),
            )
        } else {
            let user = format!("ghost{i}-{n}");
            (format!("{user}:phone"), user, "guess".to_owned())
        };
        let (outcome, took) = login_once(addr, source, &client_id, &user, &password).await;
        tally.record(wrong_password, outcome, took);
        n += 1;
    }
}

/// The attackers' counters.
#[derive(Debug, Default)]
struct Tally {
    wrong_password: AtomicU64,
    unknown_user: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
    checked: Samples<Duration>,
    unchecked: Samples<Duration>,
    other: Samples<ConnectReturnCode>,
}

impl Tally {
    fn record(&self, wrong_password: bool, outcome: Outcome, took: Duration) {
        let kind = if wrong_password {
            &self.wrong_password
        } else {
            &self.unknown_user
        };
        kind.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Accepted => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Refused(ConnectReturnCode::BadUserNamePassword) => self.checked.push(took),
            Outcome::Refused(ConnectReturnCode::NotAuthorized) => self.unchecked.push(took),
            Outcome::Refused(code) => self.other.push(code),
        }
    }

    fn attempts(&self, elapsed: Duration) -> Attempts {
        let checked = self.checked.all();
        let unchecked = self.unchecked.all();
        let mut other_refusals = BTreeMap::new();
        for code in self.other.all() {
            *other_refusals.entry(format!("{code:?}")).or_insert(0) += 1;
        }
        let wrong_password = self.wrong_password.load(Ordering::Relaxed);
        let unknown_user = self.unknown_user.load(Ordering::Relaxed);
        let made = wrong_password + unknown_user;
        let refused =
            checked.len() as u64 + unchecked.len() as u64 + other_refusals.values().sum::<u64>();
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Attempts {
            made,
            per_s: made as f64 / seconds,
            wrong_password,
            unknown_user,
            checked: checked.len() as u64,
            refused_unchecked: unchecked.len() as u64,
            other_refusals,
            accepted: self.accepted.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            refused_per_s: refused as f64 / seconds,
            checked_us: Percentiles::of(&sorted_us(checked)),
            unchecked_us: Percentiles::of(&sorted_us(unchecked)),
        }
    }
}

/// Runs `login` every `period` from `start` until `until` (one at a time: a slow login
/// delays the next), returning each login's result.
async fn every<F, Fut>(
    period: Duration,
    start: Instant,
    until: Instant,
    login: F,
) -> Vec<Legitimate>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (Outcome, Duration)>,
{
    let mut tick = tokio::time::interval_at(start.into(), period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logins = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(until.into()) => return logins,
        }
        let at = Instant::now();
        if at >= until {
            return logins;
        }
        let (outcome, took) = login().await;
        logins.push(Legitimate {
            at_s: at.duration_since(start).as_secs_f64(),
            accepted: outcome == Outcome::Accepted,
            outcome: format!("{outcome:?}"),
            ms: took.as_secs_f64() * 1000.0,
        });
    }
}

/// Bob's phone logs in with its token, from 127.0.0.1 (rumqttc).
async fn token_login(addr: SocketAddr, token: &str) -> (Outcome, Duration) {
    login_once(addr, None, "bob:phone", "bob", token).await
}

/// Carol logs in with her password from 127.0.0.2.
async fn password_login(addr: SocketAddr) -> (Outcome, Duration) {
    let from = Some(IpAddr::V4(OTHER_ADDRESS));
    login_once(addr, from, "carol:laptop", "carol", CAROL_PASSWORD).await
}

/// One login on a fresh connection, from `from` (a socket bound there, with rumqttc's MQTT
/// 5 codec) or from the default address (rumqttc's client): how it ended, and the time
/// from connecting to the CONNACK (or the failure). An accepted connection is closed at
/// once.
async fn login_once(
    addr: SocketAddr,
    from: Option<IpAddr>,
    client_id: &str,
    user: &str,
    password: &str,
) -> (Outcome, Duration) {
    let start = Instant::now();
    let outcome = match from {
        None => tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            client_login(addr, client_id, user, password),
        )
        .await
        .unwrap_or(Outcome::Failed),
        Some(from) => tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            raw_login(from, addr, client_id, user, password),
        )
        .await
        .map_or(Outcome::Failed, |r| r.unwrap_or(Outcome::Failed)),
    };
    (outcome, start.elapsed())
}

/// A login with rumqttc's client, as a device does.
async fn client_login(addr: SocketAddr, client_id: &str, user: &str, password: &str) -> Outcome {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options
        .set_credentials(user, password)
        .set_clean_start(true)
        .set_keep_alive(Duration::from_secs(60))
        // Nothing is published: a small window keeps rumqttc's per-client state small.
        .set_outgoing_inflight_upper_limit(8);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(ATTEMPT_TIMEOUT.as_secs());
    options.set_network_options(network);
    let (client, mut events) = AsyncClient::new(options, 4);
    let outcome = loop {
        match events.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => break Outcome::Accepted,
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => break Outcome::Refused(code),
            Err(_) => break Outcome::Failed,
        }
    };
    if outcome == Outcome::Accepted {
        // A polite DISCONNECT, so that the server does not wait for the connection to time
        // out; its delivery is not measured.
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    }
    outcome
}

/// A login on a socket bound to `from`: rumqttc's encoding of an MQTT 5 CONNECT (clean
/// start, keep-alive 60 s), then the CONNACK.
async fn raw_login(
    from: IpAddr,
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<Outcome> {
    let socket = match from {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket
        .bind(SocketAddr::new(from, 0))
        .with_context(|| format!("binding {from}"))?;
    socket.set_nodelay(true)?;
    let mut stream = socket.connect(addr).await?;
    let connect = v5::Connect {
        keep_alive: 60,
        client_id: client_id.to_owned(),
        clean_start: true,
        properties: None,
    };
    let mut out = BytesMut::new();
    Packet::Connect(connect, None, Some(v5::Login::new(user, password)))
        .write(&mut out, None)
        .map_err(|e| anyhow::anyhow!("encoding CONNECT: {e:?}"))?;
    stream.write_all(&out).await?;
    let mut input = BytesMut::with_capacity(256);
    loop {
        if stream.read_buf(&mut input).await? == 0 {
            bail!("closed before the CONNACK");
        }
        match Packet::read(&mut input, Some(1 << 16)) {
            Ok(Packet::ConnAck(ack)) => {
                return Ok(match ack.code {
                    ConnectReturnCode::Success => {
                        let mut bye = BytesMut::new();
                        let _ = Packet::Disconnect(v5::Disconnect::new(
                            v5::DisconnectReasonCode::NormalDisconnection,
                        ))
                        .write(&mut bye, None);
                        let _ = stream.write_all(&bye).await;
                        Outcome::Accepted
                    }
                    code => Outcome::Refused(code),
                });
            }
            Ok(other) => bail!("expected a CONNACK, got {other:?}"),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => bail!("reading the CONNACK: {e:?}"),
        }
    }
}

/// From the server's log: the failed logins it recorded for the attackers' addresses (the
/// largest `failures=` of each address's "attempts from this address wait" lines, summed),
/// and how many lines said an address or user waits.
fn logged(log: &str, sources: &[Option<IpAddr>]) -> (Option<u64>, usize) {
    let addresses: Vec<String> = sources
        .iter()
        .map(|s| s.unwrap_or(IpAddr::from([127, 0, 0, 1])).to_string())
        .collect();
    let mut most: BTreeMap<&str, u64> = BTreeMap::new();
    for line in log_lines(log, "attempts from this address wait") {
        let (Some(source), Some(failures)) = (field(line, "source"), field(line, "failures"))
        else {
            continue;
        };
        if let (true, Ok(n)) = (addresses.iter().any(|a| a == source), failures.parse()) {
            let entry = most.entry(source).or_insert(0);
            *entry = (*entry).max(n);
        }
    }
    let lines = log_lines(log, "failed logins:").count();
    ((!most.is_empty()).then(|| most.values().sum()), lines)
}

impl LoginFlood {
    /// The figures for people, with the targets.
    pub fn summary(&self) -> String {
        let a = &self.attempts;
        let ms = |us: u32| f64::from(us) / 1000.0;
        let accepted_tokens = self.token_logins.iter().filter(|l| l.accepted).count();
        let passwords: Vec<String> = self
            .password_logins
            .iter()
            .map(|l| {
                if l.accepted {
                    format!("{:.1}", l.ms)
                } else {
                    format!("{:.1} ({})", l.ms, l.outcome)
                }
            })
            .collect();
        let growth = mib(self.peak_rss_kib) - mib(self.fresh.rss_kib);
        let mut out = format!(
            "login flood: {} attackers from {} address(es), {:.1} s, load before {}\n\
             server RSS MiB: fresh {:.1}, idle {:.1} ({} threads), peak during {:.1} (VmHWM at the end {:.1}), \
             at the end {:.1}, {:.0} s after {:.1}; server CPU {:.1} s ({:.0} % of a core)\n\
             attempts: {} ({:.0}/s; {} wrong passwords, {} unknown users), refused {:.0}/s: \
             {} after a check (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms), {} without one \
             (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms), other {:?}; accepted {}; failed {}\n\
             hashes for the attackers: {} by the reason codes, {} in the server's log ({} throttle lines)\n\
             token logins: {} of {} accepted, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
             password logins from {}: {} ms\n",
            self.attackers,
            self.sources,
            self.seconds,
            self.load_before,
            mib(self.fresh.rss_kib),
            mib(self.idle.rss_kib),
            self.idle.threads,
            mib(self.peak_rss_kib),
            mib(self.end.hwm_kib),
            mib(self.end.rss_kib),
            self.after_s,
            mib(self.after.rss_kib),
            self.server_cpu_s,
            100.0 * self.server_cpu_s / self.seconds.max(1e-9),
            a.made,
            a.per_s,
            a.wrong_password,
            a.unknown_user,
            a.refused_per_s,
            a.checked,
            ms(a.checked_us.p50),
            ms(a.checked_us.p99),
            ms(a.checked_us.max),
            a.refused_unchecked,
            ms(a.unchecked_us.p50),
            ms(a.unchecked_us.p99),
            ms(a.unchecked_us.max),
            a.other_refusals,
            a.accepted,
            a.failed,
            a.checked,
            self.logged_failures
                .map_or_else(|| "nothing".to_owned(), |n| n.to_string()),
            self.throttle_log_lines,
            accepted_tokens,
            self.token_logins.len(),
            ms(self.token_us.p50),
            ms(self.token_us.p99),
            ms(self.token_us.max),
            OTHER_ADDRESS,
            passwords.join(", "),
        );
        let timeline: Vec<String> = self
            .rss_timeline
            .iter()
            .map(|(second, kib, threads)| format!("{second}:{:.1}/{threads}", mib(*kib)))
            .collect();
        out.push_str(&format!(
            "server RSS MiB / threads, largest in each second from the flood's start: {}\n",
            timeline.join(" ")
        ));
        out.push_str(&format!(
            "target: RSS within 100 MB of idle: peak {:+.1} MiB over the fresh server: {}\n\
             target: token login under 100 ms during the flood: max {:.1} ms: {}\n",
            growth,
            if growth * 1.048_576 < 100.0 {
                "met"
            } else {
                "NOT met"
            },
            ms(self.token_us.max),
            if accepted_tokens == self.token_logins.len() && self.token_us.max < 100_000 {
                "met"
            } else {
                "NOT met"
            },
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacker_addresses() {
        assert_eq!(attacker_sources(1).ok(), Some(vec![None]));
        let three = attacker_sources(3).unwrap_or_default();
        assert_eq!(
            three,
            [
                Some(IpAddr::from([127, 0, 1, 1])),
                Some(IpAddr::from([127, 0, 1, 2])),
                Some(IpAddr::from([127, 0, 1, 3]))
            ]
        );
        assert!(attacker_sources(0).is_err());
        assert!(attacker_sources(255).is_err());
    }

    #[test]
    fn failures_from_the_log() {
        let log = "\
x WARN mqchat_hub::throttle: failed logins: attempts from this address wait source=127.0.0.1 failures=10 refused_meanwhile=0 wait_ms=1000
x WARN mqchat_hub::throttle: failed logins: password attempts on this user wait user=alice failures=5 refused_meanwhile=0 wait_ms=1000
x WARN mqchat_hub::throttle: failed logins: attempts from this address wait source=127.0.0.1 failures=26 refused_meanwhile=900 wait_ms=60000
x WARN mqchat_hub::throttle: failed logins: attempts from this address wait source=127.0.0.9 failures=99 refused_meanwhile=0 wait_ms=1000
";
        assert_eq!(logged(log, &[None]), (Some(26), 4));
        assert_eq!(logged("", &[None]), (None, 0));
    }
}
