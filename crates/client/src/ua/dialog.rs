//! Dialogs (RFC 3261 section 12) and the messages this user agent builds: requests inside
//! a dialog, CANCEL and ACK for an INVITE (9.1, 17.1.1.3), and its own identity in them
//! (Via over MQTT, the GRUU as Contact).

use mqchat_proto::{ConversationRef, DeviceId, SipAddress, UserId};
use mqchat_sip::{CSeq, Message, Method, NameAddr, Uri, Via};

/// Methods this user agent takes (the Allow header).
pub(super) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";

/// Max-Forwards of every request it makes.
const MAX_FORWARDS: &str = "70";

/// The device as a SIP user agent: its address of record `sip:{user}@{domain}`, its GRUU
/// `sip:{user}@{domain};gr={device}` (the Contact of every dialog it makes) and the Via
/// host `{device}.{user}.invalid` of the MQTT transport (spec 7.14).
#[derive(Clone, Debug)]
pub(crate) struct Local {
    pub user: UserId,
    pub device: DeviceId,
    pub domain: String,
}

impl Local {
    pub fn aor(&self) -> Uri {
        Uri::sip(Some(self.user.as_str()), &self.domain)
    }

    pub fn gruu(&self) -> Uri {
        let mut uri = self.aor();
        uri.params.set("gr", Some(self.device.as_str()));
        uri
    }

    pub fn contact(&self) -> String {
        NameAddr::new(self.gruu()).to_string()
    }

    pub fn via_host(&self) -> String {
        format!("{}.{}.invalid", self.device, self.user)
    }

    /// A Via for a new client transaction.
    pub fn via(&self, branch: &str) -> String {
        Via::new(mqchat_sip::Transport::Mqtt, &self.via_host(), None, branch).to_string()
    }

    /// The conversation a call with `uri` is recorded in: a user of this domain, or the SIP
    /// address outside mqchat (spec section 2).
    pub fn conversation(&self, uri: &Uri) -> Option<ConversationRef> {
        if uri.scheme != mqchat_sip::Scheme::Sip {
            return None;
        }
        let user = uri.user.as_deref()?;
        let host = uri.host.to_ascii_lowercase();
        if host == self.domain.to_ascii_lowercase() {
            return UserId::parse(user).ok().map(ConversationRef::Direct);
        }
        let port = match uri.port {
            Some(port) if port != 5060 => format!(":{port}"),
            _ => String::new(),
        };
        SipAddress::parse(&format!("sip:{user}@{host}{port}"))
            .ok()
            .map(ConversationRef::Sip)
    }
}

/// One dialog, from this side: what the requests inside it carry.
#[derive(Clone, Debug)]
pub(super) struct Dialog {
    pub call_id: String,
    /// This side's address with its tag (From of the requests it sends).
    pub local: NameAddr,
    /// The other side's address with its tag (To of the requests it sends).
    pub remote: NameAddr,
    /// Where requests go: the other side's Contact.
    pub target: Uri,
    /// The Record-Routes, in the order of the Route headers to send.
    pub routes: Vec<NameAddr>,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
}

impl Dialog {
    /// The dialog a 2xx answer to this device's `invite` makes (RFC 3261 12.1.2).
    pub fn from_answer(invite: &Message, answer: &Message) -> Option<Self> {
        let mut routes = answer.record_routes();
        routes.reverse();
        let remote = answer.to()?;
        remote.tag()?;
        Some(Self {
            call_id: invite.call_id()?.to_owned(),
            local: invite.from()?,
            target: answer
                .contact()
                .map(|c| c.uri)
                .or_else(|| invite.uri().cloned())?,
            remote,
            routes,
            local_cseq: invite.cseq()?.seq,
            remote_cseq: None,
        })
    }

    /// The dialog this device makes by answering `invite` with the tag `local_tag` (RFC
    /// 3261 12.1.1).
    pub fn from_invite(invite: &Message, local_tag: &str) -> Option<Self> {
        let mut local = invite.to()?;
        local.set_tag(local_tag);
        let remote = invite.from()?;
        Some(Self {
            call_id: invite.call_id()?.to_owned(),
            target: invite
                .contact()
                .map(|c| c.uri)
                .unwrap_or_else(|| remote.uri.clone()),
            local,
            remote,
            routes: invite.record_routes(),
            local_cseq: 0,
            remote_cseq: Some(invite.cseq()?.seq),
        })
    }

