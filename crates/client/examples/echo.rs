//! An echo bot: answers every message it receives with the same text prefixed by "echo: ",
//! and marks it read.
//!
//! ```text
//! cargo run -p mqchat-client --example echo -- mqtt://127.0.0.1:1883 echo bot secret
//! ```
//!
//! The four arguments (broker URL, user, device, password) may instead come from the
//! environment: `MQCHAT_URL`, `MQCHAT_USER`, `MQCHAT_DEVICE`, `MQCHAT_PASSWORD`. Set
//! `RUST_LOG=debug` to see what happens. Stop it with Ctrl-C: it says goodbye properly.

use anyhow::Context;
use mqchat_client::body::Message;
use mqchat_client::{Client, ClientConfig, DeviceId, Event, UserId};

const PREFIX: &str = "echo: ";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let mut setting = |name: &str, env: &str| {
        args.next()
            .or_else(|| std::env::var(env).ok())
            .with_context(|| format!("give the {name} as an argument or in {env}"))
    };
    let url = setting("broker URL", "MQCHAT_URL")?;
    let user = UserId::parse(&setting("user", "MQCHAT_USER")?)?;
    let device = DeviceId::parse(&setting("device", "MQCHAT_DEVICE")?)?;
    let password = setting("password", "MQCHAT_PASSWORD")?;

    let config = ClientConfig::new(&url, user.clone(), device, password)?;
    let (client, mut events) = Client::connect(config).await?;
    println!("{user} is listening on {url}; Ctrl-C to stop");

    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Some(Event::Message {
                conv,
                seq,
                from,
                own: false,
                message,
                ..
            }) => {
                println!("{from} in {conv}: {}", message.text);
                // Answering another echo bot would never end.
                if message.text.starts_with(PREFIX) {
                    continue;
                }
                let client = client.clone();
                // Each answer waits for the hub's confirmation on its own task, so that
                // events keep flowing meanwhile (and while offline).
                tokio::spawn(async move {
                    let reply = Message::text(format!("{PREFIX}{}", message.text));
                    let result = async {
                        client.mark_read(conv.clone(), seq, false).await?;
                        client.send(conv, reply).await
                    };
                    match result.await {
                        Ok(sent) => println!("answered as #{} in {}", sent.seq, sent.conv),
                        Err(e) => eprintln!("could not answer: {e}"),
                    }
                });
            }
            Some(Event::Disconnected { reason }) => {
                eprintln!("disconnected ({reason}); reconnecting")
            }
            Some(Event::Connected { .. }) => println!("connected"),
            Some(Event::Error { code, detail, .. }) => eprintln!("refused: {code} {detail:?}"),
            Some(_) => {}
            None => break,
        }
    }
    client.close().await?;
    Ok(())
}
