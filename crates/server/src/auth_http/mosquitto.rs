//! mosquitto-go-auth's HTTP backend (`auth_opt_backends http`), parameters as JSON or form,
//! `auth_opt_http_response_mode json`: every answer is `200` with `{"Ok": bool, "Error":
//! "..."}`.
//!
//! `/user` gets `username`, `password`, `clientid`; `/superuser` gets `username`; `/acl`
//! gets `username`, `clientid`, `topic` and `acc`: 1 read (Mosquitto asks before each
//! delivery, with the message's topic), 2 write, 3 read and write, 4 subscribe (with the
//! filter).

use std::sync::Arc;

use crate::login::Logins;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use mqchat_proto::Access;
use serde_json::json;

use super::{BadRequest, Login, allowed, body_fields, is_hub, login};

fn answer(ok: bool, error: &str) -> Response {
    super::json(json!({"Ok": ok, "Error": error}))
}

/// `POST /mosquitto/user`.
pub(crate) async fn user(
    State(logins): State<Arc<Logins>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let fields = body_fields(&headers, &body)?;
    let (username, client_id) = (fields.text("username")?, fields.text("clientid")?);
    let password = fields.opt_text("password")?;
    Ok(
        match login(&logins, client_id, username, password, fields.peer()).await {
            Login::Hub | Login::Device => answer(true, ""),
            Login::Refused => answer(false, "not authorized"),
        },
    )
}

/// `POST /mosquitto/superuser`: only the hub.
pub(crate) async fn superuser(
    State(logins): State<Arc<Logins>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let fields = body_fields(&headers, &body)?;
    let username = fields.text("username")?;
    Ok(if is_hub(logins.gate(), username) {
        answer(true, "")
    } else {
        answer(false, "not a superuser")
    })
}

/// `POST /mosquitto/acl`.
pub(crate) async fn acl(
    State(logins): State<Arc<Logins>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let fields = body_fields(&headers, &body)?;
    let (username, client_id) = (fields.text("username")?, fields.text("clientid")?);
    let topic = fields.text("topic")?;
    let accesses: &[Access] = match fields.number("acc")? {
        // Reading a delivered message is what subscribing to its exact topic allows.
        1 | 4 => &[Access::Subscribe],
        // go-auth's request does not carry the retain flag, so a retained publish on an
        // upstream topic is not refused here; the broker keeps it, but the hub's shared
        // subscription never receives retained messages, and a plain one would only see a
        // duplicate, which the hub drops.
        2 => &[Access::Publish { retain: false }],
        3 => &[Access::Subscribe, Access::Publish { retain: false }],
        other => {
            return Err(BadRequest(format!(
                "acc {other}: expected 1 (read), 2 (write), 3 (read and write) or 4 (subscribe)"
            )));
        }
    };
    for access in accesses {
        if !allowed(logins.gate(), username, client_id, *access, topic).await {
            return Ok(answer(false, "not authorized"));
        }
    }
    Ok(answer(true, ""))
}
