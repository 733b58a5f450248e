//! HTTPS for the manager's own endpoints: a listener that completes the TLS handshake before handing the
//! connection to axum, with a certificate from files (cert-manager's, for example) or, without them, one
//! the manager makes for itself at start.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::pki;

/// A client gets this long to finish its handshake; a silent one cannot hold the listener.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The serving certificate: `tls.crt` and `tls.key` in `dir` when given, else a self-signed one naming
/// `names` (clients then skip verification or pin it, as kubebuilder's default ServiceMonitor does).
pub fn server_config(dir: Option<&Path>, names: &[String]) -> Result<Arc<ServerConfig>, String> {
    let (chain, key) = match dir {
        Some(dir) => {
            let pem = pki::read_files(dir)?;
            let chain = CertificateDer::pem_slice_iter(pem.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{} in {}: {e}", pki::TLS_CERT, dir.display()))?;
            let key = PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes())
                .map_err(|e| format!("{} in {}: {e}", pki::TLS_KEY, dir.display()))?;
            (chain, key)
        }
        None => {
            let key = rcgen::KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
            let params =
                rcgen::CertificateParams::new(names.to_vec()).map_err(|e| format!("certificate names: {e}"))?;
            let cert = params.self_signed(&key).map_err(|e| format!("self-signing: {e}"))?;
            let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| format!("the generated key: {e}"))?;
            (vec![cert.der().clone()], key)
        }
    };
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// Accepts TCP connections and completes their TLS handshake; failed handshakes are dropped.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        Self { tcp, acceptor: TlsAcceptor::from(config) }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, peer),
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
