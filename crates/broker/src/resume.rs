//! Resent deliveries keep their order when a device resumes its session.
//!
//! MQTT 5 section 4.6 (and 3.1.1 section 4.6) requires a server that resends unacknowledged
//! PUBLISH packets to resend them in the order it first sent them. rmqtt 0.24 takes a
//! session's unacknowledged deliveries out oldest first when a connection takes the session
//! over (`OutInflight::to_inflight_messages`) but resends them by popping that list from its
//! end (`SessionState::transfer_session_state`), so a device that comes back with three
//! unacknowledged events receives them newest first.
//!
//! The list travels through rmqtt's session registry, which is an extension point (the
//! [`Shared`] trait that cluster plugins replace): [`InOrder`] wraps the registry and, where
//! a taken-over session's list passes ([`Entry::kick`]), reverses it so that rmqtt's pop
//! yields the oldest first. Everything else is delegated unchanged. Remove it when rmqtt
//! resends in order (the test `unacknowledged_deliveries_are_resent_in_their_order_after_a_
//! reconnect` in `crates/server/tests/raw.rs` says when).

use std::time::Duration;

use async_trait::async_trait;
use rmqtt::Result;
use rmqtt::session::Session;
use rmqtt::shared::{Entry, RetainLoadCallback, Shared};
use rmqtt::types::{
    ForwardedCount, ForwardedRecipients, From, HealthInfo, Id, IsAdmin, MsgID, NodeHealthStatus,
    NodeId, OfflineSession, Publish, Reason, Retain, SessionStatus, SubRelations, SubRelationsMap,
    SubsSearchParams, SubsSearchResult, Subscribe, SubscribeReturn, To, TopicFilter, TopicName, Tx,
    Unsubscribe,
};

/// A failed forward: the recipients reached, and what could not be delivered to whom.
type Undelivered<T> = (T, Vec<(To, From, Publish, Reason)>);

/// rmqtt's session registry, with taken-over sessions' unacknowledged deliveries in an order
/// that rmqtt resends oldest first.
pub(crate) struct InOrder(pub(crate) Box<dyn Shared>);

/// An entry of the registry whose [`Entry::kick`] hands the list over in that order.
struct InOrderEntry(Box<dyn Entry>);

impl InOrderEntry {
    fn boxed(entry: Box<dyn Entry>) -> Box<dyn Entry> {
        Box::new(Self(entry))
    }
}

#[async_trait]
impl Entry for InOrderEntry {
    async fn try_lock(&self) -> Result<Box<dyn Entry>> {
        self.0.try_lock().await.map(InOrderEntry::boxed)
    }

    fn id(&self) -> Id {
        self.0.id()
    }

    fn id_same(&self) -> Option<bool> {
        self.0.id_same()
    }

    async fn set(&mut self, session: Session, tx: Tx) -> Result<()> {
        self.0.set(session, tx).await
    }

    async fn remove(&mut self) -> Result<Option<(Session, Tx)>> {
        self.0.remove().await
    }

    async fn remove_with(&mut self, id: &Id) -> Result<Option<(Session, Tx)>> {
        self.0.remove_with(id).await
    }

    async fn kick(
        &mut self,
        clean_start: bool,
        clear_subscriptions: bool,
        is_admin: IsAdmin,
    ) -> Result<OfflineSession> {
        let mut offline = self
            .0
            .kick(clean_start, clear_subscriptions, is_admin)
            .await?;
        if let OfflineSession::Exist(Some(info)) = &mut offline {
            // Oldest first here; rmqtt resends by popping from the end.
            info.inflight_messages.reverse();
        }
        Ok(offline)
    }

    async fn online(&self) -> bool {
        self.0.online().await
    }

    async fn is_connected(&self) -> bool {
        self.0.is_connected().await
    }

    fn session(&self) -> Option<Session> {
        self.0.session()
    }

    fn exist(&self) -> bool {
        self.0.exist()
    }

    fn tx(&self) -> Option<Tx> {
        self.0.tx()
    }

    async fn subscribe(&self, subscribe: &Subscribe) -> Result<SubscribeReturn> {
        self.0.subscribe(subscribe).await
    }

    async fn unsubscribe(&self, unsubscribe: &Unsubscribe) -> Result<bool> {
        self.0.unsubscribe(unsubscribe).await
    }

    async fn publish(
        &self,
        from: From,
        p: Publish,
    ) -> std::result::Result<(), (From, Publish, Reason)> {
        self.0.publish(from, p).await
    }

    async fn subscriptions(&self) -> Option<Vec<SubsSearchResult>> {
        self.0.subscriptions().await
    }
}

#[async_trait]
impl Shared for InOrder {
    fn entry(&self, id: Id) -> Box<dyn Entry> {
        InOrderEntry::boxed(self.0.entry(id))
    }

    fn exist(&self, client_id: &str) -> bool {
        self.0.exist(client_id)
    }

    async fn forwards(
        &self,
        msg_id: Option<MsgID>,
        from: From,
        publish: Publish,
    ) -> std::result::Result<ForwardedCount, Undelivered<ForwardedCount>> {
        self.0.forwards(msg_id, from, publish).await
    }

    async fn forwards_and_get_shareds(
        &self,
        from: From,
        publish: Publish,
    ) -> std::result::Result<(SubRelationsMap, ForwardedRecipients), Undelivered<ForwardedRecipients>>
    {
        self.0.forwards_and_get_shareds(from, publish).await
    }

    async fn forwards_to(
        &self,
        from: From,
        publish: &Publish,
        relations: SubRelations,
        msg_id: Option<MsgID>,
    ) -> std::result::Result<ForwardedRecipients, Undelivered<ForwardedRecipients>> {
        self.0.forwards_to(from, publish, relations, msg_id).await
    }

    fn iter(&self) -> Box<dyn Iterator<Item = Box<dyn Entry>> + Sync + Send + '_> {
        Box::new(self.0.iter().map(InOrderEntry::boxed))
    }

    fn random_session(&self) -> Option<Session> {
        self.0.random_session()
    }

    async fn session_status(&self, client_id: &str) -> Option<SessionStatus> {
        self.0.session_status(client_id).await
    }

    async fn client_states_count(&self) -> usize {
        self.0.client_states_count().await
    }

    fn sessions_count(&self) -> usize {
        self.0.sessions_count()
    }

    async fn query_subscriptions(&self, q: &SubsSearchParams) -> Vec<SubsSearchResult> {
        self.0.query_subscriptions(q).await
    }

    async fn subscriptions_count(&self) -> usize {
        self.0.subscriptions_count().await
    }

    fn grpc_enable(&self) -> bool {
        self.0.grpc_enable()
    }

    fn node_name(&self, id: NodeId) -> String {
        self.0.node_name(id)
    }

    async fn check_health(&self) -> Result<HealthInfo> {
        self.0.check_health().await
    }

    async fn health_status(&self) -> Result<NodeHealthStatus> {
        self.0.health_status().await
    }

    fn operation_is_busy(&self) -> bool {
        self.0.operation_is_busy()
    }

    async fn retain_load_with(
        &self,
        topic_filter: &TopicFilter,
        cb: std::sync::Arc<dyn RetainLoadCallback>,
    ) -> Result<Vec<(NodeId, MsgID)>> {
        self.0.retain_load_with(topic_filter, cb).await
    }

    async fn retain_set_broadcast(
        &self,
        topic: &TopicName,
        retain: &Retain,
        expiry_interval: Option<Duration>,
    ) -> Result<()> {
        self.0
            .retain_set_broadcast(topic, retain, expiry_interval)
            .await
    }
}
