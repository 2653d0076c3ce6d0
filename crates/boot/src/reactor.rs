//! Registering descriptors with tokio's reactor (`AsyncFd`), written once
//! for every crate that waits on an fd: a pidfd, a pipe, an eventfd
//! doorbell. Needs the `tokio` feature.
//!
//! tokio's registration is `unsafe` because the reactor keys on the fd
//! number: the fd must stay open and mean the same file for as long as it
//! is registered. Both ways in here meet that by construction. [`register`]
//! takes an [`OwnedFd`], which the `AsyncFd` then owns. [`Registered`] keeps
//! any value that has an fd (an eventfd wrapper, say) beside a registered
//! duplicate of that fd: the duplicate is owned by the registration alone,
//! so nothing the value does can close or replace it, and readiness of the
//! duplicate is readiness of the value's file (both refer to one open file).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// Registration failed; the descriptor comes back.
#[derive(Debug, thiserror::Error)]
#[error("registering fd with the tokio reactor: {source}")]
pub struct RegisterError {
    fd: OwnedFd,
    #[source]
    source: io::Error,
}

impl RegisterError {
    /// The descriptor that was not registered, and why.
    pub fn into_parts(self) -> (OwnedFd, io::Error) {
        (self.fd, self.source)
    }
}

impl From<RegisterError> for io::Error {
    fn from(e: RegisterError) -> Self {
        e.source
    }
}

/// Registers `fd` with the current tokio runtime's reactor for `interest`.
///
/// # Panics
///
/// Outside a tokio runtime with I/O enabled (as `AsyncFd` does).
pub fn register(fd: OwnedFd, interest: Interest) -> Result<AsyncFd<OwnedFd>, RegisterError> {
    crate::sys::register(fd, interest).map_err(|(fd, source)| RegisterError { fd, source })
}

/// [`register`] for readability: a pidfd's exit, a pipe's data or EOF, an
/// eventfd's count.
pub fn register_readable(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, RegisterError> {
    register(fd, Interest::READABLE)
}

/// A value with an fd, beside a registered duplicate of that fd. Waits look
/// like [`AsyncFd`]'s: [`Registered::readable`] yields a guard whose
/// [`get_inner`](ReadyGuard::get_inner) is the value.
#[derive(Debug)]
pub struct Registered<T> {
    value: T,
    io: AsyncFd<OwnedFd>,
}

impl<T: AsFd> Registered<T> {
    /// Registers a close-on-exec duplicate of `value`'s fd for readability.
    /// Costs one descriptor and one `fcntl(F_DUPFD_CLOEXEC)` per
    /// registration, none per wait.
    pub fn for_reading(value: T) -> io::Result<Self> {
        Self::new(value, Interest::READABLE)
    }

    /// Registers a close-on-exec duplicate of `value`'s fd for `interest`.
    pub fn new(value: T, interest: Interest) -> io::Result<Self> {
        let duplicate = value.as_fd().try_clone_to_owned()?;
        let io = register(duplicate, interest)?;
        Ok(Self { value, io })
    }
}

impl<T> Registered<T> {
    /// The value.
    pub fn get_ref(&self) -> &T {
        &self.value
    }

    /// Waits until the fd is readable. Clear the guard's readiness
    /// ([`ReadyGuard::clear_ready`]) once a read finds nothing more.
    pub async fn readable(&self) -> io::Result<ReadyGuard<'_, T>> {
        let guard = self.io.readable().await?;
        Ok(ReadyGuard {
            guard,
            value: &self.value,
        })
    }
}

/// Readiness of a [`Registered`] value, from [`Registered::readable`].
#[derive(Debug)]
pub struct ReadyGuard<'a, T> {
    guard: AsyncFdReadyGuard<'a, OwnedFd>,
    value: &'a T,
}

impl<T> ReadyGuard<'_, T> {
    /// The registered value.
    pub fn get_inner(&self) -> &T {
        self.value
    }

    /// Forgets the readiness seen: the next [`Registered::readable`] waits
    /// for a new event.
    pub fn clear_ready(&mut self) {
        self.guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_registered_pipe_wakes_when_written_and_stays_owned() {
        runtime().block_on(async {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let registered = Registered::for_reading(read).unwrap();
            let waiter = async {
                let mut guard = registered.readable().await.unwrap();
                let mut byte = [0u8; 1];
                let n = rustix::io::read(guard.get_inner(), &mut byte).unwrap();
                guard.clear_ready();
                (n, byte[0])
            };
            let writer = async {
                tokio::task::yield_now().await;
                rustix::io::write(&write, b"x").unwrap();
            };
            let ((n, byte), ()) = tokio::time::timeout(Duration::from_secs(10), async {
                tokio::join!(waiter, writer)
            })
            .await
            .expect("readable within 10 s of the write");
            assert_eq!((n, byte), (1, b'x'));
            // The value is still usable: the registration owns a duplicate.
            rustix::io::write(&write, b"y").unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(
                rustix::io::read(registered.get_ref(), &mut byte).unwrap(),
                1
            );
            assert_eq!(byte[0], b'y');
        });
    }

    #[test]
    fn register_readable_sees_eof() {
        runtime().block_on(async {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let fd = register_readable(read).unwrap();
            drop(write);
            let guard = tokio::time::timeout(Duration::from_secs(10), fd.readable())
                .await
                .expect("EOF makes the pipe readable")
                .unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(rustix::io::read(guard.get_inner(), &mut byte).unwrap(), 0);
        });
    }
}
