//! The broker's TLS listeners (MQTT over TLS, MQTT over WebSocket over TLS), whose
//! certificate can be replaced while the broker runs.
//!
//! rmqtt reads the certificate chain and key once, when a listener is made, and has no way
//! to change them afterwards. So each TLS listener runs as its own rmqtt server task, and a
//! reload makes a second listening socket on the same port (`SO_REUSEPORT`) from the new
//! files, starts it, and only then ends the old task: new connections get the new
//! certificate, connections already made keep theirs (each runs in a task of its own, which
//! outlives the listener). When the new files do not make a listener, the old one keeps
//! serving. rmqtt builds its TLS settings with rustls' safe defaults: TLS 1.2 and 1.3 only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};

use rmqtt::context::ServerContext;
use rmqtt::net::rustls::pki_types::pem::PemObject;
use rmqtt::net::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer;
use rmqtt::types::ListenerId;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A certificate chain and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate first, then the intermediates (PEM `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The private key of the first certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate could not be used. The operator's fault: the message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file cannot be read or holds no certificate.
    #[error("TLS certificate file {}: {reason}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key file cannot be read or holds no private key.
    #[error("TLS key file {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The files do not make a TLS listener (a key that is not the certificate's, say), or
    /// the listening socket could not be made.
    #[error("TLS listener on {addr}: {reason}")]
    Listener {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Checks that `files` hold at least one certificate and a private key, for an error that
/// names the file at fault (rmqtt's own says only that reading failed).
pub fn check_files(files: &TlsFiles) -> Result<(), TlsError> {
    let cert = |reason: String| TlsError::Cert {
        path: files.cert.clone(),
        reason,
    };
    let pem = std::fs::read(&files.cert).map_err(|e| cert(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert(format!("not a PEM certificate chain ({e})")))?;
    if certs.is_empty() {
        return Err(cert("no PEM certificate in it".into()));
    }
    let key = |reason: String| TlsError::Key {
        path: files.key.clone(),
        reason,
    };
    let pem = std::fs::read(&files.key).map_err(|e| key(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| key(format!("no PEM private key in it ({e})")))?;
    Ok(())
}

/// Which protocol a TLS listener speaks inside TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Secure {
    /// MQTT over TLS (`mqtts://`, port 8883 by convention).
    Mqtt,
    /// MQTT over WebSocket over TLS (`wss://`).
    WebSocket,
}

/// One TLS listener: its address (port 0 resolved) and the task serving it.
struct SecureListener {
    kind: Secure,
    addr: SocketAddr,
    id: ListenerId,
    server: JoinHandle<()>,
}

/// The broker's TLS listeners and what a reload needs to make them again.
pub(crate) struct SecureListeners {
    scx: ServerContext,
    /// The device listeners' settings; address, name and files are set per listener.
    template: Builder,
    files: TlsFiles,
    /// A fresh rmqtt listener id for every listener made (rmqtt refuses a reused one).
    next_id: AtomicU16,
    first_id: ListenerId,
    /// The bound addresses, which reloads keep.
    addrs: Vec<(Secure, SocketAddr)>,
    listeners: Mutex<Vec<SecureListener>>,
}

impl std::fmt::Debug for SecureListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureListeners")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl SecureListeners {
    /// Binds and starts the TLS listeners asked for. `first_id` is the first rmqtt listener
    /// id they may use (those below are the broker's other listeners).
    pub(crate) fn start(
        scx: &ServerContext,
        template: Builder,
        files: TlsFiles,
        wanted: &[(Secure, SocketAddr)],
        first_id: ListenerId,
    ) -> Result<Self, TlsError> {
        check_files(&files)?;
        let mut this = Self {
            scx: scx.clone(),
            template,
            files,
            next_id: AtomicU16::new(first_id),
            first_id,
            addrs: Vec::new(),
            listeners: Mutex::new(Vec::new()),
        };
        let mut listeners = Vec::new();
        for &(kind, addr) in wanted {
            let listener = this.bind(kind, addr)?;
            let addr = listener.local_addr().map_err(|e| TlsError::Listener {
                addr,
                reason: e.to_string(),
            })?;
            let (id, server) = this.serve(listener);
            listeners.push(SecureListener {
                kind,
                addr,
                id,
                server,
            });
        }
        this.addrs = listeners.iter().map(|l| (l.kind, l.addr)).collect();
        *this.listeners.get_mut() = listeners;
        Ok(this)
    }

    /// The bound address of the listener of `kind`.
    pub(crate) fn addr(&self, kind: Secure) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, addr)| *addr)
    }

    /// Makes every TLS listener again from the files as they are now; on an error the
    /// listeners keep the certificate they had. Reloads run one at a time.
    pub(crate) async fn reload(&self) -> Result<(), TlsError> {
        check_files(&self.files)?;
        let mut listeners = self.listeners.lock().await;
        // Every new socket first, so that a failure changes nothing.
        let mut fresh = Vec::with_capacity(listeners.len());
        for old in listeners.iter() {
            fresh.push(self.bind(old.kind, old.addr)?);
        }
        for (old, listener) in listeners.iter_mut().zip(fresh) {
            let (id, server) = self.serve(listener);
            let old_server = std::mem::replace(&mut old.server, server);
            let old_id = std::mem::replace(&mut old.id, id);
            // The new socket is listening: connections arriving now queue on it. Those
            // already accepted by the old one run in their own tasks and stay up; rmqtt
            // looks a listener's settings up by id only when it starts.
            old_server.abort();
            self.scx.listen_cfgs.remove(&old_id);
        }
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Stops accepting on every TLS listener for good (live connections stay; later
    /// reloads do nothing).
    pub(crate) async fn stop_accepting(&self) {
        let mut listeners = self.listeners.lock().await;
        for listener in listeners.iter() {
            listener.server.abort();
        }
        for listener in listeners.drain(..) {
            while !listener.server.is_finished() {
                tokio::task::yield_now().await;
            }
        }
    }

    /// A listening socket on `addr` with the current files. `SO_REUSEPORT` lets the next
    /// reload bind the same port while this one still listens.
    fn bind(&self, kind: Secure, addr: SocketAddr) -> Result<Listener, TlsError> {
        let cert = self.files.cert.to_string_lossy().into_owned();
        let key = self.files.key.to_string_lossy().into_owned();
        let name = match kind {
            Secure::Mqtt => "tls",
            Secure::WebSocket => "wss",
        };
        let listener = self
            .template
            .clone()
            .name(name)
            .laddr(addr)
            .reuseaddr(Some(true))
            .reuseport(Some(true))
            .tls_cert(Some(cert))
            .tls_key(Some(key))
            .bind();
        let listener = match kind {
            Secure::Mqtt => listener.and_then(Listener::tls),
            Secure::WebSocket => listener.and_then(Listener::wss),
        };
        // `{:#}`: rmqtt's errors carry their cause as context.
        listener.map_err(|e| TlsError::Listener {
            addr,
            reason: format!("{e:#}"),
        })
    }

    /// Serves a listener in a task of its own, under an rmqtt listener id no other listener
    /// has (rmqtt panics on a duplicate).
    fn serve(&self, listener: Listener) -> (ListenerId, JoinHandle<()>) {
        let mut id = self.next_id.fetch_add(1, Ordering::Relaxed);
        while id < self.first_id || self.scx.listen_cfgs.contains_key(&id) {
            id = self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let server = MqttServer::new(self.scx.clone())
            .listener_by_id(listener, id)
            .build();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "TLS listener stopped");
            }
        });
        (id, task)
    }
}
