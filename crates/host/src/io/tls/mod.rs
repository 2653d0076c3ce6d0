//! Mutual TLS for links and TCP clients, over either frontend.
//!
//! [`Tls`] wraps a runtime's [`Frontend`] and is what the I/O thread runs
//! (`Tls<Uring>` or `Tls<Epoll>`): its connections are plain or carry a
//! rustls session ([`session`]), and the connection code above it does not
//! know which. Without [`HostConfig::tls`] every connection is plain and
//! every call goes straight through.
//!
//! With it:
//! * every link this host dials starts with a TLS handshake
//!   ([`Frontend::connect_link`]): this host presents its certificate, and
//!   the peer's must chain to the CA and name the peer's address as
//!   configured (an IP SAN for an IP address, a DNS SAN for a name);
//! * an accepted TCP connection is TLS if its first byte starts a TLS
//!   record, plain otherwise; plain ones are refused as [`PlainTcp`] says
//!   (Unix-socket connections are always plain);
//! * a connection whose hello presents the peer token (another host's link)
//!   must have presented a client certificate chaining to the CA and naming
//!   a configured peer ([`admit_peer_link`]); otherwise it is answered with a
//!   hello refusal `PeerRefused` and closed ([`refuse_peer_link`]).

mod config;
mod session;

use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;

use hostmux_wire::{AddrKind, Limits, UndeliverableReason};
use rustls::pki_types::{CertificateDer, ServerName};

pub use config::{PlainTcp, TlsConfig};
pub(crate) use session::is_tls_refusal;
use session::{TlsReader, TlsWriter, Undecided};

use crate::config::HostConfig;
use crate::frontend::{ConnWriter, DialFailure, Frontend, StdListener};

/// A runtime's frontend, speaking TLS where configured.
pub(crate) struct Tls<F>(PhantomData<F>);

/// A runtime's listener and what accepted TCP connections are told.
pub(crate) struct TlsListener<F: Frontend> {
    inner: F::Listener,
    tls: Option<TlsConfig>,
}

impl<F: Frontend> TlsListener<F> {
    pub(crate) fn new(inner: F::Listener, tls: Option<TlsConfig>) -> Self {
        Self { inner, tls }
    }
}

/// Why a plain TCP client from `peer` is refused, if it is.
fn plain_refusal(plain_tcp: PlainTcp, peer: SocketAddr) -> Option<String> {
    let loopback = peer.ip().to_canonical().is_loopback();
    let refused = match plain_tcp {
        PlainTcp::Allowed => false,
        PlainTcp::LoopbackOnly => !loopback,
        PlainTcp::Refused => true,
    };
    refused.then(|| {
        let flag = if loopback {
            "serve --tls-required-loopback"
        } else {
            "serve --tls-required"
        };
        format!("plain TCP refused: this host requires TLS from {peer} ({flag})")
    })
}

/// The session of an accepted connection: a TCP client (`tcp_peer`) of a
/// host with TLS may speak TLS or plain TCP (decided by its first bytes,
/// plain refused as configured); a Unix client, or any client of a host
/// without TLS, is plain.
fn accepted_session<F: Frontend>(
    reader: F::Reader,
    writer: F::Writer,
    tls: Option<&TlsConfig>,
    tcp_peer: Option<SocketAddr>,
) -> (TlsReader<F>, TlsWriter<F>) {
    match (tls, tcp_peer) {
        (Some(tls), Some(addr)) => session::undecided(
            reader,
            writer,
            Undecided {
                server: tls.server_config().clone(),
                plain_refused: plain_refusal(tls.plain_tcp, addr),
            },
        ),
        _ => session::plain(reader, writer),
    }
}

impl<F: Frontend> Frontend for Tls<F> {
    type Listener = TlsListener<F>;
    type Reader = TlsReader<F>;
    type Writer = TlsWriter<F>;
    const NAME: &'static str = F::NAME;

    fn listener(listener: StdListener) -> io::Result<TlsListener<F>> {
        Ok(TlsListener::new(F::listener(listener)?, None))
    }

    async fn accept(listener: &TlsListener<F>) -> io::Result<(TlsReader<F>, TlsWriter<F>, String)> {
        let (reader, writer, peer) = F::accept(&listener.inner).await?;
        // Only TCP connections name a socket address; Unix ones are plain.
        let tcp_peer = peer.parse::<SocketAddr>().ok();
        let (reader, writer) = accepted_session(reader, writer, listener.tls.as_ref(), tcp_peer);
        Ok((reader, writer, peer))
    }

    fn adopt_unix(
        stream: std::os::unix::net::UnixStream,
    ) -> io::Result<(TlsReader<F>, TlsWriter<F>)> {
        let (reader, writer) = F::adopt_unix(stream)?;
        Ok(session::plain(reader, writer))
    }

