//! TLS (issue #15): the listeners' certificate and key (`--tls-cert`, `--tls-key`), read from
//! PEM files and read again without a restart when either file changes or on SIGHUP, and the
//! roots an `https://` upstream is checked against (the system's, or `--upstream-ca`).
//!
//! A reload that fails (a key that does not match, a file half written) keeps the certificate
//! in use and says why in the log: handshakes only ever see a whole certificate and its key.
//! When the chain in use ends its validity is logged and exported as a gauge, so that an
//! expiry is alerted on before clients refuse it. Everything runs on rustls with the ring
//! provider.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ClientConfig, ConfigBuilder, RootCertStore, ServerConfig, WantsVerifier,
};
use tokio_rustls::TlsAcceptor;
use x509_cert::{der::Decode, Certificate};
use zeroize::Zeroizing;

use crate::clock::Clock;

/// Where the listeners' certificate and key are, and how often to look for new ones.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the first certificate.
    pub key: PathBuf,
    /// How often the files are checked for a change; `None`: only on SIGHUP.
    pub check_every: Option<Duration>,
}

/// Why a certificate, a key or a set of roots could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A file holds no certificate, or one that is not valid PEM.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// A file holds no private key in a form rustls reads.
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// The file.
        path: String,
    },
    /// The key is not the certificate's, or of a kind the provider cannot sign with.
    #[error("the key in {key} cannot serve the certificate in {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls's reason.
        reason: String,
    },
    /// The provider refused the protocol versions (a build without TLS 1.2 and 1.3).
    #[error("the TLS provider: {0}")]
    Provider(#[source] rustls::Error),
    /// No root certificate to check an upstream against.
    #[error("no root certificates: {0}")]
    NoRoots(String),
}

/// The longest time between two checks of the files.
const LONGEST_CHECK: Duration = Duration::from_secs(86_400);

/// The TLS side of the listeners: an acceptor whose certificate can be replaced at any time.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    certificate: Arc<ReloadingCertificate>,
    /// SIGHUP, registered at load (so that one sent before serving begins reloads rather than
    /// ends the process), until [`ServerTls::watch`] takes it.
    hangups: Arc<Mutex<Option<Hangups>>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.certificate.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the certificate and key of `files`; they must be valid and match now.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let certificate = Arc::new(ReloadingCertificate::load(files)?);
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Provider)?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
            hangups: Arc::new(Mutex::new(Hangups::register())),
        })
    }

    /// The acceptor that performs handshakes with the certificate in use.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again when they changed since last read (or always, when `forced`),
    /// and puts the result in use; a failure is logged and keeps the certificate in use.
    fn refresh(&self, forced: bool) {
        let outcome = self.certificate.refresh(forced);
        crate::telemetry::tls_failing(self.certificate.failing());
        let Some(outcome) = outcome else {
            return;
        };
        crate::telemetry::tls_reload(outcome.is_ok());
        match outcome {
            Ok(()) => self.note_validity("TLS certificate loaded"),
            Err(error) => tracing::warn!(
                error = %lmts_core::error_chain::error_chain(&error),
                "TLS certificate not reloaded; the one in use stays"
            ),
        }
    }

    /// The end of validity of the chain in use: its certificates' earliest `notAfter`. `None`
    /// when one of them is not X.509 that can be read (rustls serves it all the same).
    fn valid_until(&self) -> Option<SystemTime> {
        valid_until(&self.certificate.current().cert)
    }

    /// Logs `what` with the chain's end of validity, warning when it has passed, and sets
    /// the expiry gauge (to 0 when the end cannot be read, so that an expiry alert fires
    /// rather than keep an earlier certificate's date).
    fn note_validity(&self, what: &str) {
        let cert = self.certificate.files.cert.display().to_string();
        let Some(until) = self.valid_until() else {
            crate::telemetry::tls_valid_until(&cert, SystemTime::UNIX_EPOCH);
            tracing::warn!(%cert, "{what}, but a certificate of its chain is not X.509 lmts can read: its expiry is unknown (the gauge reads 0)");
            return;
        };
        crate::telemetry::tls_valid_until(&cert, until);
        let until = chrono::DateTime::<chrono::Utc>::from(until);
        if until <= Clock::system().now() {
            tracing::warn!(%cert, valid_until = %until.to_rfc3339(), "{what}, but it has expired: clients refuse it; renew it");
        } else {
            tracing::info!(%cert, valid_until = %until.to_rfc3339(), "{what}");
        }
    }

    /// Watches for new files until the returned guard drops: on SIGHUP, and every
    /// [`TlsFiles::check_every`] (at most a day; zero: never). Notes the chain's end of
    /// validity first.
    pub fn watch(&self) -> Watcher {
        self.note_validity("TLS certificate in use");
        let tls = self.clone();
        let taken = self
            .hangups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Watcher(tokio::spawn(async move {
            let mut hangups = taken.unwrap_or_else(Hangups::new);
            let every = tls.certificate.files.check_every;
            let every = every.filter(|every| !every.is_zero());
            let mut check = every.map(|every| {
                let every = every.min(LONGEST_CHECK);
                let mut check =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                check
            });
            loop {
                let checked = async {
                    match &mut check {
                        Some(check) => {
                            check.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = hangups.next() => tls.refresh(true),
                    () = checked => tls.refresh(false),
                }
            }
        }))
    }
}

/// The task of [`ServerTls::watch`]; dropping it stops the watching.
#[derive(Debug)]
pub struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SIGHUPs, where the platform has them.
struct Hangups(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl Hangups {
    /// Registers for SIGHUP now; `None` outside a Tokio runtime (the watcher registers then).
    fn register() -> Option<Self> {
        tokio::runtime::Handle::try_current().ok()?;
        Some(Self::new())
    }

    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self(
                signal(SignalKind::hangup())
                    .map_err(
                        |error| tracing::warn!(%error, "SIGHUP will not reload the certificate"),
                    )
                    .ok(),
            )
        }
        #[cfg(not(unix))]
        Self()
    }

    /// Completes at the next SIGHUP; never, without them.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.0 {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending().await
    }
}

