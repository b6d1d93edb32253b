//! `mqchat-bench`: load generators for mqchat and its peers (a plain MQTT broker, XMPP
//! servers), run side by side on one machine. Benchmarks, not tests: run on demand, results
//! in docs/BENCHMARKS.md (`scripts/bench compare` installs the peers, builds, runs
//! everything and writes it).
//!
//! Every server runs as its own process, so that its CPU time is read from /proc alone; the
//! load generator is this one process, with many simulated devices on tokio.

mod compare;
mod direct;
mod fanout;
mod flood;
mod load;
mod mqchat;
mod mqtt;
mod peer;
mod plain;
mod process;
mod profile;
mod report;
mod sessions;
mod wire;
mod xmpp;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::compare::Setup;
use crate::report::Results;

#[derive(Parser, Debug)]
#[command(
    name = "mqchat-bench",
    about = "mqchat's benchmarks and the comparison with a plain broker and XMPP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Workloads 1 and 5 (one-to-one messages with receipts; wire bytes) on `mqchat serve`.
    Mqchat(Common),
    /// Workloads 1 and 5 on a peer, started and stopped by the harness.
    Peer {
        /// Which peer.
        #[arg(value_enum)]
        kind: peer::Kind,
        #[command(flatten)]
        common: Common,
    },
    /// Workload 3: idle connected devices, up to `--connections`.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Devices to connect.
        #[arg(long, default_value_t = 20_000)]
        connections: usize,
        /// Connect them to the embedded broker alone instead (no hub, no store).
        #[arg(long)]
        rmqtt_alone: bool,
    },
    /// Workload 4: a reconnect storm of `--devices` devices that sync.
    Storm {
        #[command(flatten)]
        common: Common,
        /// Devices in the storm.
        #[arg(long, default_value_t = 5_000)]
        devices: usize,
    },
    /// Workload 2: group fan-out (one message to a big group; sustained to a small one).
    /// Prints the figures; with the saved raw figures of a comparison in `--json`, adds
    /// them there and renders `--out` again.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        groups: Groups,
        /// The raw figures to add these to (created if missing).
        #[arg(long, default_value = "target/bench/results.json")]
        json: PathBuf,
        /// The results file to update (only the generated part is replaced).
        #[arg(long, default_value = "docs/BENCHMARKS.md")]
        out: PathBuf,
        /// Only print the figures; touch no file.
        #[arg(long)]
        print_only: bool,
    },
    /// Everything: mqchat and every installed peer, workloads 1 to 5; writes the
    /// results into `--out` (and the raw figures into `--json`).
    Compare {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        groups: Groups,
        /// Devices for workload 3 (0 skips it).
        #[arg(long, default_value_t = 20_000)]
        connections: usize,
        /// Devices for workload 4 (0 skips it).
        #[arg(long, default_value_t = 5_000)]
        devices: usize,
        /// Peers to run (default: every installed one).
        #[arg(long = "peer", value_enum)]
        peers: Vec<peer::Kind>,
        /// The results file to update (only the generated part is replaced).
        #[arg(long, default_value = "docs/BENCHMARKS.md")]
        out: PathBuf,
        /// Where to keep the raw figures.
        #[arg(long, default_value = "target/bench/results.json")]
        json: PathBuf,
    },
    /// Where mqchat's server spends its time: perf during a fixed-rate run.
    Profile {
        #[command(flatten)]
        common: Common,
        /// Offered rate, messages/s.
        #[arg(long = "at", default_value_t = 2000.0)]
        at: f64,
        /// Seconds to profile.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Issue 15's login flood: attackers open connections with wrong passwords and unknown
    /// users while a phone logs in with its token and a person with a password from another
    /// address; the server's memory before, during and after. Prints the figures (JSON on
    /// stdout, a summary with the targets on stderr).
    LoginFlood {
        #[command(flatten)]
        server: FloodServer,
        /// The flood's length, seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Attackers, each with one attempt in progress at a time.
        #[arg(long, default_value_t = 50)]
        attackers: usize,
        /// Addresses the attackers come from: 1 is 127.0.0.1 (the phone's address too);
        /// more spreads them over 127.0.1.1, 127.0.1.2, ...
        #[arg(long, default_value_t = 1)]
        sources: usize,
        /// Milliseconds between the phone's token logins.
        #[arg(long, default_value_t = 500)]
        token_every_ms: u64,
        /// Milliseconds between the password logins from 127.0.0.2.
        #[arg(long, default_value_t = 3000)]
        password_every_ms: u64,
        /// Seconds after the flood at which the server's memory is read again.
        #[arg(long, default_value_t = 5)]
        after: u64,
    },
    /// Issue 15's message flood: one device sends as fast as it can while a bystander pair
    /// talks; the bystanders' latency idle and during the flood, what is lost, what the
    /// flood got through. Prints the figures (JSON on stdout, a summary on stderr).
    MessageFlood {
        #[command(flatten)]
        server: FloodServer,
        /// The idle window and the flood, each, seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Bystander traffic before the idle window, seconds.
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        /// Bystander traffic measured after the flood, seconds.
        #[arg(long, default_value_t = 5)]
        after: u64,
        /// Bystander messages per second, each way.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// The flooding client's in-flight window (what it asks for).
        #[arg(long, default_value_t = 1000)]
        window: u16,
    },
    /// Renders saved raw figures into the results file again.
    Report {
        /// The raw figures.
        #[arg(long, default_value = "target/bench/results.json")]
        json: PathBuf,
        /// The results file to update.
        #[arg(long, default_value = "docs/BENCHMARKS.md")]
        out: PathBuf,
    },
    /// The embedded broker alone (the `rmqtt` peer's server process).
    #[command(hide = true)]
    RmqttAlone,
}

