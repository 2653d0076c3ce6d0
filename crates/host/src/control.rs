//! The control socket (created with mode 0600, peers checked with
//! `SO_PEERCRED` by the I/O thread, refused peers told why) and the wire's
//! view of proc states. A leaf: the handling of control requests lives
//! with the host (`host/control.rs`).
//!
//! Two locks keep a proc run as another user (`spawn --user`) off the
//! control plane: the socket's mode (0600, owned by the host's user) makes
//! its `connect` fail with `EACCES`; and should the socket be reachable
//! anyway (a looser mode set by hand, an fd passed on), the peer's uid is
//! checked on accept and anyone but the host's uid and root is answered
//! [`ControlErrorKind::Unauthorized`] ("uid 65534 may not use this host's
//! control socket: only its user (uid 1000) and root may") in place of the
//! hello's ack, then the connection closes.

use std::io;
use std::os::fd::AsFd as _;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use std::time::Duration;

use hostmux_lifecycle::{ProcStatus, TerminalStatus};
use hostmux_wire::{
    ControlErrorKind, ControlResponse, FrameDecoder, Limits, ProcName, ProcState, ReplyTarget,
    Sender, HELLO_PORT,
};

use crate::HostError;

/// Longest hello a refused peer may send before it is told why (a control
/// client's hello carries no token: a header and nothing else).
const REFUSED_HELLO_MAX_BYTES: usize = 4096;

/// How long a refused peer has to send its hello.
const REFUSED_HELLO_WAIT: Duration = Duration::from_secs(2);

/// What a control-socket peer running as `uid` is told by a host running
/// as `host_uid`: who it is and who may.
pub(crate) fn refusal_message(uid: u32, host_uid: u32) -> String {
    format!(
        "uid {uid} may not use this host's control socket: only its user (uid {host_uid}) and root may"
    )
}

/// Whether a control-socket peer running as `peer_uid` may use the control
/// plane of a host running as `host_uid`: the same user, or root.
pub(crate) fn peer_allowed(peer_uid: u32, host_uid: u32) -> bool {
    peer_uid == host_uid || peer_uid == 0
}

/// Answers a control-socket peer that [`peer_allowed`] refused: reads its
/// hello (at most [`REFUSED_HELLO_MAX_BYTES`], within
/// [`REFUSED_HELLO_WAIT`]), answers it with a `ControlResponse` frame on
/// [`HELLO_PORT`] carrying [`ControlErrorKind::Unauthorized`] and
/// [`refusal_message`] instead of an ack, and closes. Anything but a
/// client's hello is closed without an answer.
pub(crate) async fn refuse_control_peer(
    mut stream: tokio::net::UnixStream,
    peer_uid: u32,
    service_name: ProcName,
    limits: Limits,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let hello_limits = Limits {
        max_frame_len: limits.max_frame_len.min(REFUSED_HELLO_MAX_BYTES),
        ..limits
    };
    let mut decoder = FrameDecoder::new(hello_limits);
    let read_hello = async {
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    return match frame.sender() {
                        Sender::Client { name } => Some(name.to_owned()),
                        _ => None,
                    }
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            match stream.read(decoder.spare_capacity_mut()).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => decoder.commit(n),
            }
        }
    };
    let Ok(Some(client)) = tokio::time::timeout(REFUSED_HELLO_WAIT, read_hello).await else {
        return;
    };
    let refusal = ControlResponse::Error {
        kind: ControlErrorKind::Unauthorized,
        message: refusal_message(peer_uid, own_uid()),
    };
    let frame = crate::dataplane::service::response_frame(
        ReplyTarget {
            name: &client,
            addr: "",
            to_client: true,
        },
        0,
        HELLO_PORT,
        &service_name,
        &refusal,
        &limits,
    );
    let _ = tokio::time::timeout(REFUSED_HELLO_WAIT, async {
        let _ = stream.write_all(&frame).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The effective uid of the host process.
pub(crate) fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Binds the control socket at `path` with mode 0600 and listens.
///
/// The mode is set on the socket before `bind` (`fchmod` on an unbound
/// Unix socket: Linux creates the file with that mode, less the umask), so
/// the path never exists with looser permissions; it is set again on the
/// path afterwards. An existing path is replaced only if it is a stale
/// socket (nobody accepts on it); anything else is refused.
pub(crate) fn bind_control_socket(path: &Path) -> Result<UnixListener, HostError> {
    let fail = |reason: String| HostError::ControlSocket {
        path: path.to_owned(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(fail("another process is listening on it".to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "removing a stale control socket");
                std::fs::remove_file(path)
                    .map_err(|e| fail(format!("cannot remove the stale socket: {e}")))?;
            }
            Err(e) => return Err(fail(format!("cannot tell whether it is stale: {e}"))),
        },
        Ok(_) => {
            return Err(fail(
                "the path exists and is not a socket; refusing to replace it".to_owned(),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("cannot inspect the path: {e}"))),
    }
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let os = |what: &str, e: rustix::io::Errno| fail(format!("{what}: {}", io::Error::from(e)));
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| os("socket", e))?;
    rustix::fs::fchmod(socket.as_fd(), rustix::fs::Mode::from_raw_mode(0o600))
        .map_err(|e| os("fchmod 0600 before bind", e))?;
    let addr = SocketAddrUnix::new(path).map_err(|e| os("socket address", e))?;
    rustix::net::bind(&socket, &addr).map_err(|e| os("bind", e))?;
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o600))
        .map_err(|e| os("chmod 0600", e))?;
    rustix::net::listen(&socket, 128).map_err(|e| os("listen", e))?;
    Ok(UnixListener::from(socket))
}

/// The wire's proc state for a terminal status.
pub(crate) fn terminal_state(status: &TerminalStatus) -> ProcState {
    match status {
        TerminalStatus::Exited { code, .. } => ProcState::Exited { code: *code },
        TerminalStatus::Signaled {
            signal,
            core_dumped,
            ..
        } => ProcState::Signaled {
            signal: *signal,
            core_dumped: *core_dumped,
        },
        TerminalStatus::Failed { reason, .. } => ProcState::Failed {
            reason: reason.clone(),
        },
    }
}

/// The wire's proc state for a live status.
pub(crate) fn live_state(status: &ProcStatus) -> ProcState {
    match status {
        ProcStatus::Starting => ProcState::Starting,
        ProcStatus::Ready => ProcState::Ready,
        ProcStatus::Stopping => ProcState::Terminating,
        ProcStatus::Terminal(status) => terminal_state(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hosts_user_and_root_may_control_it() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(65534, 0));
        assert!(!peer_allowed(1001, 1000));
        assert_eq!(
            refusal_message(65534, 1000),
            "uid 65534 may not use this host's control socket: only its user (uid 1000) and root may"
        );
    }
}
