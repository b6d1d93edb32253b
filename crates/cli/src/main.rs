//! `mqchat`: run the server, administer users and devices, and chat from the terminal.
//!
//! Errors are one line on stderr and a non-zero exit code: 1 for most failures, 2 for bad
//! usage, 3 for refused credentials, 4 for an unreachable server, 5 for a request the server
//! refused.

mod admin;
mod broker_config;
mod call;
mod chat;
mod client;
mod group;
mod hub;
mod output;
mod push;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A lightweight chat server and client on MQTT.
#[derive(Parser, Debug)]
#[command(name = "mqchat", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (e.g. `info`, `debug`, `mqchat_hub=debug`); RUST_LOG is used when absent.
    #[arg(long, global = true, env = "MQCHAT_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: embedded MQTT broker, hub and store.
    Serve(serve::ServeArgs),
    /// Run the hub alone against an external MQTT broker (see docs/BROKERS.md).
    Hub(hub::HubArgs),
    /// Write an external broker's configuration from the store (users, ACL, listener).
    BrokerConfig(broker_config::BrokerConfigArgs),
    /// Manage user accounts (works on the data directory; the server may be running).
    User {
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        command: admin::UserCommand,
    },
    /// Manage a user's devices and their tokens.
    Device {
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        command: admin::DeviceCommand,
    },
    /// Repair the store after a loss (works on the data directory; stop the server first).
    Store {
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        command: admin::StoreCommand,
    },
    /// Send a message.
    Send(client::SendArgs),
    /// Print events as they arrive (messages, receipts, typing, presence...).
    Listen(client::ListenArgs),
    /// Show a conversation's history from the server.
    History(client::HistoryArgs),
    /// List your conversations with their unread counts.
    Conversations(client::ConversationsArgs),
    /// Show contacts' presence (set your own with `listen --presence` or in `chat`).
    Presence(client::PresenceArgs),
    /// Set your profile.
    Profile(client::ProfileArgs),
    /// List your devices; revoke a lost one with --revoke.
    Devices(client::DevicesArgs),
    /// Send, accept, decline, cancel or remove a contact request.
    Contact(client::ContactArgs),
    /// Call someone (a user, or a sip: address through the server's gateway) and follow the call.
    Call(call::CallArgs),
    /// Chat interactively with someone (or in a #group).
    Chat(chat::ChatArgs),
    /// Create and manage groups; chat in one with send, listen, chat and history on #group.
    Group(group::GroupArgs),
    /// Push notifications: test a user's registered devices.
    Push {
        #[command(subcommand)]
        command: push::PushCommand,
    },
}

/// Where the server keeps its data.
#[derive(clap::Args, Debug)]
struct DataDir {
    /// The server's data directory.
    #[arg(
        long,
        env = "MQCHAT_DATA_DIR",
        default_value = "mqchat-data",
        global = true
    )]
    data_dir: PathBuf,
}

fn init_logging(filter: Option<&str>, default: &str) {
    let filter = match filter {
        Some(f) => tracing_subscriber::EnvFilter::new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = if matches!(cli.command, Command::Serve(_) | Command::Hub(_)) {
        // The embedded broker logs every refused CONNECT at info; mqchat's own lines say
        // what matters once per burst (a flood of failed logins must not flood the log).
        "info,rmqtt=warn,rmqtt_net=warn"
    } else {
        "warn"
    };
    init_logging(cli.log.as_deref(), default_log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Hub(args) => hub::run(args).await,
            Command::BrokerConfig(args) => broker_config::run(args),
            Command::User { data, command } => admin::user(&data.data_dir, command),
            Command::Device { data, command } => admin::device(&data.data_dir, command),
            Command::Store { data, command } => admin::store(&data.data_dir, command),
            Command::Send(args) => client::send(args).await,
            Command::Listen(args) => client::listen(args).await,
            Command::History(args) => client::history(args).await,
            Command::Conversations(args) => client::conversations(args).await,
            Command::Presence(args) => client::presence(args).await,
            Command::Profile(args) => client::profile(args).await,
            Command::Devices(args) => client::devices(args).await,
            Command::Contact(args) => client::contact(args).await,
            Command::Call(args) => call::run(args).await,
            Command::Chat(args) => chat::run(args).await,
            Command::Group(args) => group::run(args).await,
            Command::Push { command } => push::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::one_line(&e));
            ExitCode::from(output::exit_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
