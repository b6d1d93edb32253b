//! `mqchat-bench`: load generators for mqchat and its peers (a plain MQTT broker, XMPP
//! servers), run side by side on one machine. Benchmarks, not tests: run on demand, results
//! in docs/BENCHMARKS.md (`scripts/bench compare` runs everything and writes it).
//!
//! Every server runs as its own process, so that its CPU time is read from /proc alone; the
//! load generator is this one process, with many simulated devices on tokio.

mod direct;
mod load;
mod mqchat;
mod mqtt;
mod plain;
mod process;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(
    name = "mqchat-bench",
    about = "mqchat's benchmarks and the comparison with its peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the workloads against `mqchat serve`.
    Mqchat(MqchatArgs),
}

#[derive(Args, Debug, Clone)]
struct DirectArgs {
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
    /// Fixed offered rates (messages/s, total), besides half the saturation rate.
    #[arg(long = "rate", default_value = "3000")]
    rates: Vec<f64>,
    /// Length of the wire-bytes run, seconds.
    #[arg(long, default_value_t = 3)]
    wire_seconds: u64,
}

impl DirectArgs {
    fn plan(&self) -> direct::Plan {
        direct::Plan {
            warmup: Duration::from_secs(self.warmup),
            duration: Duration::from_secs(self.duration),
            window: self.window,
            rates: self.rates.clone(),
            drain: Duration::from_secs(180),
        }
    }
}

#[derive(Args, Debug)]
struct MqchatArgs {
    /// The mqchat binary.
    #[arg(long, default_value = "target/release/mqchat")]
    bin: PathBuf,
    /// The server's durability mode (`full`: every commit synced; `normal`).
    #[arg(long, default_value = "full")]
    durability: String,
    #[command(flatten)]
    direct: DirectArgs,
}

async fn run_mqchat(args: MqchatArgs) -> anyhow::Result<()> {
    mqchat::check_binary(&args.bin)?;
    let dir = tempfile::Builder::new().prefix("mqchat-bench-").tempdir()?;
    let pairs = args.direct.pairs;
    let users: Vec<String> = (0..pairs)
        .flat_map(|i| {
            let (a, b) = mqchat::pair_users(i);
            [a, b]
        })
        .collect();
    let tokens = mqchat::add_devices(dir.path(), &users)?;
    let server = mqchat::Server::start(&args.bin, dir.path(), &args.durability)?;
    let meter = load::Meter::new(pairs);
    let mut tasks = JoinSet::new();
    mqchat::start_pairs(server.addr(), &tokens, &meter, &mut tasks).await?;
    let plan = args.direct.plan();
    let system = format!("mqchat (durability {})", args.durability);
    let runs = direct::sequence(&system, &meter, server.pid(), &plan, true).await?;
    let wire = direct::wire_bytes(
        &meter,
        server.addr().port(),
        Duration::from_secs(args.direct.wire_seconds),
        true,
    )
    .await?;
    eprintln!("{system}: wire bytes per message + receipt: {wire:?}");
    let _ = runs;
    tasks.abort_all();
    drop(Arc::clone(&meter));
    server.stop();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Mqchat(args) => run_mqchat(args).await,
        }
    })
}
