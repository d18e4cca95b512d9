//! TLS with rustls (feature `server`): the session port's and the admin port's certificates,
//! read from PEM files and read again on SIGHUP, and the client certificates of mutual TLS,
//! whose subject common name a credential (`cert:NAME`) can name.

use parking_lot::RwLock;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio_rustls::TlsAcceptor;

/// The first byte of every TLS connection (a handshake record): what tells a TLS client from
/// a plaintext one on a port that takes only TLS.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS of the server's two ports; `None` serves plaintext.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// The session port (gRPC and framed, told apart inside TLS).
    pub session: Option<Arc<Tls>>,
    /// The admin port (`/metrics`, `/healthz`).
    pub admin: Option<Arc<Tls>>,
}

impl TlsSettings {
    /// Reads every port's files again.
    pub fn reload(&self) -> Result<(), TlsError> {
        for tls in self.session.iter().chain(self.admin.iter()) {
            tls.reload()?;
        }
        Ok(())
    }
}

/// ALPN of the session port: gRPC clients need `h2`; framed clients ask for nothing.
pub const SESSION_ALPN: &[&[u8]] = &[b"h2"];
/// ALPN of the admin port.
pub const ADMIN_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Where a port's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, the server's own first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Client certificates signed by this CA (PEM) are verified and may authenticate
    /// (`cert:` credentials); without it, clients present no certificate.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: String,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {path}: {error}")]
    ClientCa { path: PathBuf, error: String },
}

/// A port's TLS: the acceptor in force, replaced by [`reload`](Self::reload).
pub struct Tls {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    acceptor: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Reads `files`; the port offers the `alpn` protocols (gRPC needs `h2`).
    pub fn load(files: TlsFiles, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = acceptor(&files, &alpn)?;
        Ok(Self {
            files,
            alpn,
            acceptor: RwLock::new(acceptor),
        })
    }

    /// Reads the files again: new connections get the new certificate; on an error the one
    /// in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = acceptor(&self.files, &self.alpn)?;
        *self.acceptor.write() = acceptor;
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().clone()
    }

    /// Whether clients may present certificates (mutual TLS).
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn acceptor(files: &TlsFiles, alpn: &[Vec<u8>]) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Read {
        what: "private key",
        path: files.key.clone(),
        error: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    error: e.to_string(),
                })?;
            }
            // Clients without a certificate may still use a token.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    error: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.to_vec();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate of a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |e: &dyn std::fmt::Display| TlsError::Read {
        what: "certificate file",
        path: path.to_owned(),
        error: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(&e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The subject common name of the client certificate a TLS connection verified, if any.
pub fn client_name(connection: &rustls::ServerConnection) -> Option<Arc<str>> {
    let cert = connection.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.into())
}
