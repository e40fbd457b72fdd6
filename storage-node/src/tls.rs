//! TLS material from PEM files: a certificate chain and its private key, loaded and checked
//! to match, served through a rustls certificate resolver that swaps in a new pair when the
//! files change on disk (no restart). The gateway's S3 endpoint uses it; the internal RPC can
//! build its own configs (mutual TLS) over the same loader and resolver.
//!
//! Error messages carry their cause in the text (no `source` chain), so a WARN line about a
//! failed reload says why on its own.
//!
//! The crypto provider is always passed explicitly (ring): rustls' process-wide default is
//! ambiguous when features of several crates unify in one build.

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read certificate chain {}: {error}", path.display())]
    Cert {
        path: PathBuf,
        error: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCert { path: PathBuf },
    #[error("read private key {}: {error}", path.display())]
    Key {
        path: PathBuf,
        error: rustls::pki_types::pem::Error,
    },
    #[error("certificate {} and key {} are not a usable pair: {error}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
    #[error("build the TLS configuration: {0}")]
    Config(rustls::Error),
    #[error("read the cluster CA {}: {message}", path.display())]
    Ca { path: PathBuf, message: String },
}

/// The crypto provider every TLS config of dmpstore is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1),
/// and checks that the key belongs to the leaf certificate.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_err = |error| TlsError::Cert {
        path: cert_path.to_path_buf(),
        error,
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(cert_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| TlsError::Key {
        path: key_path.to_path_buf(),
        error,
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| TlsError::Pair {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        error,
    })
}

/// What identifies a version of a file on disk: its modification time and length.
type FileStamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A certificate and key loaded from two files, served to every TLS handshake, and replaced
/// when the files change ([`ReloadingCert::watch`]). A pair that fails to load (a half-written
/// file, a key that does not match) leaves the previous one in service.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when `current` was loaded (or last failed to load).
    stamps: Mutex<(FileStamp, FileStamp)>,
}

impl ReloadingCert {
    /// Loads the pair now; an unreadable or mismatched pair is an error.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<ReloadingCert>, TlsError> {
        let provider = provider();
        let stamps = (stamp(cert_path), stamp(key_path));
        let key = load_certified_key(cert_path, key_path, &provider)?;
        Ok(Arc::new(ReloadingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(key)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// The pair in service.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("certificate lock").clone()
    }

    /// Loads the pair again if either file changed since the last attempt. `Ok(true)`: a new
    /// pair is in service; an error leaves the old one in service.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        {
            let mut seen = self.stamps.lock().expect("stamps lock");
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let key = load_certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write().expect("certificate lock") = Arc::new(key);
        Ok(true)
    }

    /// Checks the files every `interval` until `shutdown`, logging each reload (INFO) and each
    /// failed one (WARN: the old certificate stays in service).
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match self.reload_if_changed() {
                Ok(true) => {
                    tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays in service")
                }
            }
        }
    }

    /// A server config (HTTP/1.1, no client certificates) that serves this pair.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The DNS name in every storage node's RPC certificate, which every caller checks: a
/// gateway's certificate (with [`RPC_GATEWAY_NAME`], and no server usage) cannot pose as a
/// node.
pub const RPC_NODE_NAME: &str = "node.dmpstore.internal";
/// The DNS name in every gateway's (and operator's) RPC certificate.
pub const RPC_GATEWAY_NAME: &str = "gateway.dmpstore.internal";

/// One process's side of the internal RPC's mutual TLS (DESIGN 13): TLS 1.3 only, its own
/// certificate (reloaded when the files change) presented to servers and clients alike, and
/// only certificates of the cluster CA accepted. TLS 1.3 without early data means a recorded
/// connection cannot be replayed (each handshake has fresh keys) and a changed byte fails
/// the record's authentication.
#[derive(Debug, Clone)]
pub struct RpcTls {
    pub cert: Arc<ReloadingCert>,
    /// For a node's RPC listener: a client certificate of the cluster CA is required.
    pub server: Arc<ServerConfig>,
    /// For calls to nodes: the server must show a node certificate of the cluster CA.
    pub client: Arc<ClientConfig>,
}

impl RpcTls {
    pub fn load(ca_cert: &Path, cert: &Path, key: &Path) -> Result<RpcTls, TlsError> {
        // AES-128-GCM first: both ends are ours, and every chunk byte is encrypted once more
        // on its way to a node, so the cheaper of TLS 1.3's AEADs goes first.
        let mut suites = rustls::crypto::ring::default_provider();
        suites
            .cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let provider = Arc::new(suites);
        let roots = Arc::new(load_roots(ca_cert)?);
        let cert = ReloadingCert::load(cert, key)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Ca {
                path: ca_cert.to_path_buf(),
                message: e.to_string(),
            })?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(cert.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .with_root_certificates(roots)
            .with_client_cert_resolver(cert.clone());
        Ok(RpcTls {
            cert,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// The certificates of a PEM file as trust anchors.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |message: String| TlsError::Ca {
        path: path.to_path_buf(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(roots)
}