    fn adopt(
        accepted: crate::io::Accepted,
        tls: Option<&TlsConfig>,
    ) -> io::Result<(TlsReader<F>, TlsWriter<F>)> {
        let tcp_peer = match &accepted {
            crate::io::Accepted::Tcp(_, peer) => Some(*peer),
            crate::io::Accepted::Unix(_) => None,
        };
        let (reader, writer) = F::adopt(accepted, None)?;
        Ok(accepted_session(reader, writer, tls, tcp_peer))
    }

    async fn connect(addr: SocketAddr) -> io::Result<(TlsReader<F>, TlsWriter<F>)> {
        let (reader, writer) = F::connect(addr).await?;
        Ok(session::plain(reader, writer))
    }

    async fn connect_link(
        addr: SocketAddr,
        server_name: &str,
        tls: Option<&TlsConfig>,
    ) -> Result<(TlsReader<F>, TlsWriter<F>), DialFailure> {
        let (reader, writer) = F::connect_link(addr, server_name, None).await?;
        match tls {
            None => Ok(session::plain(reader, writer)),
            Some(tls) => {
                session::client(reader, writer, tls.client_config().clone(), server_name).await
            }
        }
    }

    fn queued_writes() -> u64 {
        F::queued_writes()
    }

    fn turn() {
        F::turn();
    }
}

/// Whether a connection whose hello presented the peer token may be a link:
/// always without TLS configured; with it, only if it presented a client
/// certificate (which the handshake already checked against the CA) that
/// names one of the configured peers. `Err` says why not.
pub(crate) fn admit_peer_link(
    cfg: &HostConfig,
    certificate: Option<CertificateDer<'static>>,
) -> Result<(), String> {
    if cfg.tls.is_none() {
        return Ok(());
    }
    let Some(certificate) = certificate else {
        return Err(
            "it presented the peer token without a TLS client certificate (links must use \
             mutual TLS when this host has --tls-cert)"
                .to_owned(),
        );
    };
    let leaf = webpki::EndEntityCert::try_from(&certificate)
        .map_err(|e| format!("its client certificate cannot be parsed: {e}"))?;
    let named = cfg.peers.iter().any(|peer| {
        let AddrKind::Tcp { host, .. } = peer.kind() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host)
            .is_ok_and(|name| leaf.verify_is_valid_for_subject_name(&name).is_ok())
    });
    if named {
        Ok(())
    } else {
        Err("its client certificate names none of this host's configured peers (--peer)".to_owned())
    }
}

/// Answers a refused link's hello with a refusal (`PeerRefused`), then
/// drops the connection. Logs why at WARN.
pub(crate) async fn refuse_peer_link<W: ConnWriter>(
    mut writer: W,
    service_name: &str,
    client: &str,
    limits: &Limits,
    peer: &str,
    reason: &str,
    span: &tracing::Span,
) {
    tracing::warn!(
        parent: span,
        peer,
        %reason,
        "refusing a link from another host: answered PeerRefused, closing"
    );
    let mut refusal = vec![0; 512];
    match hostmux_wire::encode_hello_refusal(
        &mut refusal,
        service_name,
        client,
        UndeliverableReason::PeerRefused,
        limits,
    ) {
        Ok(len) => {
            refusal.truncate(len);
            // Bounded: a peer that does not read is not waited for.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                let _ = writer.write_all(refusal).await;
                writer.close().await;
            })
            .await;
        }
        Err(e) => tracing::warn!(parent: span, error = %e, "cannot encode a hello refusal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tcp_is_refused_as_configured_and_loopback_is_exempt_only_when_allowed() {
        let remote: SocketAddr = "10.200.0.2:4000".parse().unwrap();
        let remote_v6: SocketAddr = "[fd00::2]:4000".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        let loopback_v6: SocketAddr = "[::1]:4000".parse().unwrap();
        for peer in [remote, remote_v6, loopback, mapped, loopback_v6] {
            assert_eq!(plain_refusal(PlainTcp::Allowed, peer), None, "{peer}");
            assert!(plain_refusal(PlainTcp::Refused, peer).is_some(), "{peer}");
        }
        for peer in [remote, remote_v6] {
            let why = plain_refusal(PlainTcp::LoopbackOnly, peer).expect("refused");
            assert!(why.contains("--tls-required"), "{why}");
            assert!(why.contains(&peer.to_string()), "{why}");
        }
        for peer in [loopback, mapped, loopback_v6] {
            assert_eq!(plain_refusal(PlainTcp::LoopbackOnly, peer), None, "{peer}");
        }
        let why = plain_refusal(PlainTcp::Refused, loopback).unwrap();
        assert!(why.contains("--tls-required-loopback"), "{why}");
    }
}
