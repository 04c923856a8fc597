//! A certificate authority a test makes for itself, the loopback certificates it issues, and
//! a TLS server configuration for them: what TLS tests need, with no file or key shared with
//! anything outside the test.

use std::{path::Path, sync::Arc};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

/// A certificate authority made by the test.
pub struct TestAuthority {
    name: String,
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAuthority")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A certificate for `localhost` and `127.0.0.1`, and its private key, in PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The certificate.
    pub certificate_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl TestAuthority {
    /// A new authority, named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap_or_else(|error| panic!("CA key: {error}"));
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let certificate = params
            .self_signed(&key)
            .unwrap_or_else(|error| panic!("CA certificate: {error}"));
        Self {
            name: name.to_owned(),
            certificate_pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The authority's own certificate, in PEM: the root a client trusts.
    pub fn root_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A client that trusts this authority alone and opens a new connection for every request
    /// (so that each sees the certificate in use at that moment); 5 s a request.
    pub fn client(&self) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.certificate_pem.as_bytes())
            .unwrap_or_else(|error| panic!("CA certificate: {error}"));
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .pool_max_idle_per_host(0)
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_else(|error| panic!("HTTPS client: {error}"))
    }

    /// Whether a fresh client trusting this authority alone gets 200 from `base`'s `/health`
    /// (the service there presents one of this authority's certificates).
    pub async fn trusted_at(&self, base: &str) -> bool {
        self.client()
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|response| response.status() == reqwest::StatusCode::OK)
    }

    /// Waits, at most 20 s, until [`TestAuthority::trusted_at`] `base`; answers whether it
    /// came to be.
    pub async fn until_trusted_at(&self, base: &str) -> bool {
        for _ in 0..200 {
            if self.trusted_at(base).await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    }

    /// A rustls client configuration that trusts this authority alone.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for root in CertificateDer::pem_slice_iter(self.certificate_pem.as_bytes()) {
            let root = root.unwrap_or_else(|error| panic!("CA certificate: {error}"));
            roots
                .add(root)
                .unwrap_or_else(|error| panic!("CA certificate: {error}"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|error| panic!("TLS client configuration: {error}"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1`.
    pub fn issue(&self) -> IssuedCertificate {
        self.issue_for(&["localhost", "127.0.0.1"])
    }

    /// Issues a server certificate for `names` (host names, or addresses as text).
    pub fn issue_for(&self, names: &[&str]) -> IssuedCertificate {
        self.sign(server_params(names))
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1` valid until the start
    /// (00:00:00 UTC) of the day `year`-`month`-`day`.
    pub fn issue_valid_until(&self, year: i32, month: u8, day: u8) -> IssuedCertificate {
        let mut params = server_params(&["localhost", "127.0.0.1"]);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        self.sign(params)
    }

    /// A certificate of `params` signed by this authority, with a new key.
    fn sign(&self, params: CertificateParams) -> IssuedCertificate {
        let key = KeyPair::generate().unwrap_or_else(|error| panic!("server key: {error}"));
        let certificate = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|error| panic!("server certificate: {error}"));
        IssuedCertificate {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl IssuedCertificate {
    /// Writes the certificate and the key to the two files (replacing them whole: written
    /// beside, then renamed, as a certificate manager does).
    pub fn write(&self, cert: &Path, key: &Path) {
        replace_file(cert, self.certificate_pem.as_bytes());
        replace_file(key, self.key_pem.as_bytes());
    }

    /// A rustls server configuration presenting this certificate (HTTP/1.1 by ALPN).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain = CertificateDer::pem_slice_iter(self.certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|error| panic!("issued certificate: {error}"));
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .unwrap_or_else(|error| panic!("issued key: {error}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .unwrap_or_else(|error| panic!("TLS server configuration: {error}"));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// The parameters of a server certificate for `names`.
fn server_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    CertificateParams::new(names)
        .unwrap_or_else(|error| panic!("server certificate names: {error}"))
}

/// Writes `contents` beside `path` and renames it over `path` (0600, as lmts writes its own
/// files): a reader sees the old file or the new one, never a part.
pub fn replace_file(path: &Path, contents: &[u8]) {
    lmts_core::files::replace_private(path, contents)
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}
