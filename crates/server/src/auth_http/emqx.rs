//! EMQX 5 (HTTP authentication and HTTP authorization) and rmqtt's `rmqtt-auth-http`.
//!
//! EMQX builds the request from a body template the operator writes (docs/BROKERS.md gives
//! the one to use: `username`, `password`, `clientid`; `action`, `topic`, `retain`) and
//! reads `{"result": "allow" | "deny", "is_superuser": bool}`. rmqtt-auth-http sends
//! `clientid`, `username`, `password` (form, JSON or query string), and for ACL `access`
//! (`1` subscribe, `2` publish) and `topic`; it reads the body text `allow` / `deny` and a
//! `X-Superuser: true` header (older versions read any other text as "allow", so the answer
//! is plain text, not JSON).

use std::sync::Arc;

use crate::login::Logins;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mqchat_proto::Access;
use serde_json::json;

use super::{BadRequest, Fields, Login, allowed, body_fields, login};

/// `POST /emqx/authn`.
pub(crate) async fn authn(
    State(logins): State<Arc<Logins>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let fields = body_fields(&headers, &body)?;
    let (username, client_id) = (fields.text("username")?, fields.text("clientid")?);
    let password = fields.opt_text("password")?;
    Ok(super::json(
        match login(&logins, client_id, username, password, fields.peer()).await {
            Login::Hub => json!({"result": "allow", "is_superuser": true}),
            Login::Device => json!({"result": "allow", "is_superuser": false}),
            Login::Refused => json!({"result": "deny"}),
        },
    ))
}

/// `POST /emqx/authz`.
pub(crate) async fn authz(
    State(logins): State<Arc<Logins>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let fields = body_fields(&headers, &body)?;
    let (username, client_id) = (fields.text("username")?, fields.text("clientid")?);
    let topic = fields.text("topic")?;
    let access = match fields.text("action")? {
        "publish" => Access::Publish {
            retain: fields.flag("retain")?,
        },
        "subscribe" => Access::Subscribe,
        other => {
            return Err(BadRequest(format!(
                "action {other:?}: expected \"publish\" or \"subscribe\""
            )));
        }
    };
    let ok = allowed(logins.gate(), username, client_id, access, topic).await;
    Ok(super::json(
        json!({"result": if ok { "allow" } else { "deny" }}),
    ))
}

/// rmqtt sends its parameters as a query string for `GET`, as a form or JSON otherwise.
fn rmqtt_fields(
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Fields, BadRequest> {
    if *method == Method::GET {
        Ok(Fields::from_form(query.unwrap_or_default().as_bytes()))
    } else {
        body_fields(headers, body)
    }
}

/// rmqtt's answer: the text `allow` or `deny`, and `X-Superuser: true` for the hub.
fn rmqtt_answer(allow: bool, superuser: bool) -> Response {
    let text = if allow { "allow" } else { "deny" };
    let mut response =
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response();
    if superuser {
        response
            .headers_mut()
            .insert("x-superuser", axum::http::HeaderValue::from_static("true"));
    }
    response
}

/// `GET`/`POST /rmqtt/auth`.
pub(crate) async fn rmqtt_auth(
    State(logins): State<Arc<Logins>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let fields = rmqtt_fields(&method, query.as_deref(), &headers, &body)?;
    let (username, client_id) = (fields.text("username")?, fields.text("clientid")?);
    // rmqtt fills `%P` with an empty string when the client sent no password.
    let password = fields.opt_text("password")?.filter(|p| !p.is_empty());
    Ok(
        match login(&logins, client_id, username, password, fields.peer()).await {
            Login::Hub => rmqtt_answer(true, true),
            Login::Device => rmqtt_answer(true, false),
            Login::Refused => rmqtt_answer(false, false),
        },
    )
}

/// `GET`/`POST /rmqtt/acl`.
pub(crate) async fn rmqtt_acl(
    State(logins): State<Arc<Logins>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let fields = rmqtt_fields(&method, query.as_deref(), &headers, &body)?;
    let (username, client_id) = (fields.text("username")?, fields.text("clientid")?);
    let topic = fields.text("topic")?;
    let access = match fields.text("access")? {
        "1" => Access::Subscribe,
        "2" => Access::Publish {
            retain: fields.flag("retain")?,
        },
        other => {
            return Err(BadRequest(format!(
                "access {other:?}: expected 1 (subscribe) or 2 (publish)"
            )));
        }
    };
    let ok = allowed(logins.gate(), username, client_id, access, topic).await;
    Ok(rmqtt_answer(ok, false))
}
