//! Handing ring memfds and doorbells to another process over a Unix socket
//! (`SCM_RIGHTS`). Not a hot path: used once per ring at proc start.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::error::RingError;

/// Most descriptors one call passes.
pub const MAX_PASSED_FDS: usize = 8;

/// Send `fds` (at most [`MAX_PASSED_FDS`]) with a one-byte message over a
/// connected Unix stream or datagram socket.
pub fn send_fds(socket: impl AsFd, fds: &[BorrowedFd<'_>]) -> Result<(), RingError> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(RingError::TooManyFds {
            count: fds.len(),
            max: MAX_PASSED_FDS,
        });
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PASSED_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(RingError::TooManyFds {
            count: fds.len(),
            max: MAX_PASSED_FDS,
        });
    }
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(b"F")],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|e| RingError::os("sendmsg(SCM_RIGHTS)", e))?;
    Ok(())
}

/// Receive the descriptors sent by one [`send_fds`] call (close-on-exec set).
/// Blocks until the message arrives; returns an empty list at end of stream.
pub fn recv_fds(socket: impl AsFd) -> Result<Vec<OwnedFd>, RingError> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PASSED_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| RingError::os("recvmsg(SCM_RIGHTS)", e))?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(fds)
}
