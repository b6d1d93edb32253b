//! The TLS settings of `mqtts://` and `wss://` connections: rustls on ring, TLS 1.2 and
//! 1.3, the server's certificate checked against the system's roots or a given CA file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::Error;

/// rustls client settings trusting the CA certificates in `ca_file` (PEM), or the
/// system's roots without one.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let what = format!("CA file {}", path.display());
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::invalid_because(&what, e))?;
            if certs.is_empty() {
                return Err(Error::invalid(format!("{what}: no PEM certificate in it")));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| Error::invalid_because(&what, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::invalid(
                    "no system root certificates found: give a CA file",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::invalid_because("the TLS protocol versions", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_the_callers_error() {
        let dir = std::env::temp_dir().join(format!("mqchat-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        for path in [dir.join("missing.pem"), empty] {
            let err = client_config(Some(&path)).expect_err("refused");
            assert!(err.is_invalid(), "{err}");
            assert!(err.to_string().contains("CA file"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