    pub fn remote_tag(&self) -> &str {
        self.remote.tag().unwrap_or("")
    }

    pub fn local_tag(&self) -> &str {
        self.local.tag().unwrap_or("")
    }

    /// A new request inside the dialog, with the next CSeq number (RFC 3261 12.2.1.1).
    pub fn request(&mut self, method: Method, me: &Local, branch: &str) -> Message {
        self.local_cseq += 1;
        let seq = self.local_cseq;
        self.build(method, seq, me, branch)
    }

    /// The ACK of a 2xx answer: CSeq number of the INVITE, a new branch (RFC 3261 13.2.2.4).
    pub fn ack(&self, invite_seq: u32, me: &Local, branch: &str) -> Message {
        self.build(Method::Ack, invite_seq, me, branch)
    }

    fn build(&self, method: Method, seq: u32, me: &Local, branch: &str) -> Message {
        let mut m = Message::request(method.clone(), self.target.clone());
        m.insert_header("Via", &me.via(branch));
        m.insert_header("Max-Forwards", MAX_FORWARDS);
        for route in &self.routes {
            m.insert_header("Route", &route.to_string());
        }
        m.insert_header("From", &self.local.to_string());
        m.insert_header("To", &self.remote.to_string());
        m.insert_header("Call-ID", &self.call_id);
        m.insert_header("CSeq", &CSeq { seq, method }.to_string());
        m
    }
}

/// A new INVITE out of any dialog (RFC 3261 8.1.1).
pub(super) fn invite(
    me: &Local,
    target: &Uri,
    call_id: &str,
    tag: &str,
    branch: &str,
    sdp: &str,
) -> Message {
    let mut from = NameAddr::new(me.aor());
    from.set_tag(tag);
    let mut m = Message::request(Method::Invite, target.clone());
    m.insert_header("Via", &me.via(branch));
    m.insert_header("Max-Forwards", MAX_FORWARDS);
    m.insert_header("From", &from.to_string());
    m.insert_header("To", &NameAddr::new(target.clone()).to_string());
    m.insert_header("Call-ID", call_id);
    m.insert_header(
        "CSeq",
        &CSeq {
            seq: 1,
            method: Method::Invite,
        }
        .to_string(),
    );
    m.insert_header("Contact", &me.contact());
    m.insert_header("Allow", ALLOW);
    m.insert_header("User-Agent", USER_AGENT);
    m.set_body("application/sdp", sdp.as_bytes().to_vec());
    m
}

/// `mqchat/{version}`, in requests and responses.
pub(super) const USER_AGENT: &str = concat!("mqchat/", env!("CARGO_PKG_VERSION"));

/// The CANCEL of an INVITE this device sent (RFC 3261 9.1): same Request-URI, Call-ID,
/// From, To, CSeq number, Route and top Via.
pub(super) fn cancel(invite: &Message) -> Message {
    hop_by_hop(invite, Method::Cancel, invite.headers.get("To"))
}

/// The ACK of a non-2xx final answer to an INVITE this device sent (RFC 3261 17.1.1.3):
/// like a CANCEL, with the answer's To (and its tag).
pub(super) fn ack_failure(invite: &Message, answer: &Message) -> Message {
    hop_by_hop(invite, Method::Ack, answer.headers.get("To"))
}

fn hop_by_hop(invite: &Message, method: Method, to: Option<&str>) -> Message {
    let uri = invite.uri().cloned().unwrap_or_else(|| Uri::sip(None, ""));
    let mut m = Message::request(method.clone(), uri);
    if let Some(via) = invite.headers.get("Via") {
        m.insert_header("Via", via);
    }
    m.insert_header("Max-Forwards", MAX_FORWARDS);
    for route in invite.headers.get_all("Route") {
        m.insert_header("Route", route);
    }
    if let Some(from) = invite.headers.get("From") {
        m.insert_header("From", from);
    }
    if let Some(to) = to {
        m.insert_header("To", to);
    }
    if let Some(call_id) = invite.call_id() {
        m.insert_header("Call-ID", call_id);
    }
    let seq = invite.cseq().map_or(1, |c| c.seq);
    m.insert_header("CSeq", &CSeq { seq, method }.to_string());
    m
}

