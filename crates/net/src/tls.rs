//! TLS for both ends of a link, with rustls (the `ring` provider).
//!
//! - [`ServerTls`]: the server's certificate chain and key, and optionally the CA that
//!   client certificates must chain to (mutual TLS). Give it to
//!   [`Server::with_tls`](crate::server::Server::with_tls) (or use
//!   [`Server::bind_tls`](crate::server::Server::bind_tls)).
//! - [`ClientTls`]: the roots the server's certificate must chain to, and optionally the
//!   client's own certificate for mutual TLS. [`TlsConnector`] is the
//!   [`Connector`] that opens TCP then runs the handshake,
//!   checking the server's name.
//! - [`load_certs`], [`load_private_key`], [`load_roots`]: PEM files, with a [`TlsError`]
//!   naming the file.
//!
//! The handshake runs on the connection's own task (never in the accept loop), bounded by
//! [`ServerTls::handshake_timeout`] on the server and by the client's `connect_timeout`.
//! TLS 1.2 and 1.3 with rustls' safe defaults; no client certificate is accepted that does
//! not chain to the configured CA, and a client never accepts a server whose certificate
//! does not chain to its roots or does not name the server.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// The rustls types of this module's API, so that callers need not depend on rustls.
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use rustls::RootCertStore;

use crate::client::Connector;

/// Why a TLS configuration could not be built. File errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not valid PEM (or a PEM section does not decode).
    #[error("{path}: invalid PEM: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("{path}: no certificate found")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key section (PKCS#8, PKCS#1 or SEC1).
    #[error("{path}: no private key found")]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate was refused as a trust anchor.
    #[error("{path}: certificate {index} is not a usable CA certificate: {source}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Position of the certificate in the file (from 0).
        index: usize,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The server name for certificate verification is not a DNS name or IP address.
    #[error("invalid server name {name:?}")]
    InvalidServerName {
        /// The rejected name.
        name: String,
    },
    /// The client-certificate verifier could not be built (e.g. an empty CA set).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The certificates of a PEM file, in order (a chain: leaf first).
///
/// # Errors
/// [`TlsError::Read`], [`TlsError::Pem`], or [`TlsError::NoCertificate`] for a file with
/// no certificate.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let path = path.as_ref();
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`TlsError::Read`], [`TlsError::Pem`], or [`TlsError::NoPrivateKey`].
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let path = path.as_ref();
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

/// A root store holding every certificate of a PEM file (the CAs to trust).
///
/// # Errors
/// As [`load_certs`], and [`TlsError::BadCa`] for a certificate that cannot be a trust
/// anchor.
pub fn load_roots(path: impl AsRef<Path>) -> Result<RootCertStore, TlsError> {
    let path = path.as_ref();
    let mut roots = RootCertStore::empty();
    for (index, cert) in load_certs(path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: path.to_owned(),
            index,
            source,
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side of TLS: a rustls server configuration plus the handshake bound.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    mutual: bool,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Default bound of a server-side handshake.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// A server presenting `chain` (leaf first) with `key`. With `client_roots`, every
    /// client must present a certificate chaining to one of them (mutual TLS); without,
    /// no client certificate is asked for.
    ///
    /// # Errors
    /// [`TlsError::Verifier`] for an unusable CA set, [`TlsError::Rustls`] when the key
    /// does not fit the certificate.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_roots: Option<RootCertStore>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mutual = client_roots.is_some();
        let builder = match client_roots {
            Some(roots) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key)?;
        Ok(Self {
            config: Arc::new(config),
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            mutual,
        })
    }

    /// [`ServerTls::new`] from PEM files: the certificate chain, its key and optionally
    /// the CA file client certificates must chain to (mutual TLS).
    ///
    /// # Errors
    /// The file errors of [`load_certs`], [`load_private_key`] and [`load_roots`], and
    /// those of [`ServerTls::new`].
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_ca: Option<&Path>,
    ) -> Result<Self, TlsError> {
        let chain = load_certs(cert)?;
        let key = load_private_key(key)?;
        let roots = client_ca.map(load_roots).transpose()?;
        Self::new(chain, key, roots)
    }

    /// Wraps a rustls configuration built by the caller (`mutual` is only reported).
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            config,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            mutual: false,
        }
    }

    /// Bounds the handshake of each accepted connection (default 10 s); a connection that
    /// has not completed it by then is closed.
    pub fn handshake_timeout(mut self, after: Duration) -> Self {
        self.handshake_timeout = after;
        self
    }

    /// `true` when clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.mutual
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.handshake_timeout
    }
}

/// The client side of TLS: the roots the server must chain to, and optionally the
/// client's certificate (mutual TLS).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts servers whose certificate chains to `roots`; with `identity` (a chain, leaf
    /// first, and its key) presents it when the server asks.
    ///
    /// # Errors
    /// [`TlsError::Rustls`] when the key does not fit the certificate.
    pub fn new(
        roots: RootCertStore,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// [`ClientTls::new`] from PEM files: the CA file to trust and optionally the client's
    /// certificate chain and key.
    ///
    /// # Errors
    /// The file errors of [`load_roots`], [`load_certs`] and [`load_private_key`], and
    /// those of [`ClientTls::new`].
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, TlsError> {
        let roots = load_roots(ca)?;
        let identity = match identity {
            Some((cert, key)) => Some((load_certs(cert)?, load_private_key(key)?)),
            None => None,
        };
        Self::new(roots, identity)
    }

    /// Wraps a rustls configuration built by the caller.
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> Self {
        Self { config }
    }
}

/// Connects over TCP (with `TCP_NODELAY`), then runs the TLS handshake, verifying that the
/// server's certificate chains to the [`ClientTls`] roots and names `server_name`.
/// Handshake failures come back as I/O errors (the client logs them and backs off).
#[derive(Clone)]
pub struct TlsConnector {
    addr: String,
    server_name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector for `addr` (`host:port`) expecting a certificate for `server_name` (a
    /// DNS name, or an IP address matched against the certificate's IP SANs).
    ///
    /// # Errors
    /// [`TlsError::InvalidServerName`].
    pub fn new(
        addr: impl Into<String>,
        server_name: &str,
        tls: &ClientTls,
    ) -> Result<Self, TlsError> {
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            TlsError::InvalidServerName {
                name: server_name.to_owned(),
            }
        })?;
        Ok(Self {
            addr: addr.into(),
            server_name,
            connector: tokio_rustls::TlsConnector::from(tls.config.clone()),
        })
    }
}

impl Connector for TlsConnector {
    type Stream = tokio_rustls::client::TlsStream<TcpStream>;

    async fn connect(&self) -> io::Result<Self::Stream> {
        let tcp = TcpStream::connect(self.addr.as_str()).await?;
        tcp.set_nodelay(true)?;
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}

/// What the server learnt from a connection's TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// Negotiated protocol version (e.g. `TLSv1_3`).
    pub protocol: String,
    /// Negotiated cipher suite.
    pub cipher_suite: String,
    /// The client's certificate chain as presented (leaf first; empty without mutual TLS).
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    pub(crate) fn of(conn: &rustls::ServerConnection) -> Self {
        Self {
            protocol: conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            peer_certificates: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        }
    }
}
