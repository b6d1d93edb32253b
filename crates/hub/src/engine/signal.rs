//! Signals (spec section 8): chat states (spec 7.2) and other ephemeral packets, forwarded
//! to the other participants' ephemeral inboxes and stored nowhere.

use mqchat_proto::upstream::Inbound;
use mqchat_proto::{ConversationRef, ErrorCode, InboxBranch};
use mqchat_store::Membership;

use super::{Engine, Failure, Target, Turn, refuse};
use crate::{Outbound, Qos};

impl Engine {
    pub(super) fn signal(&self, turn: &mut Turn<'_, '_>, inbound: &Inbound) -> Result<(), Failure> {
        let (tx, out) = (&mut *turn.tx, &mut *turn.out);
        let sender = &inbound.sender;
        let peer = match self.target(tx, inbound)? {
            Target::Direct(peer) => peer,
            Target::Group { .. } => {
                let (gid, conv, _, _) = self.membership(tx, inbound)?;
                let mut packet = inbound.packet.clone();
                packet.conv = Some(ConversationRef::Group(gid));
                packet.from = Some(sender.user.clone());
                packet.id = None;
                let payload = packet.encode();
                for member in tx.participants(conv.id)? {
                    if member.state == Membership::Member && member.user != sender.user {
                        out.publishes.push(Outbound {
                            topic: self.inbox(&member.user, InboxBranch::Ephemeral),
                            payload: payload.clone(),
                            qos: Qos::AtMostOnce,
                            retain: false,
                        });
                    }
                }
                return Ok(());
            }
            Target::Sip(address) => {
                return Err(refuse(
                    inbound,
                    ErrorCode::UNSUPPORTED,
                    format!("chat states do not reach {address}"),
                ));
            }
        };
        if peer == sender.user {
            return Ok(());
        }
        if tx.direct(&sender.user, &peer, false)?.is_none() {
            return Err(refuse(
                inbound,
                ErrorCode::FORBIDDEN,
                format!("no conversation with {peer} yet"),
            ));
        }
        let mut packet = inbound.packet.clone();
        packet.conv = Some(ConversationRef::Direct(sender.user.clone()));
        packet.id = None;
        out.publishes.push(Outbound {
            topic: self.inbox(&peer, InboxBranch::Ephemeral),
            payload: packet.encode(),
            qos: Qos::AtMostOnce,
            retain: false,
        });
        Ok(())
    }
}
