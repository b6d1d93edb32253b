//! Sending the pushes the hub decides on (spec 7.13) through mqchat-push's dispatcher, and
//! deleting the targets providers report invalid.

use std::path::PathBuf;

use mqchat_hub::Push;
use mqchat_proto::body::PushTarget;
use mqchat_proto::{DeviceId, DeviceIdentity, UserId};
use mqchat_push::{
    ApnsEnvironment, Device, Dispatcher, Enqueued, Notification, Outcome, PushConfig, Senders,
    Target,
};
use mqchat_store::{Durability, Store};

/// What one device's provider answered to a test push.
#[derive(Debug)]
pub struct TestResult {
    /// The device.
    pub device: DeviceId,
    /// Its provider (`fcm`, `apns`, `web-push`, `unified-push`).
    pub provider: &'static str,
    /// The provider's answer.
    pub outcome: Outcome,
    /// The target was invalid and has been removed.
    pub removed: bool,
}

/// `mqchat push test`: sends a test notification to every device of `user` that has a push
/// target, through the providers `config` sets up, and returns what each answered. Targets
/// a provider reports invalid are removed, as the hub would.
pub async fn test(config: &crate::ServerConfig, user: &UserId) -> Result<Vec<TestResult>, String> {
    if !enabled(&config.push) {
        return Err("no push provider is configured ([push] in the configuration file)".into());
    }
    let senders = Senders::from_config(&config.push).map_err(|e| e.to_string())?;
    let mut store = Store::open(&config.database(), Durability::Full).map_err(|e| e.to_string())?;
    let mut targets = Vec::new();
    for device in store.devices(user).map_err(|e| e.to_string())? {
        if device.revoked_at.is_some() {
            continue;
        }
        if let Some((stored, preview)) = store
            .push_target(user, &device.id)
            .map_err(|e| e.to_string())?
        {
            targets.push((device.id, target(&stored), preview));
        }
    }
    if targets.is_empty() {
        return Err(format!("{user} has no device with a push target"));
    }
    let mut results = Vec::new();
    for (device, target, preview) in targets {
        let notification =
            Notification::new("mqchat-test", 0).with_preview("A test notification from mqchat");
        let outcome = senders.send(&target, preview, &notification).await;
        let removed = matches!(outcome, Outcome::Invalid { .. })
            && store
                .drop_push_target(user, &device, address(&target))
                .map_err(|e| e.to_string())?;
        results.push(TestResult {
            device,
            provider: target.provider(),
            outcome,
            removed,
        });
    }
    Ok(results)
}

/// The running push dispatcher, if any provider is configured.
#[derive(Debug)]
pub(crate) struct Pusher {
    dispatcher: Dispatcher,
    cleaner: tokio::task::JoinHandle<()>,
}

/// Whether the configuration enables any provider.
pub(crate) fn enabled(config: &PushConfig) -> bool {
    config.fcm.is_some()
        || config.apns.is_some()
        || config.web_push.is_some()
        || config.unified_push.enabled
}

fn target(target: &PushTarget) -> Target {
    match target {
        PushTarget::Fcm { token } => Target::Fcm {
            token: token.clone(),
        },
        PushTarget::Apns {
            token,
            topic,
            sandbox,
        } => Target::Apns {
            token: token.clone(),
            topic: topic.clone(),
            environment: if *sandbox {
                ApnsEnvironment::Sandbox
            } else {
                ApnsEnvironment::Production
            },
        },
        PushTarget::WebPush {
            endpoint,
            p256dh,
            auth,
        } => Target::WebPush {
            endpoint: endpoint.clone(),
            p256dh: p256dh.clone(),
            auth: auth.clone(),
        },
        PushTarget::UnifiedPush { endpoint } => Target::UnifiedPush {
            endpoint: endpoint.clone(),
        },
    }
}

/// The address a target is known by in the store.
fn address(target: &Target) -> &str {
    match target {
        Target::Fcm { token } | Target::Apns { token, .. } => token,
        Target::WebPush { endpoint, .. } | Target::UnifiedPush { endpoint } => endpoint,
        _ => "",
    }
}

impl Pusher {
    /// Starts the dispatcher (on the current runtime) and the task that deletes invalid
    /// targets from the store at `database`. `None` when no provider is configured.
    pub(crate) fn start(
        config: &PushConfig,
        database: PathBuf,
        durability: Durability,
    ) -> Result<Option<Self>, String> {
        if !enabled(config) {
            tracing::info!("push is off: no provider configured");
            return Ok(None);
        }
        let senders = Senders::from_config(config).map_err(|e| e.to_string())?;
        let (dispatcher, mut invalid) = Dispatcher::start(senders, config);
        let cleaner = tokio::spawn(async move {
            while let Some(report) = invalid.recv().await {
                let Ok(device) = DeviceIdentity::parse_client_id(&report.device) else {
                    continue;
                };
                let database = database.clone();
                let address = address(&report.target).to_owned();
                let reason = report.reason;
                let dropped = tokio::task::spawn_blocking(move || {
                    Store::open(&database, durability)?
                        .drop_push_target(&device.user, &device.device, &address)
                        .map(|dropped| (device, dropped))
                })
                .await;
                match dropped {
                    Ok(Ok((device, true))) => {
                        tracing::info!(device = %device, reason, "push target invalid; removed");
                    }
                    Ok(Ok((_, false))) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "could not remove an invalid push target");
                    }
                    Err(e) => tracing::error!(error = %e, "push target cleaner failed"),
                }
            }
        });
        tracing::info!("push is on");
        Ok(Some(Self {
            dispatcher,
            cleaner,
        }))
    }

    /// Queues the hub's pushes; never waits.
    pub(crate) fn push(&self, pushes: Vec<Push>) {
        for push in pushes {
            let device = Device {
                key: DeviceIdentity {
                    user: push.user,
                    device: push.device,
                }
                .client_id(),
                target: target(&push.target),
                preview: push.preview.is_some(),
            };
            let mut notification = Notification::new(push.conversation.to_string(), push.seq);
            if let Some(text) = push.preview {
                notification = notification.with_preview(text);
            }
            if push.call {
                notification = notification.for_call();
            }
            if self.dispatcher.push(device, notification) == Enqueued::DroppedOldest {
                tracing::warn!("push queue full: dropped the oldest waiting push");
            }
        }
    }

    /// Stops sending; pushes still waiting are dropped (and logged).
    pub(crate) async fn stop(self) {
        self.dispatcher.shutdown().await;
        self.cleaner.abort();
    }
}
