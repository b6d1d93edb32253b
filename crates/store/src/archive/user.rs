//! Users as the hub's transaction sees them: whether they exist, their profiles, and
//! their devices.

use mqchat_proto::{DeviceId, UserId};
use rusqlite::{OptionalExtension, params};

use super::Tx;
use super::row::{i, u};
use crate::{DeviceRecord, StoreError};

/// A user's profile.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProfileRow {
    /// Display name.
    pub name: Option<String>,
    /// Avatar reference.
    pub avatar: Option<String>,
    /// Status text.
    pub status: Option<String>,
    /// Version (0: never set).
    pub version: u64,
    /// When it was last changed.
    pub ts: Option<u64>,
}

impl Tx<'_> {
    /// Whether a user exists (and is enabled, when `active_only`).
    pub fn user_exists(&self, user: &UserId, active_only: bool) -> Result<bool, StoreError> {
        let disabled: Option<bool> = self
            .tx
            .prepare_cached("SELECT disabled FROM users WHERE id = ?1")?
            .query_row([user.as_str()], |r| r.get(0))
            .optional()?;
        Ok(matches!(disabled, Some(d) if !(d && active_only)))
    }

    /// A user's profile.
    pub fn profile(&self, user: &UserId) -> Result<ProfileRow, StoreError> {
        let row = self
            .tx
            .prepare_cached(
                "SELECT profile_name, profile_avatar, profile_status, profile_version, profile_ts FROM users WHERE id = ?1",
            )?
            .query_row([user.as_str()], |r| {
                Ok(ProfileRow {
                    name: r.get(0)?,
                    avatar: r.get(1)?,
                    status: r.get(2)?,
                    version: u(r.get(3)?),
                    ts: r.get::<_, Option<i64>>(4)?.map(u),
                })
            })
            .optional()?;
        row.ok_or_else(|| StoreError::NotFound(format!("user {user}")))
    }

    /// Stores a profile (the caller has merged the change), with the next version.
    pub fn set_profile(&self, user: &UserId, profile: &ProfileRow) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE users SET profile_name = ?2, profile_avatar = ?3, profile_status = ?4, profile_version = ?5,
                 profile_ts = ?6 WHERE id = ?1",
            )?
            .execute(params![
                user.as_str(),
                profile.name,
                profile.avatar,
                profile.status,
                i(profile.version),
                profile.ts.map(i)
            ])?;
        Ok(())
    }

    /// A user's devices that may connect, by id.
    pub fn active_devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let mut all = crate::account::list_devices(&self.tx, user)?;
        all.retain(|d| d.revoked_at.is_none());
        Ok(all)
    }

    /// Revokes one of a user's devices. False if it is unknown or revoked already.
    pub fn revoke_device(
        &self,
        user: &UserId,
        device: &DeviceId,
        now: u64,
    ) -> Result<bool, StoreError> {
        crate::account::revoke(&self.tx, user, device, now)
    }
}

#[cfg(test)]
mod tests {
    use mqchat_proto::body::ContactState;

    use super::*;
    use crate::archive::tests::{setup, user};

    #[test]
    fn profiles_and_contacts() {
        let (_dir, mut store) = setup();
        let tx = store.transaction().expect("tx");
        assert_eq!(tx.profile(&user("alice")).expect("profile").version, 0);
        let p = ProfileRow {
            name: Some("Alice".into()),
            version: 1,
            ts: Some(9),
            ..ProfileRow::default()
        };
        tx.set_profile(&user("alice"), &p).expect("set");
        assert_eq!(tx.profile(&user("alice")).expect("profile"), p);
        let conv = tx
            .direct(&user("alice"), &user("bob"), true)
            .expect("create")
            .expect("created")
            .id;
        tx.set_contact(conv, &user("alice"), ContactState::Accepted)
            .expect("set");
        tx.set_contact(conv, &user("bob"), ContactState::Accepted)
            .expect("set");
        tx.commit().expect("commit");
        assert!(
            store
                .may_see_presence(&user("bob"), &user("alice"))
                .expect("query")
        );
        assert!(
            store
                .may_see_presence(&user("alice"), &user("alice"))
                .expect("query")
        );
    }
}
