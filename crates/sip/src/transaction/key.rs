//! Matching messages to transactions (RFC 3261 17.1.3 and 17.2.3).

use crate::message::Message;
use crate::method::Method;

/// A transaction's identity: the top Via's branch, its sent-by (server side), and the method
/// (ACK matches the INVITE it acknowledges).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    pub branch: String,
    /// The top Via's sent-by, lower case, as `host:port` (empty for client keys).
    pub sent_by: String,
    pub method: Method,
}

impl TransactionKey {
    /// The server transaction a request belongs to. `None` for a top Via without an RFC 3261
    /// branch (those pre-3261 peers are not supported).
    pub fn for_request(request: &Message) -> Option<TransactionKey> {
        let via = request.top_via()?;
        if !via.is_rfc3261_branch() {
            return None;
        }
        let method = match request.method()? {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        Some(TransactionKey {
            branch: via.branch()?.to_string(),
            sent_by: format!(
                "{}:{}",
                via.host.to_ascii_lowercase(),
                via.port.map(|p| p.to_string()).unwrap_or_default()
            ),
            method,
        })
    }

    /// The client transaction a response belongs to (the branch of its top Via and its CSeq
    /// method).
    pub fn for_response(response: &Message) -> Option<TransactionKey> {
        let via = response.top_via()?;
        Some(TransactionKey {
            branch: via.branch()?.to_string(),
            sent_by: String::new(),
            method: response.cseq()?.method,
        })
    }

    /// The client-side key of a request this element sends (matched by
    /// [`TransactionKey::for_response`]).
    pub fn for_sent_request(request: &Message) -> Option<TransactionKey> {
        let via = request.top_via()?;
        Some(TransactionKey {
            branch: via.branch()?.to_string(),
            sent_by: String::new(),
            method: request.method()?.clone(),
        })
    }
}
