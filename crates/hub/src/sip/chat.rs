//! SIP MESSAGE and chat messages (spec section 19): a MESSAGE from a SIP peer becomes a chat
//! `message` in the user's conversation with the sender's address; a user's message to a
//! SIP address goes out through the gateway as a MESSAGE, whose answer moves the outside
//! party's delivered marker or comes back to the sending device as `not-delivered`.

use mqchat_proto::body::{Body, Delivered, ErrorReply, Message as ChatMessage, limits};
use mqchat_proto::{
    ConversationRef, DeviceIdentity, ErrorCode, InboxBranch, MessageId, Moment, PacketKind,
    SipAddress, Topic,
};
use mqchat_sip::{Message, Method, NameAddr, Uri};
use mqchat_store::{Author, ConvId, StoreError};

use super::call::canonical;
use super::{Hop, MESSAGE_TIMEOUT, hash63};
use crate::engine::{Engine, Output, Turn};
use crate::{Outbound, Qos};

/// A MESSAGE sent for a chat message, waiting for its final answer.
#[derive(Debug)]
pub(crate) struct PendingMessage {
    device: DeviceIdentity,
    id: Option<MessageId>,
    conv: ConvId,
    address: SipAddress,
    seq: u64,
    deadline: Moment,
}

impl Engine {
    /// A MESSAGE from the gateway to a user of the domain, outside a dialog.
    pub(super) fn message_in(
        &mut self,
        turn: &mut Turn<'_, '_>,
        user: &mqchat_proto::UserId,
        request: &Message,
    ) -> Result<(), StoreError> {
        let (tx, now, out) = (&mut *turn.tx, turn.now.wall, &mut *turn.out);
        let Some(sip) = self.sip() else {
            return Ok(());
        };
        if !tx.user_exists(user, true)? {
            self.respond(request, 404, out);
            return Ok(());
        }
        let text_type = request.content_type().is_none_or(|t| t == "text/plain");
        if !text_type {
            self.respond(request, 415, out);
            return Ok(());
        }
        if request.body.len() > limits::TEXT_BYTES {
            self.respond(request, 413, out);
            return Ok(());
        }
        let Ok(text) = std::str::from_utf8(&request.body) else {
            self.respond(request, 400, out);
            return Ok(());
        };
        let Some(address) = request.from().and_then(|f| canonical(&f.uri)) else {
            self.respond(request, 400, out);
            return Ok(());
        };
        let cseq = request
            .cseq()
            .map(|c| c.seq.to_string())
            .unwrap_or_default();
        let call_id = request.call_id().unwrap_or_default();
        let id = MessageId::new(hash63(&[call_id, &cseq])).ok();
        let author = Author::Sip(address.clone());
        let gateway = sip
            .gateway
            .as_ref()
            .and_then(|g| mqchat_proto::DeviceId::parse(g.as_str()).ok());
        let (Some(id), Some(device)) = (id, gateway) else {
            self.respond(request, 500, out);
            return Ok(());
        };
        if tx.find_duplicate_by(&author, &device, id)?.is_some() {
            self.respond(request, 200, out);
            return Ok(());
        }
        let Some(conv) = tx.sip_conversation(user, &address, true)? else {
            self.respond(request, 500, out);
            return Ok(());
        };
        let packet = ChatMessage::text(text).to_packet();
        let seq = tx.append_by(
            conv.id,
            now.unix_ms(),
            &author,
            &device,
            Some(id),
            PacketKind::MESSAGE,
            &packet.encode(),
            false,
        )?;
        self.deliver(tx, conv.id, seq, None, out)?;
        // The publishes of `out` go after the commit: so does this 200.
        self.respond(request, 200, out);
        Ok(())
    }