/// The server of a flood benchmark.
#[derive(Args, Debug, Clone)]
struct FloodServer {
    /// The mqchat binary.
    #[arg(long, default_value = "target/release/mqchat")]
    bin: PathBuf,
    /// mqchat's durability mode: `full` (each commit synced to disk) or `normal`.
    #[arg(long, default_value = "full")]
    durability: String,
    /// A settings file for `mqchat serve --config` (e.g. other `[limits]`); without it,
    /// the defaults a user gets.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Workload 2's groups.
#[derive(Args, Debug, Clone)]
struct Groups {
    /// Members of the big group, all online (0 skips workload 2 in a comparison).
    #[arg(long, default_value_t = 1000)]
    group_members: usize,
    /// One-message rounds to the big group.
    #[arg(long, default_value_t = 10)]
    group_rounds: usize,
    /// Members of the group of the sustained run.
    #[arg(long, default_value_t = 100)]
    small_group_members: usize,
}

impl Groups {
    fn plan(&self, common: &Common) -> fanout::Plan {
        fanout::Plan {
            members: self.group_members,
            rounds: self.group_rounds,
            small_members: self.small_group_members,
            window: common.window,
            warmup: Duration::from_secs(common.warmup),
            duration: Duration::from_secs(common.duration),
        }
    }
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// The mqchat binary.
    #[arg(long, default_value = "target/release/mqchat")]
    bin: PathBuf,
    /// mqchat's durability mode: `full` (each commit synced to disk) or `normal`.
    #[arg(long, default_value = "full")]
    durability: String,
    /// User pairs (each a sender and a recipient device).
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// Warm-up before each measured window, seconds.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Each measured window, seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Messages in flight per pair at saturation.
    #[arg(long, default_value_t = 16)]
    window: u32,
    /// Fixed offered rates (messages/s in total), besides half the saturation rate.
    #[arg(long = "rate", default_value = "3000")]
    rates: Vec<f64>,
    /// Length of the wire-bytes run, seconds.
    #[arg(long, default_value_t = 3)]
    wire_seconds: u64,
    /// Print deliveries, latency and server CPU for every second of every run (diagnosis).
    #[arg(long)]
    timeline: bool,
}

impl Common {
    fn setup(&self) -> Setup {
        Setup {
            bin: self.bin.clone(),
            durability: self.durability.clone(),
            pairs: self.pairs,
            plan: direct::Plan {
                warmup: Duration::from_secs(self.warmup),
                duration: Duration::from_secs(self.duration),
                window: self.window,
                rates: self.rates.clone(),
                drain: Duration::from_secs(300),
                timeline: self.timeline,
            },
            wire: Duration::from_secs(self.wire_seconds),
        }
    }

