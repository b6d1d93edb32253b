//! Calls and conversations with SIP addresses (spec section 19): a user's conversation with
//! someone outside mqchat, the outside party's delivered marker, and the calls table that
//! keeps each call's record fields from its INVITE to its `call` event.

use mqchat_proto::{DeviceId, SipAddress, UserId};
use rusqlite::{OptionalExtension, Row, params};

use crate::archive::{Author, ConversationRow};
use crate::{StoreError, Tx};

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// One call, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRow {
    /// The INVITE's Call-ID.
    pub call_id: String,
    /// Who called.
    pub caller: Author,
    /// The caller's device, or the gateway's name for a caller outside mqchat.
    pub caller_device: String,
    /// Who was called.
    pub callee: Author,
    /// The callee's devices offered the call (by device id), in order.
    pub branches: Vec<String>,
    /// The SDP media kinds of the offer.
    pub media: Vec<String>,
    /// A device of the callee rang or was woken by push.
    pub rang: bool,
    /// When the INVITE reached the hub.
    pub started: u64,
    /// When the 2xx passed the hub.
    pub answered: Option<u64>,
    /// The callee's device that answered.
    pub answered_by: Option<String>,
    /// When the call was recorded as ended.
    pub ended: Option<u64>,
    /// The record's outcome (spec 7.14), once ended.
    pub outcome: Option<u8>,
}

