//! `mqchat push test USER`: a test notification to each of a user's devices that registered
//! a push target, through the providers the server's configuration sets up, with what each
//! provider answered.

use std::path::PathBuf;

use anyhow::Context;
use mqchat_proto::UserId;
use mqchat_push::Outcome;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum PushCommand {
    /// Send a test push to every device of USER that has a push target.
    Test {
        /// The user.
        user: String,
        /// The server's TOML configuration file (its `[push]` section and `data_dir`).
        #[arg(long, env = "MQCHAT_CONFIG")]
        config: Option<PathBuf>,
        /// The data directory, if not the configuration's.
        #[arg(long, env = "MQCHAT_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

pub(crate) async fn run(command: PushCommand) -> anyhow::Result<()> {
    let PushCommand::Test {
        user,
        config,
        data_dir,
    } = command;
    let mut settings = crate::serve::read_config(config.as_deref())?;
    if let Some(dir) = data_dir {
        settings.data_dir = dir;
    }
    let user = UserId::parse(&user).with_context(|| format!("user {user:?}"))?;
    let results = mqchat_server::push::test(&settings, &user)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut delivered = 0;
    for r in &results {
        let answer = match &r.outcome {
            Outcome::Delivered => {
                delivered += 1;
                "delivered".to_owned()
            }
            Outcome::Invalid { reason } if r.removed => {
                format!("target invalid ({reason}); removed")
            }
            Outcome::Invalid { reason } => format!("target invalid ({reason})"),
            Outcome::Retry { reason, after } => match after {
                Some(after) => format!("try again after {}s ({reason})", after.as_secs()),
                None => format!("try again later ({reason})"),
            },
            Outcome::Failed { reason } => format!("failed ({reason})"),
            other => format!("{other:?}"),
        };
        println!("{}:{}\t{}\t{answer}", user, r.device, r.provider);
    }
    anyhow::ensure!(
        delivered > 0,
        "no provider accepted the test push ({} device(s) tried)",
        results.len()
    );
    Ok(())
}
