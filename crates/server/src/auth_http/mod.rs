//! The hub's HTTP endpoint for external brokers' authentication and authorization.
//!
//! Each broker family asks in its own shape and expects its own answer; every answer comes
//! from the same [`Gate`] (credentials in the store, [`mqchat_proto::authorize`] for topics)
//! and the same [`Logins`] (the password pool, the throttling of failed logins by source
//! address when the broker sends one: `peerhost`, `ipaddress` or `peer_addr`) that the
//! embedded broker's hooks use:
//!
//! | path | asked by |
//! |---|---|
//! | `POST /emqx/authn`, `POST /emqx/authz` | EMQX 5 HTTP authentication and authorization |
//! | `POST`/`GET /rmqtt/auth`, `/rmqtt/acl` | rmqtt's `rmqtt-auth-http` plugin |
//! | `POST /mosquitto/user`, `/superuser`, `/acl` | mosquitto-go-auth, HTTP backend, JSON mode |
//! | `POST /vernemq` (hook in the `vernemq-hook` header) | VerneMQ's `vmq_webhooks` |
//! | `GET /health` | load balancers, scripts |
//!
//! Request fields are read from a JSON object, a form (`application/x-www-form-urlencoded`)
//! or, for `GET`, the query string. A request that cannot be read (bad JSON, a missing
//! field) gets `400` with `{"error": "..."}` and a log line; a readable request about
//! someone who may not do something gets the broker's "deny" answer.

mod emqx;
mod mosquitto;
mod vernemq;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mqchat_hub::{Admission, Door, Gate};
use mqchat_proto::{Access, DeviceIdentity};
use serde_json::{Map, Value};

use crate::login::Logins;
use crate::tls::{Certificate, HttpsListener};

/// The routes, over the logins and their gate. Public so tests can drive it without a
/// socket.
pub fn router(logins: Arc<Logins>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/emqx/authn", post(emqx::authn))
        .route("/emqx/authz", post(emqx::authz))
        .route("/rmqtt/auth", get(emqx::rmqtt_auth).post(emqx::rmqtt_auth))
        .route("/rmqtt/acl", get(emqx::rmqtt_acl).post(emqx::rmqtt_acl))
        .route("/mosquitto/user", post(mosquitto::user))
        .route("/mosquitto/superuser", post(mosquitto::superuser))
        .route("/mosquitto/acl", post(mosquitto::acl))
        .route("/vernemq", post(vernemq::hook))
        .with_state(logins)
}

/// The endpoint, listening.
#[derive(Debug)]
pub struct AuthHttp {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthHttp {
    /// Binds `addr` and serves the routes until [`AuthHttp::stop`]: over TLS (HTTPS) with a
    /// `certificate`, in clear without one.
    pub async fn start(
        addr: SocketAddr,
        logins: Arc<Logins>,
        certificate: Option<Arc<Certificate>>,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let app = router(logins);
        let (addr, task) = match certificate {
            Some(certificate) => {
                let listener = HttpsListener::bind(addr, &certificate).await?;
                let addr = axum::serve::Listener::local_addr(&listener)?;
                let served = axum::serve(listener, app).with_graceful_shutdown(stopped);
                (addr, tokio::spawn(async move { report(served.await) }))
            }
            None => {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                let addr = listener.local_addr()?;
                let served = axum::serve(listener, app).with_graceful_shutdown(stopped);
                (addr, tokio::spawn(async move { report(served.await) }))
            }
        };
        Ok(Self { addr, stop, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in progress finish (up to 2 s).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.task).await;
    }
}

fn report(served: std::io::Result<()>) {
    if let Err(e) = served {
        tracing::error!(error = %e, "auth HTTP endpoint failed");
    }
}

/// A request the endpoint cannot read: the peer's fault, answered with `400`.
#[derive(Debug)]
pub(crate) struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        tracing::warn!(error = %self.0, "bad auth request from the broker");
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": self.0 }).to_string(),
        )
            .into_response()
    }
}

