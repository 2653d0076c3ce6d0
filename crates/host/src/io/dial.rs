//! Links to other hosts, dialled as the data plane asks for them.
//!
//! This is the only place the host sends its hello (with its token) to
//! anyone, and it dials only a [`PeerAddr`]: an address from the configured
//! peer list (the data plane makes no other, see `dataplane::remote`).

use std::rc::Rc;

use super::budget::{charge_to, ConnBudget};
use super::*;
use crate::dataplane::PeerAddr;
use crate::frontend::DialFailure;
use hostmux_wire::UndeliverableReason;

/// Dials links to other hosts as the data plane asks for them.
pub(super) async fn dial_loop<F: Frontend>(
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
    // The name this host gives itself in its hellos to other hosts
    // (`Identity::hello_name`: from its primary address).
    peer_name: String,
    budget: Rc<ConnBudget>,
) {
    let wake = dataplane.dial_wake();
    let mut dials = Vec::new();
    loop {
        wake.notified().await;
        dataplane.take_dials(&mut dials);
        for (key, peer) in dials.drain(..) {
            tokio::task::spawn_local(dial::<F>(
                dataplane.clone(),
                cfg.clone(),
                service_name.clone(),
                peer_name.clone(),
                key,
                peer,
                budget.clone(),
            ));
        }
    }
}

pub(super) async fn dial<F: Frontend>(
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
    peer_name: String,
    key: ConnKey,
    peer: PeerAddr,
    budget: Rc<ConnBudget>,
) {
    let span = tracing::info_span!("link", remote = %peer.as_str(), frontend = F::NAME);
    let limits = cfg.limits;
    // A link's read buffer counts against the connection memory budget too.
    let mut charge = budget.charge();
    let charge = &mut charge;
    // A peer that does not complete the connection and the hello within
    // the link timeout is unreachable (the heartbeat's bound, so a dead
    // peer is found as fast whether or not a link was up).
    let dial_timeout = cfg.link_timeout.max(Duration::from_millis(100));
    tracing::debug!(parent: &span, timeout = ?dial_timeout, "dialling peer");
    let deadline = Instant::now() + dial_timeout;
    let unreachable = |text: String| (UndeliverableReason::HostUnreachable, text);
    let linked = tokio::time::timeout_at(deadline.into(), async {
        let Some((host, port)) = tcp_target(peer.as_str()) else {
            return Err(unreachable("not a TCP address".to_owned()));
        };
        let target = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| unreachable(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| unreachable("resolves to no address".to_owned()))?;
        // With TLS configured, the handshake (the peer's certificate must
        // name `host`) is done here: see io::tls.
        let (mut reader, mut writer) = F::connect_link(target, &host, cfg.tls.as_ref())
            .await
            .map_err(|failure| match failure {
                DialFailure::Unreachable(why) => unreachable(format!("connect failed: {why}")),
                DialFailure::Refused(why) => (UndeliverableReason::PeerRefused, why),
            })?;
        let mut hello = vec![0; 512];
        let len = hostmux_wire::encode_hello(
            &mut hello,
            service_name.as_str(),
            &peer_name,
            cfg.peer_token.as_deref().unwrap_or("").as_bytes(),
            &limits,
        )
        .map_err(|e| unreachable(format!("cannot encode hello: {e}")))?;
        hello.truncate(len);
        let (written, _) = writer.write_all(hello).await;
        written.map_err(|e| unreachable(format!("hello not sent: {e}")))?;
        charge_to(charge, hostmux_wire::DEFAULT_READ_CHUNK, deadline)
            .await
            .map_err(unreachable)?;
        let mut decoder = FrameDecoder::new(limits);
        loop {
            let (read, back) = reader.read_into(decoder).await;
            decoder = back;
            match read {
                // A TLS alert: the peer refused our certificate.
                Err(e) if super::tls::is_tls_refusal(&e) => {
                    return Err((
                        UndeliverableReason::PeerRefused,
                        format!("TLS session refused: {e}"),
                    ))
                }
                // Closed or reset without a word: a host refusing the hello
                // says so first (a refusal frame or a TLS alert, above and
                // below), so this is a host going down (a listener that
                // took the connection as its process died).
                Ok(0) | Err(_) => {
                    return Err(unreachable(
                        "closed the connection before acknowledging the hello".to_owned(),
                    ))
                }
                Ok(_) => {}
            }
            match decoder.next_frame() {
                Ok(Some(frame)) if hostmux_wire::is_hello_ack(&frame) => break,
                Ok(Some(frame)) => {
                    return Err(match hostmux_wire::hello_refusal(&frame) {
                        Some(reason) => (
                            reason,
                            format!("refused the hello ({reason}): check that both hosts use the same --peer-token-file, list each other with --peer, and (with TLS) trust each other's CA; the peer's log says why"),
                        ),
                        None => (
                            UndeliverableReason::PeerRefused,
                            "answered the hello with something else".to_owned(),
                        ),
                    })
                }
                Err(_) => {
                    return Err((
                        UndeliverableReason::PeerRefused,
                        "answered the hello with a malformed frame".to_owned(),
                    ))
                }
                Ok(None) => {}
            }
        }
        Ok((reader, writer, decoder))
    })
    .await
    .unwrap_or_else(|_| {
        Err(unreachable(format!(
            "no connection and hello acknowledgement within {dial_timeout:?} (the link timeout)"
        )))
    });
    let (reader, writer, decoder) = match linked {
        Ok(link) => link,
        Err((reason, text)) => {
            // The data plane logs the change of state (once, not per dial).
            tracing::debug!(parent: &span, %reason, why = %text, "dial of peer failed");
            let mut dp = dataplane.borrow_mut();
            dp.link_failed(key, reason, &text, Instant::now());
            dp.remove_conn(key);
            dp.flush();
            return;
        }
    };
    let wakes = dataplane.conn_wakes(key);
    dataplane.borrow_mut().remote_connected(key);
    let charge = std::mem::replace(charge, budget.charge());
    serve_conn::<F>(
        reader,
        writer,
        (decoder, charge),
        &dataplane,
        key,
        wakes,
        &cfg,
        &span,
    )
    .await;
    dataplane.borrow_mut().flush();
}

