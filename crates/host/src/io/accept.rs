//! Accepting connections: the frontend listener and the private control socket.

use std::rc::Rc;

use super::budget::{Admission, ConnBudget};
use super::*;

pub(super) async fn accept_loop<F: Frontend>(listener: F::Listener, serving: Serving) {
    loop {
        match F::accept(&listener).await {
            Ok((reader, writer, peer)) => {
                // Over the cap: dropping both halves closes the connection.
                let Some(admission) = serving.budget.admit(&peer, Instant::now()) else {
                    continue;
                };
                let span = tracing::info_span!("connection", peer = %peer, frontend = F::NAME);
                let door = Door::Frontend {
                    place: admission,
                    peer,
                };
                serving.spawn::<F>((reader, writer), door, span);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of fds and the like: do not spin on the error.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Which listener a connection came through.
#[derive(Debug)]
pub(super) enum Door {
    /// The frontend: privileged only if the host has a token (which its
    /// hello then presented).
    Frontend {
        /// Its place under the connection cap, freed when dropped.
        place: Admission,
        /// The peer's address, for logs that must name it even when the
        /// connection's span is filtered out.
        peer: String,
    },
    /// The control socket, whose peer credentials were checked: privileged;
    /// its hello carries no token.
    ControlSocket,
}

impl Door {
    /// The peer, for logs.
    pub(super) fn peer(&self) -> &str {
        match self {
            Door::Frontend { peer, .. } => peer,
            Door::ControlSocket => "control socket",
        }
    }
}

/// Accepts on the control socket: only peers running as the host's uid or
/// root get through; their connections may use the control plane.
pub(super) async fn control_accept_loop<F: Frontend>(
    listener: std::os::unix::net::UnixListener,
    serving: Serving,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener))
    {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen on the control socket");
            return;
        }
    };
    let own_uid = crate::control::own_uid();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => cred,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: no peer credentials; closing");
                continue;
            }
        };
        if !crate::control::peer_allowed(peer.uid(), own_uid) {
            tracing::warn!(
                peer_uid = peer.uid(),
                peer_pid = ?peer.pid(),
                host_uid = own_uid,
                "control socket: refusing a peer running as another user"
            );
            tokio::task::spawn_local(crate::control::refuse_control_peer(
                stream,
                peer.uid(),
                serving.service_name.clone(),
                serving.cfg.limits,
            ));
            continue;
        }
        let adopted = stream.into_std().and_then(F::adopt_unix);
        let (reader, writer) = match adopted {
            Ok(halves) => halves,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot adopt the connection");
                continue;
            }
        };
        let span = tracing::info_span!(
            "control",
            peer_uid = peer.uid(),
            peer_pid = ?peer.pid(),
            frontend = F::NAME
        );
        serving.spawn::<F>((reader, writer), Door::ControlSocket, span);
    }
}

/// What every accepted connection is served with.
#[derive(Clone)]
pub(super) struct Serving {
    pub(super) dataplane: Shared,
    pub(super) cfg: Arc<HostConfig>,
    pub(super) service_name: ProcName,
    pub(super) budget: Rc<ConnBudget>,
}

impl Serving {
    /// Serves an accepted connection on its own task (on this thread).
    pub(super) fn spawn<F: Frontend>(
        &self,
        (reader, writer): (F::Reader, F::Writer),
        door: Door,
        span: tracing::Span,
    ) {
        tracing::debug!(parent: &span, "accepted");
        tokio::task::spawn_local(connection::<F>(
            reader,
            writer,
            self.dataplane.clone(),
            self.cfg.clone(),
            self.service_name.clone(),
            self.budget.clone(),
            door,
            span,
        ));
    }
}