    /// Sends a stored chat message to a SIP address as a MESSAGE through the gateway.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn message_out(
        &mut self,
        now: Moment,
        sender: &DeviceIdentity,
        id: Option<MessageId>,
        conv: ConvId,
        seq: u64,
        address: &SipAddress,
        text: &str,
        out: &mut Output,
    ) {
        let Some(sip) = self.sip() else {
            return;
        };
        let Ok(target) = Uri::parse(address.as_str()) else {
            return;
        };
        let Some(destination) = self.peer_for(&sip, &target) else {
            return;
        };
        let mut request = Message::request(Method::Message, target.clone());
        let via = self.hub_via(&sip);
        let branch = via.branch().unwrap_or_default().to_owned();
        request.push_via(&via);
        request.headers.push("Max-Forwards", "70");
        let mut from = NameAddr::new(self.aor(&sip, &sender.user));
        from.set_tag(&self.proxy.ids.tag());
        request.headers.push("From", &from.to_string());
        request
            .headers
            .push("To", &NameAddr::new(target).to_string());
        let host = format!("hub.{}", sip.domain);
        request
            .headers
            .push("Call-ID", &self.proxy.ids.call_id(&host));
        request.headers.push("CSeq", "1 MESSAGE");
        request.set_body("text/plain;charset=utf-8", text.as_bytes().to_vec());
        self.proxy.messages.insert(
            branch,
            PendingMessage {
                device: sender.clone(),
                id,
                conv,
                address: address.clone(),
                seq,
                deadline: now + MESSAGE_TIMEOUT,
            },
        );
        self.emit(&Hop::Gateway(Some(destination)), &request, out);
    }

    /// The answer to a MESSAGE the hub sent.
    pub(super) fn message_answered(
        &mut self,
        turn: &mut Turn<'_, '_>,
        branch: &str,
        response: &Message,
    ) -> Result<(), StoreError> {
        let code = response.code().unwrap_or(0);
        if code < 200 {
            return Ok(());
        }
        let Some(pending) = self.proxy.messages.remove(branch) else {
            return Ok(());
        };
        if code < 300 {
            if turn.tx.set_sip_delivered(pending.conv, pending.seq)? {
                let mut marker = Delivered { up_to: pending.seq }.to_packet();
                marker.conv = Some(ConversationRef::Sip(pending.address));
                marker.ts = Some(turn.now.wall.unix_ms());
                turn.out
                    .publishes
                    .push(self.durable(&pending.device.user, &marker));
            }
            return Ok(());
        }
        let reason = match &response.start {
            mqchat_sip::StartLine::Response { reason, .. } => reason.clone(),
            mqchat_sip::StartLine::Request { .. } => String::new(),
        };
        self.not_delivered(&pending, &format!("SIP {code} {reason}"), turn.out);
        Ok(())
    }

    fn not_delivered(&self, pending: &PendingMessage, detail: &str, out: &mut Output) {
        tracing::info!(device = %pending.device, address = %pending.address, detail, "message to a SIP address not delivered");
        let mut error = ErrorReply {
            code: ErrorCode::NOT_DELIVERED,
            detail: Some(format!("{detail} from {}", pending.address)),
            about: Some(PacketKind::MESSAGE.0),
        }
        .to_packet();
        error.id = pending.id;
        error.conv = Some(ConversationRef::Sip(pending.address.clone()));
        out.publishes.push(Outbound {
            topic: self.config().root.topic(&Topic::Inbox {
                user: pending.device.user.clone(),
                branch: InboxBranch::Device(pending.device.device.clone()),
            }),
            payload: error.encode(),
            qos: Qos::AtLeastOnce,
            retain: false,
        });
    }

    /// MESSAGEs that got no final answer in time.
    pub(super) fn tick_messages(&mut self, now: Moment, out: &mut Output) {
        let expired: Vec<String> = self
            .proxy
            .messages
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for branch in expired {
            if let Some(pending) = self.proxy.messages.remove(&branch) {
                self.not_delivered(&pending, "no answer", out);
            }
        }
    }
}
