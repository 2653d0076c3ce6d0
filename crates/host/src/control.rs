//! The control socket (created with mode 0600, peers checked with
//! `SO_PEERCRED` by the I/O thread) and the wire's view of proc states. A
//! leaf: the handling of control requests lives with the host
//! (`host/control.rs`).

use std::io;
use std::os::fd::AsFd as _;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use hostmux_lifecycle::{ProcStatus, TerminalStatus};
use hostmux_wire::ProcState;

use crate::HostError;

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