const CALL_COLS: &str = "call_id, caller, caller_device, callee, branches, media, rang, started, answered, answered_by, ended, outcome";

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn call(row: &Row<'_>) -> rusqlite::Result<CallRow> {
    let party = |idx: usize| -> rusqlite::Result<Author> {
        let text: String = row.get(idx)?;
        let parsed = if text.starts_with("sip:") {
            SipAddress::parse(&text).map(Author::Sip)
        } else {
            UserId::parse(&text).map(Author::User)
        };
        parsed.map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(CallRow {
        call_id: row.get(0)?,
        caller: party(1)?,
        caller_device: row.get(2)?,
        callee: party(3)?,
        branches: list(&row.get::<_, String>(4)?),
        media: list(&row.get::<_, String>(5)?),
        rang: row.get(6)?,
        started: u(row.get(7)?),
        answered: row.get::<_, Option<i64>>(8)?.map(u),
        answered_by: row.get(9)?,
        ended: row.get::<_, Option<i64>>(10)?.map(u),
        outcome: row
            .get::<_, Option<i64>>(11)?
            .and_then(|o| u8::try_from(o).ok()),
    })
}

impl Tx<'_> {
    /// `user`'s conversation with a SIP address, created (with the user as its only
    /// participant) when `create` and it does not exist.
    pub fn sip_conversation(
        &self,
        user: &UserId,
        address: &SipAddress,
        create: bool,
    ) -> Result<Option<ConversationRow>, StoreError> {
        let find = || -> Result<Option<ConversationRow>, StoreError> {
            let id: Option<i64> = self
                .conn()
                .prepare_cached("SELECT id FROM conversations WHERE user_a = ?1 AND sip = ?2")?
                .query_row(params![user.as_str(), address.as_str()], |r| r.get(0))
                .optional()?;
            match id {
                Some(id) => self.conversation(id),
                None => Ok(None),
            }
        };
        if let Some(found) = find()? {
            return Ok(Some(found));
        }
        if !create {
            return Ok(None);
        }
        let id: i64 = self.conn().query_row(
            "INSERT INTO conversations (user_a, sip) VALUES (?1, ?2) RETURNING id",
            params![user.as_str(), address.as_str()],
            |r| r.get(0),
        )?;
        let change = self.next_change()?;
        self.conn().execute(
            "INSERT INTO participants (user_id, conv, change) VALUES (?1, ?2, ?3)",
            params![user.as_str(), id, i(change)],
        )?;
        self.conversation(id)
    }

    /// Moves the SIP party's delivered marker of a conversation forward (never back) and
    /// marks the conversation changed. False if it did not move.
    pub fn set_sip_delivered(&self, conv: crate::ConvId, up_to: u64) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE conversations SET sip_delivered = ?2 WHERE id = ?1 AND sip IS NOT NULL AND sip_delivered < ?2",
            )?
            .execute(params![conv, i(up_to)])?;
        if n == 0 {
            return Ok(false);
        }
        self.touch(conv)?;
        Ok(true)
    }

    /// A user's devices that are connected now (spec 7.13) and not revoked, by id.
    pub fn connected_devices(&self, user: &UserId) -> Result<Vec<DeviceId>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT id FROM devices WHERE user_id = ?1 AND connected AND revoked_at IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([user.as_str()], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for id in rows {
            let id = id?;
            out.push(DeviceId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// Records a new call. False if a call with this Call-ID exists already.
    pub fn insert_call(&self, row: &CallRow) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .prepare_cached(&format!(
                "INSERT INTO calls ({CALL_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (call_id) DO NOTHING"
            ))?
            .execute(params![
                row.call_id,
                row.caller.as_str(),
                row.caller_device,
                row.callee.as_str(),
                row.branches.join(","),
                row.media.join(","),
                row.rang,
                i(row.started),
                row.answered.map(i),
                row.answered_by,
                row.ended.map(i),
                row.outcome.map(i64::from),
            ])?;
        Ok(n == 1)
    }

    /// Saves a call's changing fields (branches, rang, answered, ended, outcome).
    pub fn update_call(&self, row: &CallRow) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "UPDATE calls SET branches = ?2, rang = ?3, answered = ?4, answered_by = ?5, ended = ?6, outcome = ?7
                 WHERE call_id = ?1",
            )?
            .execute(params![
                row.call_id,
                row.branches.join(","),
                row.rang,
                row.answered.map(i),
                row.answered_by,
                row.ended.map(i),
                row.outcome.map(i64::from),
            ])?;
        Ok(())
    }

    /// A call by its Call-ID.
    pub fn call(&self, call_id: &str) -> Result<Option<CallRow>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!("SELECT {CALL_COLS} FROM calls WHERE call_id = ?1"))?
            .query_row([call_id], call)
            .optional()?)
    }

    /// Calls not recorded as ended yet, oldest first.
    pub fn unfinished_calls(&self) -> Result<Vec<CallRow>, StoreError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {CALL_COLS} FROM calls WHERE ended IS NULL ORDER BY started"
        ))?;
        let rows = stmt.query_map([], call)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_store;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid")
    }

    #[test]
    fn sip_conversations_are_per_user() {
        let (_dir, mut store) = test_store();
        store.add_user(&user("bob"), Some("pw"), 1).expect("add");
        let tx = store.transaction().expect("tx");
        let carol = SipAddress::parse("sip:carol@example.net").expect("valid");
        assert!(
            tx.sip_conversation(&user("bob"), &carol, false)
                .expect("find")
                .is_none()
        );
        let conv = tx
            .sip_conversation(&user("bob"), &carol, true)
            .expect("create")
            .expect("row");
        assert_eq!(conv.sip.as_ref(), Some(&carol));
        let again = tx
            .sip_conversation(&user("bob"), &carol, true)
            .expect("find")
            .expect("row");
        assert_eq!(again.id, conv.id);
        let parts = tx.participants(conv.id).expect("participants");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].user, user("bob"));
        assert_eq!(parts[0].peer, None);
        assert!(tx.set_sip_delivered(conv.id, 3).expect("move"));
        assert!(!tx.set_sip_delivered(conv.id, 2).expect("not back"));
        let after = tx.conversation(conv.id).expect("read").expect("row");
        assert_eq!(after.sip_delivered, 3);
        assert!(tx.participants(conv.id).expect("p")[0].change > parts[0].change);
    }

    #[test]
    fn calls_round_trip() {
        let (_dir, mut store) = test_store();
        let tx = store.transaction().expect("tx");
        let mut row = CallRow {
            call_id: "c1@phone.alice.invalid".into(),
            caller: Author::User(user("alice")),
            caller_device: "phone".into(),
            callee: Author::Sip(SipAddress::parse("sip:carol@example.net").expect("valid")),
            branches: vec![],
            media: vec!["audio".into(), "video".into()],
            rang: false,
            started: 10,
            answered: None,
            answered_by: None,
            ended: None,
            outcome: None,
        };
        assert!(tx.insert_call(&row).expect("insert"));
        assert!(!tx.insert_call(&row).expect("twice"));
        assert_eq!(tx.unfinished_calls().expect("list"), vec![row.clone()]);
        row.branches = vec!["phone".into(), "laptop".into()];
        row.rang = true;
        row.answered = Some(20);
        row.answered_by = Some("laptop".into());
        row.ended = Some(30);
        row.outcome = Some(0);
        tx.update_call(&row).expect("update");
        assert_eq!(tx.call(&row.call_id).expect("read"), Some(row));
        assert!(tx.unfinished_calls().expect("list").is_empty());
    }
}
