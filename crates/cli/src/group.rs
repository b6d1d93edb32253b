//! `mqchat group ...`: create and administer groups, answer invitations, list members and
//! groups; and how group events read in `listen` and `history`. Chatting in a group uses
//! the ordinary commands with the conversation `#group`.

use anyhow::Context;
use clap::Subcommand;
use mqchat_client::{Client, Event, Group, GroupUpdate, Presence, Sent};
use mqchat_proto::body::{
    Availability, Body, GroupAction, GroupCreate, GroupEvent, HistoryVisibility, Role,
};
use mqchat_proto::{GroupId, Packet, PacketKind, UserId};
use serde_json::{Value, json};

use crate::client::ConnectArgs;

#[derive(clap::Args, Debug)]
pub(crate) struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

/// A group named on the command line: `#id` or `id`.
#[derive(clap::Args, Debug)]
pub(crate) struct Target {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The group: #id (as `group create` printed it) or id.
    group: String,
}

/// A group and a user in it.
#[derive(clap::Args, Debug)]
pub(crate) struct OnUser {
    #[command(flatten)]
    target: Target,
    /// The user.
    #[arg(value_name = "USER")]
    member: String,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// Create a group (you are its owner) and print its id (#...).
    Create {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Its name.
        name: String,
        /// Users to invite at once.
        #[arg(long, num_args = 1.., value_name = "USER")]
        invite: Vec<String>,
        /// A description.
        #[arg(long)]
        description: Option<String>,
        /// An avatar reference (a URI).
        #[arg(long)]
        avatar: Option<String>,
        /// Let new members read the whole history (by default: from their joining on).
        #[arg(long)]
        all_history: bool,
    },
    /// Invite users (admins and the owner).
    Invite {
        #[command(flatten)]
        target: Target,
        /// Whom to invite.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Withdraw an invitation (admins and the owner).
    Cancel(OnUser),
    /// Accept an invitation.
    Accept(Target),
    /// Decline an invitation.
    Decline(Target),
    /// Leave a group (the owner transfers or deletes it first).
    Leave(Target),
    /// Remove a member (admins remove members; the owner removes admins too).
    Kick(OnUser),
    /// Make a member an admin.
    Promote(OnUser),
    /// Make an admin a member again.
    Demote(OnUser),
    /// Make a member the owner (the owner only); you become an admin.
    Transfer(OnUser),
    /// Rename a group (admins and the owner).
    Rename {
        #[command(flatten)]
        target: Target,
        /// The new name.
        name: String,
    },
    /// Change a group's description or avatar ("" clears one).
    Update {
        #[command(flatten)]
        target: Target,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// A new avatar reference.
        #[arg(long)]
        avatar: Option<String>,
    },
    /// Delete a group (the owner only).
    Delete(Target),
    /// List a group's members with their roles.
    Members(Target),
    /// List your groups (and invitations).
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn group_id(text: &str) -> anyhow::Result<GroupId> {
    let id = text.strip_prefix('#').unwrap_or(text);
    GroupId::parse(id).with_context(|| format!("group {text:?}"))
}

fn user_id(text: &str) -> anyhow::Result<UserId> {
    UserId::parse(text).with_context(|| format!("user {text:?}"))
}

/// Connects for one command, runs `f`, and closes whatever happened.
async fn once<T>(
    connect: &ConnectArgs,
    f: impl AsyncFnOnce(&Client) -> Result<T, mqchat_client::Error>,
) -> anyhow::Result<T> {
    let (client, _events) = connect
        .connect(false, Presence::new(Availability::Available))
        .await?;
    let result = f(&client).await;
    let _ = client.close().await;
    Ok(result?)
}

/// Prints what a change did: `text` for people, or the stored event as JSON.
fn done(connect: &ConnectArgs, sent: &Sent, text: &str) {
    if connect.json() {
        println!(
            "{}",
            json!({"conv": sent.conv.to_string(), "seq": sent.seq.get(), "duplicate": sent.duplicate})
        );
    } else {
        println!("{text}");
    }
}

pub(crate) async fn run(args: GroupArgs) -> anyhow::Result<()> {
    match args.command {
        GroupCommand::Create {
            connect,
            name,
            invite,
            description,
            avatar,
            all_history,
        } => {
            let create = GroupCreate {
                name: name.clone(),
                avatar,
                description,
                invite: invite
                    .iter()
                    .map(|u| user_id(u))
                    .collect::<anyhow::Result<_>>()?,
                history: if all_history {
                    HistoryVisibility::All
                } else {
                    HistoryVisibility::Joined
                },
            };
            let created = once(&connect, async |c| c.create_group(create).await).await?;
            let text = format!("created #{} ({name})", created.group);
            done(&connect, &created.sent, &text);
        }
        GroupCommand::Invite { target, users } => {
            let gid = group_id(&target.group)?;
            let users: Vec<UserId> = users
                .iter()
                .map(|u| user_id(u))
                .collect::<anyhow::Result<_>>()?;
            let sent = once(&target.connect, async |c| {
                let mut last = None;
                for user in &users {
                    last = Some(c.group(&gid).invite(user).await?);
                }
                Ok(last)
            })
            .await?;
            if let Some(sent) = sent {
                let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
                done(
                    &target.connect,
                    &sent,
                    &format!("invited {} to #{gid}", names.join(", ")),
                );
            }
        }
        GroupCommand::Cancel(on) => {
            on_user(on, "cancelled the invitation of", async |c, g, u| {
                c.group(g).cancel_invitation(u).await
            })
            .await?;
        }
        GroupCommand::Kick(on) => {
            on_user(on, "removed", async |c, g, u| c.group(g).remove(u).await).await?;
        }
        GroupCommand::Promote(on) => {
            on_user(on, "promoted", async |c, g, u| {
                c.group(g).set_role(u, Role::Admin).await
            })
            .await?;
        }
        GroupCommand::Demote(on) => {
            on_user(on, "demoted", async |c, g, u| {
                c.group(g).set_role(u, Role::Member).await
            })
            .await?;
        }
        GroupCommand::Transfer(on) => {
            on_user(on, "made the owner:", async |c, g, u| {
                c.group(g).transfer_ownership(u).await
            })
            .await?;
        }
        GroupCommand::Accept(target) => {
            self_action(target, "joined", async |c, g| c.group(g).accept().await).await?;
        }
        GroupCommand::Decline(target) => {
            self_action(target, "declined", async |c, g| c.group(g).decline().await).await?;
        }
        GroupCommand::Leave(target) => {
            self_action(target, "left", async |c, g| c.group(g).leave().await).await?;
        }
        GroupCommand::Delete(target) => {
            self_action(target, "deleted", async |c, g| c.group(g).delete().await).await?;
        }
        GroupCommand::Rename { target, name } => {
            let gid = group_id(&target.group)?;
            let sent = once(&target.connect, async |c| c.group(&gid).rename(&name).await).await?;
            done(
                &target.connect,
                &sent,
                &format!("renamed #{gid} to {name:?}"),
            );
        }
        GroupCommand::Update {
            target,
            description,
            avatar,
        } => {
            anyhow::ensure!(
                description.is_some() || avatar.is_some(),
                "give --description or --avatar"
            );
            let gid = group_id(&target.group)?;
            let mut update = GroupUpdate::default();
            update.description = description;
            update.avatar = avatar;
            let sent = once(&target.connect, async |c| {
                c.group(&gid).update(update).await
            })
            .await?;
            done(&target.connect, &sent, &format!("updated #{gid}"));
        }
        GroupCommand::Members(target) => {
            let gid = group_id(&target.group)?;
            let group = once(&target.connect, async |c| c.group(&gid).info().await).await?;
            print_members(&target.connect, &group);
        }
        GroupCommand::List { connect } => {
            let groups = once(&connect, async |c| c.groups().await).await?;
            let me = user_id(connect.user())?;
            for group in &groups {
                let invited = group.member(&me).is_some_and(|m| m.invited);
                if connect.json() {
                    println!(
                        "{}",
                        json!({"group": group.conv().to_string(), "name": group.name, "members": group.n_members(), "invited": invited})
                    );
                } else {
                    let note = if invited { ", you are invited" } else { "" };
                    println!(
                        "{} {} ({} members{note})",
                        group.conv(),
                        group.name,
                        group.n_members()
                    );
                }
            }
        }
    }
    Ok(())
}

async fn on_user(
    on: OnUser,
    verb: &str,
    f: impl AsyncFnOnce(&Client, &GroupId, &UserId) -> Result<Sent, mqchat_client::Error>,
) -> anyhow::Result<()> {
    let gid = group_id(&on.target.group)?;
    let user = user_id(&on.member)?;
    let sent = once(&on.target.connect, async |c| f(c, &gid, &user).await).await?;
    done(
        &on.target.connect,
        &sent,
        &format!("{verb} {user} in #{gid}"),
    );
    Ok(())
}

async fn self_action(
    target: Target,
    verb: &str,
    f: impl AsyncFnOnce(&Client, &GroupId) -> Result<Sent, mqchat_client::Error>,
) -> anyhow::Result<()> {
    let gid = group_id(&target.group)?;
    let sent = once(&target.connect, async |c| f(c, &gid).await).await?;
    done(&target.connect, &sent, &format!("{verb} #{gid}"));
    Ok(())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

fn print_members(connect: &ConnectArgs, group: &Group) {
    if !connect.json() {
        println!(
            "{} {} ({} members)",
            group.conv(),
            group.name,
            group.n_members()
        );
        if let Some(description) = &group.description {
            println!("  {description}");
        }
    }
    for m in &group.members {
        if connect.json() {
            println!(
                "{}",
                json!({"user": m.user.as_str(), "role": role_name(m.role), "invited": m.invited, "since": m.since.get(), "delivered": m.delivered.get(), "read": m.read.get()})
            );
        } else if m.invited {
            println!("{} (invited)", m.user);
        } else {
            println!("{} {}", m.user, role_name(m.role));
        }
    }
}

fn action_name(action: GroupAction) -> &'static str {
    match action {
        GroupAction::Created => "created",
        GroupAction::Invited => "invited",
        GroupAction::Joined => "joined",
        GroupAction::Declined => "declined",
        GroupAction::Cancelled => "cancelled",
        GroupAction::Left => "left",
        GroupAction::Removed => "removed",
        GroupAction::Role => "role",
        GroupAction::Updated => "updated",
        GroupAction::Deleted => "deleted",
        GroupAction::Owner => "owner",
    }
}

/// A group change in words: "alice invited bob", "bob joined", "carol renamed the group to
/// \"Crew\"".
pub(crate) fn describe(by: &UserId, change: &GroupEvent) -> String {
    let user = change.user.as_ref().map_or("someone", UserId::as_str);
    match change.action {
        GroupAction::Created => format!(
            "{by} created the group {:?}",
            change.name.as_deref().unwrap_or_default()
        ),
        GroupAction::Invited => format!("{by} invited {user}"),
        GroupAction::Joined => format!("{user} joined"),
        GroupAction::Declined => format!("{user} declined the invitation"),
        GroupAction::Cancelled => format!("{by} cancelled {user}'s invitation"),
        GroupAction::Left => format!("{user} left"),
        GroupAction::Removed => format!("{by} removed {user}"),
        GroupAction::Role => format!(
            "{by} made {user} {}",
            role_name(change.role.unwrap_or_default())
        ),
        GroupAction::Owner => format!("{by} made {user} the owner"),
        GroupAction::Updated => match &change.name {
            Some(name) => format!("{by} renamed the group to {name:?}"),
            None => format!("{by} changed the group's profile"),
        },
        GroupAction::Deleted => format!("{by} deleted the group"),
    }
}

/// The text of a stored group event (in `history`), if `packet` is one.
pub(crate) fn packet_text(packet: &Packet) -> Option<String> {
    if packet.kind != PacketKind::GROUP_EVENT {
        return None;
    }
    let change = GroupEvent::from_packet(packet).ok()?;
    let by = packet.from.as_ref()?;
    Some(format!("({})", describe(by, &change)))
}

/// `listen --json` lines for group events.
pub(crate) fn event_json(event: &Event) -> Option<Value> {
    Some(match event {
        Event::Invitation {
            group,
            seq,
            ts,
            by,
            name,
            ..
        } => json!({
            "event": "invitation", "conv": format!("#{group}"), "seq": seq.get(), "ts": ts.unix_ms(),
            "by": by.as_str(), "name": name,
        }),
        Event::Group {
            group,
            seq,
            ts,
            by,
            own,
            change,
            ..
        } => json!({
            "event": "group", "conv": format!("#{group}"), "seq": seq.get(), "ts": ts.unix_ms(), "by": by.as_str(),
            "own": own, "action": action_name(change.action),
            "user": change.user.as_ref().map(UserId::as_str),
            "role": change.role.map(role_name), "name": change.name,
        }),
        _ => return None,
    })
}

/// `listen` lines for group events.
pub(crate) fn event_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::Invitation {
            group, by, name, ..
        } => {
            format!("[#{group}] {by} invited you to {name:?} (mqchat group accept #{group})")
        }
        Event::Group {
            group,
            seq,
            by,
            change,
            ..
        } => format!("[#{group} #{seq}] {}", describe(by, change)),
        _ => return None,
    })
}
