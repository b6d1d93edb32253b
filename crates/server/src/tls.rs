//! TLS around the server: the `[tls]` settings, the watch on the certificate's files, the
//! HTTP endpoint over TLS (a certificate replaced without a restart), the rustls settings
//! the hub and the SIP gateway use to reach a broker over `mqtts://`, and the warning for
//! listeners that serve the network without TLS.
//!
//! mqchat's own TLS is rustls on ring, TLS 1.2 and 1.3 only (the embedded broker's
//! listeners are rmqtt's, see `mqchat_broker`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use mqchat_broker::TlsFiles;
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The `[tls]` section: the certificate this process serves TLS with (`mqchat serve`: its
/// `listen_tls` and `listen_wss` listeners; `mqchat hub`: its HTTP endpoint).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM: the server's certificate first, then intermediates.
    pub cert: Option<PathBuf>,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// How often the files are checked for a change (their time, size or inode), in
    /// seconds; a change reloads them, as SIGHUP does. 0: only on SIGHUP.
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            reload_interval_secs: 5,
        }
    }
}

impl TlsConfig {
    /// The certificate's files, when both are given; an error when only one is.
    pub fn files(&self) -> Result<Option<TlsFiles>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) => Ok(None),
            _ => Err("[tls] needs both cert and key (--tls-cert, --tls-key)".into()),
        }
    }

    /// How often to check the files, if at all.
    pub(crate) fn interval(&self) -> Option<Duration> {
        (self.reload_interval_secs > 0).then(|| Duration::from_secs(self.reload_interval_secs))
    }
}

/// The warning for a listener that serves more than this machine without TLS, if `addr`
/// is such a listener.
pub(crate) fn warn_if_plain_on_network(setting: &str, addr: Option<SocketAddr>) {
    if let Some(addr) = addr
        && !addr.ip().is_loopback()
    {
        tracing::warn!(
            %addr,
            "{setting} serves {addr} without TLS: passwords and messages cross the network in \
             clear; serve TLS (listen_tls, listen_wss, [tls]) or keep it on 127.0.0.1"
        );
    }
}

/// What the watch compares: each file's modification time, size and inode.
type Stamp = Vec<Option<(std::time::SystemTime, u64, u64)>>;

fn stamp(files: &TlsFiles) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let mut stamp = Vec::with_capacity(2);
    for path in [&files.cert, &files.key] {
        let meta = std::fs::metadata(path).ok();
        stamp.push(meta.and_then(|m| Some((m.modified().ok()?, m.len(), m.ino()))));
    }
    stamp
}

/// Checks a certificate's files every so often and calls `reload` when they changed. A
/// reload that fails is logged and not retried until the files change again (or SIGHUP).
#[derive(Debug)]
pub(crate) struct Watcher {
    task: JoinHandle<()>,
}

impl Watcher {
    pub(crate) fn start<F, Fut>(files: TlsFiles, every: Duration, reload: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        // Before returning: a change made right after the start is a change.
        let mut last = stamp(&files);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let now = stamp(&files);
                if now == last {
                    continue;
                }
                last = now;
                tracing::info!(cert = %files.cert.display(), "the certificate's files changed");
                if let Err(e) = reload().await {
                    tracing::error!(error = %e, "the changed certificate was not loaded; the old one stays");
                }
            }
        });
        Self { task }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.2 and 1.3: rustls has nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A certificate and key that [`Certificate::reload`] replaces; new TLS connections get
/// the current one.
#[derive(Debug)]
pub struct Certificate {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Reads the files; the error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, String> {
        let key = certified_key(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on an error the certificate stays what it was.
    pub fn reload(&self) -> Result<(), String> {
        let key = Arc::new(certified_key(&self.files)?);
        match self.current.write() {
            Ok(mut current) => *current = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// The files.
    pub(crate) fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// rustls server settings that take their certificate from this one.
    fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        Ok(rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(self.clone()))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    mqchat_broker::check_files(files).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate file {}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("TLS key file {}: {e}", files.key.display()))?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        format!(
            "TLS key file {} with certificate {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })
}

/// A TCP listener whose connections come out with their TLS handshake done (each
/// handshake in a task of its own, so a slow client holds up no one), for `axum::serve`.
#[derive(Debug)]
pub(crate) struct HttpsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    task: JoinHandle<()>,
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpsListener {
    pub(crate) async fn bind(
        addr: SocketAddr,
        certificate: &Arc<Certificate>,
    ) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        let local = tcp.local_addr()?;
        let config = certificate.server_config().map_err(std::io::Error::other)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, accepted) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: give the others time to close.
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            accepted,
            task,
        })
    }
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// rustls client settings trusting the CA certificates of `ca_file` (PEM), or the system's
/// roots without one.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |e: String| format!("CA file {}: {e}", path.display());
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no system root certificates found: give a CA file (broker_ca_file)".into(),
                );
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Where an MQTT client of the server's (the hub's link, a session takeover, the SIP
/// gateway) connects: host, port, and TLS settings for `mqtts://`.
#[derive(Clone, Debug)]
pub(crate) struct BrokerTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl BrokerTarget {
    /// A plain MQTT listener at `addr` (the embedded broker's loopback listener).
    pub(crate) fn plain(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: None,
        }
    }

    /// rumqttc options for a client `client_id` of this broker.
    pub(crate) fn options(&self, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, &self.host, self.port);
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        options
    }
}