/// Host and port of a TCP address text.
pub(super) fn tcp_target(addr: &str) -> Option<(String, u16)> {
    let addr = addr.parse::<hostmux_wire::Addr>().ok()?;
    match addr.kind() {
        hostmux_wire::AddrKind::Tcp { host, port } => Some((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        )),
        _ => None,
    }
}

/// The hello name of the links I/O thread `thread` dials: the host's
/// (`Identity::hello_name`) for thread 0, with `-thread` after it for
/// the others, so that the links between two hosts have distinct client
/// names on the far host.
pub(crate) fn link_hello_name(identity: &crate::identity::Identity, thread: usize) -> String {
    match thread {
        0 => identity.hello_name(),
        k => format!("{}-{k}", identity.hello_name()),
    }
}

#[cfg(test)]
mod tests {
    use hostmux_wire::Addr;

    use super::link_hello_name;
    use crate::identity::{peer_for_hello_name, Identity};

    fn addr(text: &str) -> Addr {
        text.parse().expect("a valid address")
    }

    #[test]
    fn every_threads_link_hello_name_maps_back_to_its_peer() {
        let peers = [addr("tcp:10.0.0.1:7000"), addr("tcp:10.0.0.2:7000")];
        let second = Identity::single("tcp:10.0.0.2:7000");
        for thread in [0, 1, 12] {
            let name = link_hello_name(&second, thread);
            assert_eq!(
                peer_for_hello_name(&peers, &name),
                Some(&peers[1]),
                "{name}"
            );
        }
        assert_eq!(link_hello_name(&second, 0), second.hello_name());
        let base = second.hello_name();
        for bad in [format!("{base}-"), format!("{base}-x"), format!("{base}1")] {
            assert_eq!(peer_for_hello_name(&peers, &bad), None, "{bad}");
        }
    }
}