    fn results(&self) -> Results {
        Results {
            date: utc_now(),
            command: std::env::var("MQCHAT_BENCH_COMMAND").unwrap_or_else(|_| {
                std::iter::once("mqchat-bench".to_owned())
                    .chain(std::env::args().skip(1))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            machine: report::Machine::read(),
            durability: self.durability.clone(),
            pairs: self.pairs,
            window: self.window,
            warmup_s: self.warmup,
            duration_s: self.duration,
            rates: self.rates.clone(),
            load_before: direct::load_average(),
            ..Results::default()
        }
    }
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Mqchat(common) => print_json(&compare::mqchat_direct(&common.setup()).await?),
        Command::Peer { kind, common } => {
            print_json(&compare::peer_direct(kind, &common.setup()).await?)
        }
        Command::Idle {
            common,
            connections,
            rmqtt_alone,
        } => {
            let limit = process::raise_nofile(connections as u64 * 2 + 10_000);
            let cap = compare::connection_cap(limit);
            if connections > cap {
                eprintln!(
                    "the open-file limit ({limit}) allows {cap} connections, not {connections}"
                );
            }
            let connections = connections.min(cap);
            let steps = compare::idle_steps(connections);
            let result = sessions::idle(
                &common.bin,
                &common.durability,
                connections,
                &steps,
                rmqtt_alone,
            )
            .await?;
            print_json(&result)
        }
        Command::Storm { common, devices } => {
            process::raise_nofile(devices as u64 * 2 + 10_000);
            print_json(&sessions::storm(&common.bin, &common.durability, devices).await?)
        }
        Command::Fanout {
            common,
            groups,
            json,
            out,
            print_only,
        } => {
            process::raise_nofile(groups.group_members as u64 * 2 + 10_000);
            let mut figures =
                fanout::fanout(&common.bin, &common.durability, &groups.plan(&common)).await?;
            figures.command = common.results().command;
            print_json(&figures)?;
            if print_only {
                return Ok(());
            }
            let mut results: Results = match std::fs::read_to_string(&json) {
                Ok(text) => serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", json.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => common.results(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", json.display())),
            };
            results.fanout = Some(figures);
            if let Some(dir) = json.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&json, serde_json::to_string_pretty(&results)?)
                .with_context(|| format!("writing {}", json.display()))?;
            report::write_into(&out, &results)?;
            eprintln!(
                "raw figures in {}, results in {}",
                json.display(),
                out.display()
            );
            Ok(())
        }
        Command::Compare {
            common,
            groups,
            connections,
            devices,
            peers,
            out,
            json,
        } => {
            let limit = process::raise_nofile(connections.max(devices) as u64 * 2 + 10_000);
            let mut results = common.results();
            let cap = compare::connection_cap(limit);
            if connections > cap {
                results.notes.push(format!(
                    "The open-file limit of this machine is {limit} per process and cannot be \
                     raised here (no CAP_SYS_RESOURCE): one server process can hold at most \
                     about {cap} connections, so workload 3 stops there instead of at \
                     {connections}."
                ));
            }
            let connections = connections.min(cap);
            let devices = devices.min(cap);
            let peers: Vec<peer::Kind> = if peers.is_empty() {
                [
                    peer::Kind::Mosquitto,
                    peer::Kind::Rmqtt,
                    peer::Kind::Prosody,
                    peer::Kind::Ejabberd,
                ]
                .into_iter()
                .filter(|&k| {
                    let ok = compare::installed(k);
                    if !ok {
                        results
                            .notes
                            .push(format!("{k:?} is not installed: not measured"));
                    }
                    ok
                })
                .collect()
            } else {
                peers
            };
            let plan = groups.plan(&common);
            let fanout = (groups.group_members > 0).then_some(&plan);
            let outcome = compare::compare(
                &common.setup(),
                &peers,
                connections,
                devices,
                fanout,
                &mut results,
            )
            .await;
            if let Err(e) = &outcome {
                results.notes.push(format!("the comparison stopped: {e:#}"));
            }
            if let Some(dir) = json.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&json, serde_json::to_string_pretty(&results)?)
                .with_context(|| format!("writing {}", json.display()))?;
            report::write_into(&out, &results)?;
            println!("{}", results.markdown());
            eprintln!(
                "raw figures in {}, results in {}",
                json.display(),
                out.display()
            );
            outcome
        }
        Command::Report { json, out } => {
            let text = std::fs::read_to_string(&json)
                .with_context(|| format!("reading {}", json.display()))?;
            let results: Results = serde_json::from_str(&text)?;
            report::write_into(&out, &results)?;
            println!("{}", results.markdown());
            Ok(())
        }
        Command::Profile {
            common,
            at,
            seconds,
        } => print_json(&profile::profile(&common.setup(), at, seconds).await?),
        Command::LoginFlood {
            server,
            seconds,
            attackers,
            sources,
            token_every_ms,
            password_every_ms,
            after,
        } => {
            mqchat::check_binary(&server.bin)?;
            let figures = flood::login::run(&flood::login::Plan {
                bin: server.bin,
                durability: server.durability,
                config: server.config,
                duration: Duration::from_secs(seconds),
                attackers,
                sources,
                token_every: Duration::from_millis(token_every_ms),
                password_every: Duration::from_millis(password_every_ms),
                after: Duration::from_secs(after),
            })
            .await?;
            print_json(&figures)?;
            eprint!("{}", figures.summary());
            Ok(())
        }
        Command::MessageFlood {
            server,
            seconds,
            warmup,
            after,
            rate,
            window,
        } => {
            mqchat::check_binary(&server.bin)?;
            let figures = flood::message::run(&flood::message::Plan {
                bin: server.bin,
                durability: server.durability,
                config: server.config,
                warmup: Duration::from_secs(warmup),
                duration: Duration::from_secs(seconds),
                after: Duration::from_secs(after),
                rate,
                window,
                drain: Duration::from_secs(60),
            })
            .await?;
            print_json(&figures)?;
            eprint!("{}", figures.summary());
            Ok(())
        }
        Command::RmqttAlone => peer::run_rmqtt_alone().await,
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Stopping on a signal drops the running workload, and with it the guards of the
        // servers it started, which stop them: no server outlives an interrupted run.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::select! {
            r = run(cli.command) => r,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted (SIGINT)"),
            _ = term.recv() => anyhow::bail!("interrupted (SIGTERM)"),
            _ = hangup.recv() => anyhow::bail!("interrupted (SIGHUP)"),
        }
    })
}