/// The certificate in use, and what the files looked like when it was read.
#[derive(Debug)]
struct ReloadingCertificate {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    tried: Mutex<Tried>,
}

/// The last attempt to read the files.
#[derive(Debug)]
struct Tried {
    /// The files as they were then.
    stamp: Option<Stamp>,
    /// Why it failed, if it did: the attempt is made again at every check until one succeeds
    /// (a failure may have had nothing to do with the files: descriptors, permissions).
    failure: Option<String>,
}

/// What identifies a version of a file without reading it: modification time and size, and
/// on Unix its inode and change time too (a rename over it, a chmod).
type FileStamp = (SystemTime, u64, u64, i64);

/// [`FileStamp`]s of the certificate and the key.
type Stamp = [FileStamp; 2];

impl ReloadingCertificate {
    fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamp = stamp(&files);
        let current = certified_key(&files.cert, &files.key)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(current)),
            tried: Mutex::new(Tried {
                stamp,
                failure: None,
            }),
        })
    }

    /// Whether the last attempt to read the files failed (the certificate in use is older).
    fn failing(&self) -> bool {
        self.tried
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failure
            .is_some()
    }

    /// Reloads when `forced`, when the files changed since last tried, or when that attempt
    /// failed; answers the outcome, or `None` when nothing was tried or the attempt failed
    /// again as before on unchanged files (retried quietly).
    fn refresh(&self, forced: bool) -> Option<Result<(), TlsError>> {
        let now = stamp(&self.files);
        let mut tried = self.tried.lock().unwrap_or_else(PoisonError::into_inner);
        let unchanged = !forced && tried.stamp == now;
        if unchanged && tried.failure.is_none() {
            return None;
        }
        tried.stamp = now;
        match certified_key(&self.files.cert, &self.files.key) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                tried.failure = None;
                Some(Ok(()))
            }
            Err(error) => {
                let reason = error.to_string();
                let again = unchanged && tried.failure.as_deref() == Some(reason.as_str());
                tried.failure = Some(reason);
                (!again).then_some(Err(error))
            }
        }
    }
}

