//! The TLS settings of a host: its certificate and key, the CA it trusts,
//! and whether plain TCP clients are still served. Built once at startup.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::HostError;

/// Which plain (non-TLS) TCP clients a host with TLS configured still
/// serves. Unix-socket clients are always plain (there is no TLS on a Unix
/// socket) and never refused by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlainTcp {
    /// Every plain TCP client (TLS is optional): the default.
    #[default]
    Allowed,
    /// Plain TCP clients from a loopback address only (`serve
    /// --tls-required`): clients on this machine stay plain and fast.
    LoopbackOnly,
    /// No plain TCP client, loopback included (`serve --tls-required
    /// --tls-required-loopback`).
    Refused,
}

/// A host's mutual-TLS settings: this host's certificate chain and key,
/// and the CA that every peer's (and every client's, when it presents
/// one) certificate must chain to.
///
/// The rustls client and server configurations are built once, here; every
/// link the host dials and every TLS client it accepts shares them. With
/// TLS configured, every link to a peer is TLS and the peer's certificate
/// must name the peer's address (an IP SAN for an IP address, a DNS SAN for
/// a name); a connection presenting the peer token must have presented a
/// client certificate chaining to the CA and naming one of the configured
/// peers. Ordinary clients may present one or not. See
/// `docs/operations.md`, "TLS".
///
/// `Debug` shows the file paths only.
#[derive(Clone)]
pub struct TlsConfig {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    /// Which plain TCP clients are still served.
    pub plain_tcp: PlainTcp,
    files: Option<[PathBuf; 3]>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("TlsConfig");
        if let Some([cert, key, ca]) = &self.files {
            s.field("cert", cert).field("key", key).field("ca", ca);
        }
        s.field("plain_tcp", &self.plain_tcp)
            .finish_non_exhaustive()
    }
}

/// Which file of the three a problem is with.
#[derive(Clone, Copy)]
enum Role {
    Cert,
    Key,
    Ca,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Cert => "certificate",
            Role::Key => "private key",
            Role::Ca => "CA certificate",
        }
    }
}

/// A PEM source: a file (named in errors) or bytes already read.
struct Source<'a> {
    role: Role,
    path: Option<&'a Path>,
    bytes: std::borrow::Cow<'a, [u8]>,
}

impl<'a> Source<'a> {
    fn file(role: Role, path: &'a Path) -> Result<Self, HostError> {
        let bytes = std::fs::read(path).map_err(|e| HostError::TlsFile {
            role: role.name(),
            path: path.to_owned(),
            reason: format!("cannot read it: {e}"),
        })?;
        Ok(Self {
            role,
            path: Some(path),
            bytes: bytes.into(),
        })
    }

    fn bytes(role: Role, bytes: &'a [u8]) -> Self {
        Self {
            role,
            path: None,
            bytes: bytes.into(),
        }
    }

    fn error(&self, reason: impl Into<String>) -> HostError {
        HostError::TlsFile {
            role: self.role.name(),
            path: self
                .path
                .map_or_else(|| PathBuf::from("<in memory>"), Path::to_owned),
            reason: reason.into(),
        }
    }

    /// Every certificate in the PEM text, in order; at least one.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, HostError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(self.error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, HostError> {
        PrivateKeyDer::from_pem_slice(&self.bytes).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                self.error("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")
            }
            other => self.error(format!("not a valid PEM private key: {other}")),
        })
    }
}

impl TlsConfig {
    /// Reads this host's certificate chain (`cert`, PEM, leaf first), its
    /// private key (`key`, PEM) and the CA certificates it trusts (`ca`,
    /// PEM), and builds the rustls configurations. Errors name the file and
    /// what is wrong with it.
    pub fn from_pem_files(cert: &Path, key: &Path, ca: &Path) -> Result<Self, HostError> {
        let mut config = Self::build(
            Source::file(Role::Cert, cert)?,
            Source::file(Role::Key, key)?,
            Source::file(Role::Ca, ca)?,
        )?;
        config.files = Some([cert.to_owned(), key.to_owned(), ca.to_owned()]);
        Ok(config)
    }

    /// The same from PEM text already in memory (errors name the file as
    /// `<in memory>`).
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<Self, HostError> {
        Self::build(
            Source::bytes(Role::Cert, cert),
            Source::bytes(Role::Key, key),
            Source::bytes(Role::Ca, ca),
        )
    }

    /// Sets which plain TCP clients are still served.
    pub fn with_plain_tcp(mut self, plain_tcp: PlainTcp) -> Self {
        self.plain_tcp = plain_tcp;
        self
    }

    fn build(cert: Source<'_>, key: Source<'_>, ca: Source<'_>) -> Result<Self, HostError> {
        let chain = cert.certificates()?;
        let private_key = key.private_key()?;
        let mut roots = RootCertStore::empty();
        for der in ca.certificates()? {
            roots
                .add(der)
                .map_err(|e| ca.error(format!("not a usable CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        // ring builds without cmake (aws-lc-rs needs it); rustls 0.23.48
        // deprecates ring's provider for lacking post-quantum key exchange
        // (X25519MLKEM768): classical ECDHE (X25519, P-256) is what links
        // get. Moving to aws-lc-rs is a dependency change, not a rewrite.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = |e: rustls::Error| HostError::TlsSettings(format!("TLS versions: {e}"));
        // Both directions present this host's chain; a key that does not
        // belong to the certificate is the key file's fault.
        let key_error = |e: rustls::Error| match e {
            rustls::Error::InconsistentKeys(_) => {
                key.error("does not belong to the certificate in the certificate file")
            }
            other => key.error(format!("unusable with the certificate: {other}")),
        };
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(versions)?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), private_key.clone_key())
            .map_err(key_error)?;
        let verifier = client_verifier(roots, provider.clone())
            .map_err(|e| ca.error(format!("cannot verify clients with it: {e}")))?;
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(versions)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, private_key)
            .map_err(key_error)?;
        Ok(Self {
            client: Arc::new(client),
            server: Arc::new(server),
            plain_tcp: PlainTcp::default(),
            files: None,
        })
    }

    /// The rustls client configuration (links this host dials, TLS
    /// clients of other hosts).
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.client
    }

    /// The rustls server configuration (TLS clients and links accepted).
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }
}

/// Client certificates are optional (ordinary clients need none), but one
/// that is presented must chain to the CA; whether a link presented one is
/// checked after its hello.
fn client_verifier(
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, rustls::server::VerifierBuilderError>
{
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .allow_unauthenticated()
        .build()
}
