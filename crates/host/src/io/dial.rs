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

/// Dials links to other hosts as the data plane asks for them.
pub(super) async fn dial_loop<F: Frontend>(
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
    own_addr: String,
    budget: Rc<ConnBudget>,
) {
    let wake = dataplane.dial_wake();
    let mut dials = Vec::new();
    // The name this host gives itself in its hellos to other hosts.
    let peer_name = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        own_addr.hash(&mut hasher);
        format!("peer-{:016x}", hasher.finish())
    };
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
    let deadline = Instant::now() + Duration::from_secs(10);
    let linked = tokio::time::timeout_at(deadline.into(), async {
        let Some((host, port)) = tcp_target(peer.as_str()) else {
            return Err("not a TCP address".to_owned().into());
        };
        let target = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve: {e}"))?
            .next()
            .ok_or_else(|| "resolves to no address".to_owned())?;
        // With TLS configured, the handshake (the peer's certificate must
        // name `host`) is done here: see io::tls.
        let (mut reader, mut writer) = F::connect_link(target, &host, cfg.tls.as_ref()).await?;
        let mut hello = vec![0; 512];
        let len = hostmux_wire::encode_hello(
            &mut hello,
            service_name.as_str(),
            &peer_name,
            cfg.peer_token.as_deref().unwrap_or("").as_bytes(),
            &limits,
        )
        .map_err(|e| format!("cannot encode hello: {e}"))?;
        hello.truncate(len);
        let (written, _) = writer.write_all(hello).await;
        written.map_err(|e| format!("hello not sent: {e}"))?;
        charge_to(charge, hostmux_wire::DEFAULT_READ_CHUNK, deadline).await?;
        let mut decoder = FrameDecoder::new(limits);
        loop {
            let (read, back) = reader.read_into(decoder).await;
            decoder = back;
            match read {
                // A TLS alert: the peer refused our certificate.
                Err(e) if super::tls::is_tls_refusal(&e) => {
                    return Err(DialFailure::Refused(format!("TLS session refused: {e}")))
                }
                Ok(0) | Err(_) => {
                    return Err("closed before acknowledging the hello".to_owned().into())
                }
                Ok(_) => {}
            }
            match decoder.next_frame() {
                Ok(Some(frame)) if hostmux_wire::is_hello_ack(&frame) => break,
                Ok(Some(frame)) if hostmux_wire::hello_refusal(&frame).is_some() => {
                    let reason = hostmux_wire::hello_refusal(&frame);
                    return Err(DialFailure::Refused(format!(
                        "the peer refused the hello ({reason:?}); its log says why"
                    )));
                }
                Ok(Some(_)) | Err(_) => {
                    return Err("answered the hello with something else".to_owned().into())
                }
                Ok(None) => {}
            }
        }
        Ok((reader, writer, decoder))
    })
    .await
    .unwrap_or_else(|_| Err("no hello acknowledgement within 10s".to_owned().into()));
    let (reader, writer, decoder) = match linked {
        Ok(link) => link,
        Err(failure) => {
            tracing::warn!(parent: &span, reason = %failure, "link to another host failed; returning its frames");
            let mut dp = dataplane.borrow_mut();
            match failure.reason() {
                Some(reason) => dp.fail_link(key, reason),
                None => dp.remove_conn(key),
            }
            dp.flush();
            return;
        }
    };
    let wakes = dataplane.conn_wakes(key);
    dataplane.borrow_mut().remote_connected(key);
    tracing::info!(parent: &span, "linked to another host");
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