impl ReloadingCertificate {
    /// The certificate and key in use.
    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The earliest `notAfter` of `chain`: when the first of its certificates stops being valid.
/// `None` when one of them cannot be read as X.509.
fn valid_until(chain: &[CertificateDer<'_>]) -> Option<SystemTime> {
    chain
        .iter()
        .map(|der| {
            let certificate = Certificate::from_der(der.as_ref()).ok()?;
            Some(
                certificate
                    .tbs_certificate
                    .validity
                    .not_after
                    .to_system_time(),
            )
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

/// The two files' stamps; `None` when either cannot be read.
fn stamp(files: &TlsFiles) -> Option<Stamp> {
    let of = |path: &Path| -> Option<FileStamp> {
        let metadata = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let (inode, changed) = {
            use std::os::unix::fs::MetadataExt;
            (
                metadata.ino(),
                metadata.ctime_nsec() + metadata.ctime() * 1_000_000_000,
            )
        };
        #[cfg(not(unix))]
        let (inode, changed) = (0, 0);
        Some((metadata.modified().ok()?, metadata.len(), inode, changed))
    };
    Some([of(&files.cert)?, of(&files.key)?])
}

/// The chain of `cert` with the key of `key`, checked to belong together.
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key.display().to_string(),
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|error| TlsError::Mismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        reason: error.to_string(),
    })
}

/// Every certificate of the PEM file at `path`; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let none = || TlsError::NoCertificate {
        path: path.display().to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| none())?;
    if chain.is_empty() {
        return Err(none());
    }
    Ok(chain)
}

/// The bytes of `path`, wiped when dropped (it may hold a private key; the key rustls decodes
/// from them is rustls's to keep).
fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// The crypto of every TLS connection: rustls's ring provider.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client side of `https://` upstreams: certificates checked against the roots of
/// `ca_file` when given, else the system's.
pub fn upstream_client_config(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for certificate in certificates(path)? {
                roots
                    .add(certificate)
                    .map_err(|error| TlsError::NoRoots(format!("{}: {error}", path.display())))?;
            }
        }
        None => {
            let system = rustls_native_certs::load_native_certs();
            for error in &system.errors {
                tracing::warn!(%error, "a system root certificate could not be read");
            }
            let (added, _ignored) = roots.add_parsable_certificates(system.certs);
            if added == 0 {
                return Err(TlsError::NoRoots(
                    "the system has none (install ca-certificates, or give --upstream-ca FILE)"
                        .into(),
                ));
            }
        }
    }
    // No ALPN here: the connector offers the protocols it speaks.
    Ok(client_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration that trusts no certificate: the TLS side of a connector to an
/// `http://` upstream, which never uses it.
pub fn trusting_nothing() -> Result<ClientConfig, TlsError> {
    Ok(client_builder()?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

/// A client configuration on [`provider`], to be given its roots.
fn client_builder() -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, TlsError> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use lmts_testkit::tls::TestAuthority;
    use rustls::pki_types::{pem::PemObject, CertificateDer};

    use super::valid_until;

    fn chain(pems: &[&str]) -> Vec<CertificateDer<'static>> {
        pems.iter()
            .flat_map(|pem| CertificateDer::pem_slice_iter(pem.as_bytes()))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// 2031-03-04T00:00:00Z.
    fn march_fourth_2031() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_930_348_800)
    }

    #[test]
    fn a_chain_is_valid_until_its_first_certificate_expires() {
        let authority = TestAuthority::new("expiry");
        let leaf = authority.issue_valid_until(2031, 3, 4);
        let (leaf, root) = (leaf.certificate_pem.as_str(), authority.root_pem());
        assert_eq!(valid_until(&chain(&[leaf])), Some(march_fourth_2031()));
        // The root (rcgen's default, in 4096) outlives the leaf, in either order.
        assert_eq!(
            valid_until(&chain(&[leaf, root])),
            Some(march_fourth_2031())
        );
        assert_eq!(
            valid_until(&chain(&[root, leaf])),
            Some(march_fourth_2031())
        );
        assert!(valid_until(&chain(&[root])) > Some(march_fourth_2031()));
    }

    #[test]
    fn a_chain_with_an_unreadable_certificate_has_no_known_end() {
        let authority = TestAuthority::new("expiry");
        let mut chain = chain(&[authority.root_pem()]);
        chain.push(CertificateDer::from(b"not a certificate".to_vec()));
        assert_eq!(valid_until(&chain), None);
    }
}
