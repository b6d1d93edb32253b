//! VerneMQ's webhooks (`vmq_webhooks`): `POST` with the hook's name in the `vernemq-hook`
//! header. Handled: `auth_on_register`, `auth_on_subscribe`, `auth_on_publish` and their
//! MQTT 5 variants (`_m5`).
//!
//! Answers: `{"result": "ok"}`; `{"result": {"error": "..."}}` to refuse; for a subscribe
//! where some filters are refused, `ok` with the list of topics in which each refused one
//! has QoS 128 (MQTT 3.1.1; `topics` at the top level) or 135 (MQTT 5, "not authorized";
//! under `modifiers`), so the client gets a SUBACK failure for those alone. No
//! `cache-control` header: the contact rule changes while a client is connected.

use std::sync::Arc;

use crate::login::Logins;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use mqchat_proto::Access;
use serde_json::{Value, json};

use super::{BadRequest, Fields, Login, allowed, body_fields, login};

fn ok() -> Response {
    super::json(json!({"result": "ok"}))
}

fn refuse(reason: &str) -> Response {
    super::json(json!({"result": {"error": reason}}))
}

/// `POST /vernemq`.
pub(crate) async fn hook(
    State(logins): State<Arc<Logins>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let hook = headers
        .get("vernemq-hook")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| BadRequest("missing header vernemq-hook".into()))?
        .to_owned();
    let fields = body_fields(&headers, &body)?;
    match hook.as_str() {
        "auth_on_register" | "auth_on_register_m5" => register(&logins, &fields).await,
        "auth_on_subscribe" => subscribe(&logins, &fields, false).await,
        "auth_on_subscribe_m5" => subscribe(&logins, &fields, true).await,
        "auth_on_publish" | "auth_on_publish_m5" => publish(&logins, &fields).await,
        other => Err(BadRequest(format!(
            "hook {other:?} is not handled here (register only auth_on_register, \
             auth_on_subscribe, auth_on_publish and their _m5 variants)"
        ))),
    }
}

async fn register(logins: &Arc<Logins>, fields: &Fields) -> Result<Response, BadRequest> {
    let (username, client_id) = (fields.text("username")?, fields.text("client_id")?);
    mountpoint(fields)?;
    let password = fields.opt_text("password")?;
    Ok(
        match login(logins, client_id, username, password, fields.peer()).await {
            Login::Hub | Login::Device => ok(),
            Login::Refused => refuse("not_allowed"),
        },
    )
}

async fn subscribe(
    logins: &Arc<Logins>,
    fields: &Fields,
    v5: bool,
) -> Result<Response, BadRequest> {
    let (username, client_id) = (fields.text("username")?, fields.text("client_id")?);
    mountpoint(fields)?;
    let mut answered = Vec::new();
    let mut refused = 0;
    for item in fields.array("topics")? {
        let topic = item
            .get("topic")
            .and_then(Value::as_str)
            .ok_or_else(|| BadRequest("each of \"topics\" needs a string \"topic\"".into()))?;
        let qos = item
            .get("qos")
            .and_then(Value::as_u64)
            .ok_or_else(|| BadRequest("each of \"topics\" needs a number \"qos\"".into()))?;
        let allowed = allowed(logins.gate(), username, client_id, Access::Subscribe, topic).await;
        if !allowed {
            refused += 1;
        }
        let qos = match (allowed, v5) {
            (true, _) => qos,
            (false, false) => 128,
            (false, true) => 135,
        };
        answered.push(json!({"topic": topic, "qos": qos}));
    }
    if refused == 0 {
        return Ok(ok());
    }
    Ok(super::json(if v5 {
        json!({"result": "ok", "modifiers": {"topics": answered}})
    } else {
        json!({"result": "ok", "topics": answered})
    }))
}

async fn publish(logins: &Arc<Logins>, fields: &Fields) -> Result<Response, BadRequest> {
    let (username, client_id) = (fields.text("username")?, fields.text("client_id")?);
    mountpoint(fields)?;
    let topic = fields.text("topic")?;
    let retain = fields.flag("retain")?;
    Ok(
        if allowed(
            logins.gate(),
            username,
            client_id,
            Access::Publish { retain },
            topic,
        )
        .await
        {
            ok()
        } else {
            refuse("not_allowed")
        },
    )
}

/// mqchat's topic tree is not mounted: a client in another mountpoint is a misconfiguration
/// the broker should hear about.
fn mountpoint(fields: &Fields) -> Result<(), BadRequest> {
    match fields.opt_text("mountpoint")? {
        None | Some("") => Ok(()),
        Some(other) => Err(BadRequest(format!(
            "mountpoint {other:?}: mqchat expects the default mountpoint \"\""
        ))),
    }
}