/// A `200` JSON answer.
pub(crate) fn json(value: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The fields of a request, whatever its encoding.
#[derive(Debug)]
pub(crate) struct Fields(Map<String, Value>);

impl Fields {
    /// Reads a POST body: JSON unless the content type says form.
    pub(crate) fn from_body(headers: &HeaderMap, body: &[u8]) -> Result<Self, BadRequest> {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            return Ok(Self::from_form(body));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(BadRequest("the body must be a JSON object".into())),
            Err(e) => Err(BadRequest(format!("the body is not JSON: {e}"))),
        }
    }

    /// Reads `a=1&b=2` (a form body or a query string).
    pub(crate) fn from_form(text: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(text)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    }

    /// A string field that must be present.
    pub(crate) fn text(&self, name: &str) -> Result<&str, BadRequest> {
        match self.0.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(BadRequest(format!("field {name:?} must be a string"))),
            None => Err(BadRequest(format!("missing field {name:?}"))),
        }
    }

    /// The client's address, when the broker sends it (EMQX `peerhost`, rmqtt `ipaddress`,
    /// VerneMQ `peer_addr`).
    pub(crate) fn peer(&self) -> Option<IpAddr> {
        ["peerhost", "ipaddress", "peer_addr"]
            .iter()
            .find_map(|name| match self.0.get(*name) {
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            })
    }

    /// A string field that may be absent (or null).
    pub(crate) fn opt_text(&self, name: &str) -> Result<Option<&str>, BadRequest> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.text(name).map(Some),
        }
    }

    /// A flag given as a JSON boolean, `"true"`/`"false"`, or `1`/`0`; `false` when absent.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, BadRequest> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" || s == "1" => Ok(true),
            Some(Value::String(s)) if s == "false" || s == "0" || s.is_empty() => Ok(false),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(true),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(false),
            Some(other) => Err(BadRequest(format!("field {name:?}: {other} is not a flag"))),
        }
    }

    /// A small number given as a JSON number or a string of digits.
    pub(crate) fn number(&self, name: &str) -> Result<u64, BadRequest> {
        let bad = || BadRequest(format!("field {name:?} must be a number"));
        match self.0.get(name) {
            Some(Value::Number(n)) => n.as_u64().ok_or_else(bad),
            Some(Value::String(s)) => s.parse().map_err(|_| bad()),
            Some(_) => Err(bad()),
            None => Err(BadRequest(format!("missing field {name:?}"))),
        }
    }

    /// An array field that must be present.
    pub(crate) fn array(&self, name: &str) -> Result<&Vec<Value>, BadRequest> {
        match self.0.get(name) {
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(BadRequest(format!("field {name:?} must be an array"))),
            None => Err(BadRequest(format!("missing field {name:?}"))),
        }
    }
}

/// What the gate said about a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Login {
    /// A device.
    Device,
    /// The hub (a superuser).
    Hub,
    /// Refused.
    Refused,
}

/// Asks the gate about a CONNECT (passwords on the login pool).
pub(crate) async fn login(
    logins: &Logins,
    client_id: &str,
    username: &str,
    password: Option<&str>,
    peer: Option<IpAddr>,
) -> Login {
    let admission = logins
        .decide(
            client_id,
            Some(username),
            password.map(str::as_bytes),
            peer.map(|ip| SocketAddr::new(ip, 0)),
            Door::Broker,
        )
        .await;
    match admission {
        Admission::Device(_) => Login::Device,
        Admission::Hub => Login::Hub,
        Admission::BadCredentials
        | Admission::NotAuthorized
        | Admission::Throttled
        | Admission::TooManyDevices => Login::Refused,
    }
}

/// Asks the gate about a publish or subscribe by the client the broker authenticated as
/// `username` / `client_id`. The hub's username is trusted as such: the broker only lets
/// a client use it after this endpoint (or its password file) accepted the hub's secret.
pub(crate) async fn allowed(
    gate: &Arc<Gate>,
    username: &str,
    client_id: &str,
    access: Access,
    topic: &str,
) -> bool {
    if username == gate.hub_username() {
        return true;
    }
    let identity = match DeviceIdentity::from_connect(username, client_id) {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(username, client_id, topic, error = %e, "access denied: not a device identity");
            return false;
        }
    };
    if let Some(allowed) = gate.authorize_at_once(&identity, access, topic) {
        return allowed;
    }
    let gate = gate.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || gate.authorize(&identity, access, &topic))
        .await
        .unwrap_or(false)
}

/// Whether `username` is the hub's (superuser questions).
pub(crate) fn is_hub(gate: &Gate, username: &str) -> bool {
    username == gate.hub_username()
}

/// Reads a body into [`Fields`], for handlers.
pub(crate) fn body_fields(headers: &HeaderMap, body: &Bytes) -> Result<Fields, BadRequest> {
    Fields::from_body(headers, body)
}
