//! A certificate authority made at test time, for the certificates of TLS tests.

/// A certificate authority made at test time, and the server certificates it signs.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct TestCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name` (its common name).
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Self { params, key, pem })
    }

    /// The CA's certificate, PEM (what clients trust).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA's certificate to `path`.
    pub fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        std::fs::write(path, &self.pem)?;
        Ok(())
    }

    /// A server certificate for `names` (host names and IP addresses), valid now.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<TestCert> {
        self.sign(names, false)
    }

    /// A server certificate for `names` that expired in 2021.
    pub fn issue_expired(&self, names: &[&str]) -> anyhow::Result<TestCert> {
        self.sign(names, true)
    }

    fn sign(&self, names: &[&str], expired: bool) -> anyhow::Result<TestCert> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mqchat test server");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate()?;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl TestCert {
    /// Writes the certificate and key to `files`, each replaced in one step (written aside,
    /// then renamed), as a careful operator or certbot does.
    pub fn write(&self, files: &mqchat_server::tls::TlsFiles) -> anyhow::Result<()> {
        for (path, text) in [(&files.cert, &self.cert_pem), (&files.key, &self.key_pem)] {
            let aside = path.with_extension("new");
            std::fs::write(&aside, text)?;
            std::fs::rename(&aside, path)?;
        }
        Ok(())
    }
}