/// The `cause` of the first `SIP` Reason (RFC 3326) of a message, e.g. 200 on a CANCEL
/// that says "Call completed elsewhere".
pub(super) fn reason_cause(message: &Message) -> Option<u16> {
    message.headers.get_all("Reason").find_map(|value| {
        value.split(',').find_map(|reason| {
            let mut parts = reason.split(';');
            let protocol = parts.next()?.trim();
            if !protocol.eq_ignore_ascii_case("SIP") {
                return None;
            }
            parts.find_map(|param| {
                let (name, value) = param.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("cause")
                    .then(|| value.trim().parse().ok())
                    .flatten()
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Local {
        Local {
            user: UserId::parse("alice").expect("valid"),
            device: DeviceId::parse("phone").expect("valid"),
            domain: "example.org".into(),
        }
    }

    fn uri(s: &str) -> Uri {
        Uri::parse(s).expect("valid")
    }

    #[test]
    fn addresses() {
        let me = me();
        assert_eq!(me.contact(), "<sip:alice@example.org;gr=phone>");
        assert_eq!(
            me.via("z9hG4bK1"),
            "SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bK1"
        );
        let check = |u: &str, conv: Option<&str>| {
            assert_eq!(
                me.conversation(&uri(u)).map(|c| c.to_string()).as_deref(),
                conv,
                "{u}"
            );
        };
        check("sip:bob@example.org", Some("bob"));
        check("sip:bob@EXAMPLE.org;gr=laptop", Some("bob"));
        check("sip:Bob@example.org", None);
        check("sip:carol@Example.net", Some("sip:carol@example.net"));
        check("sip:carol@example.net:5060", Some("sip:carol@example.net"));
        check(
            "sip:carol@example.net:5070;transport=udp",
            Some("sip:carol@example.net:5070"),
        );
        check("sips:carol@example.net", None);
        check("sip:example.net", None);
    }

    #[test]
    fn invite_cancel_and_ack() {
        let me = me();
        let target = uri("sip:bob@example.org");
        let invite = invite(&me, &target, "c1@x", "t1", "z9hG4bKa", "v=0\r\n");
        let parsed = Message::parse(&invite.to_bytes()).expect("a valid INVITE");
        assert_eq!(
            parsed
                .from()
                .and_then(|f| f.tag().map(str::to_owned))
                .as_deref(),
            Some("t1")
        );
        assert_eq!(parsed.content_type().as_deref(), Some("application/sdp"));
        let cancel = cancel(&parsed);
        let text = String::from_utf8(cancel.to_bytes()).expect("utf-8");
        assert!(
            text.starts_with("CANCEL sip:bob@example.org SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 CANCEL\r\n"), "{text}");
        assert!(text.contains("branch=z9hG4bKa"), "{text}");
        let mut busy = Message::response(&parsed, 486, "");
        busy.set_to_tag("t2");
        let ack = ack_failure(&parsed, &busy);
        let text = String::from_utf8(ack.to_bytes()).expect("utf-8");
        assert!(
            text.contains("To: <sip:bob@example.org>;tag=t2\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 ACK\r\n"), "{text}");
        Message::parse(text.as_bytes()).expect("a valid ACK");
    }

    #[test]
    fn reasons() {
        let check = |value: &str, cause: Option<u16>| {
            let mut m = Message::request(Method::Cancel, uri("sip:a@b"));
            m.insert_header("Reason", value);
            assert_eq!(reason_cause(&m), cause, "{value}");
        };
        check(
            "SIP ;cause=200 ;text=\"Call completed elsewhere\"",
            Some(200),
        );
        check("Q.850;cause=16, SIP;cause=603", Some(603));
        check("Q.850;cause=16", None);
        check("SIP;text=x", None);
    }
}
