//! The frontend seam: what the I/O thread needs from a runtime's sockets.
//!
//! Kept small on purpose: accept, read into the frame decoder's buffer, and
//! write an owned buffer. Both calls move their buffer in and out (the
//! io_uring shape: the kernel owns the buffer while the operation runs), so
//! one driver ([`crate::io`]) serves both implementations.

use std::io;
use std::os::unix::net::UnixListener;

use std::net::ToSocketAddrs;

use hostmux_wire::{Addr, AddrKind, FrameDecoder};

use crate::HostError;

/// A bound, non-blocking listening socket from `std`.
#[derive(Debug)]
pub(crate) enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(UnixListener),
}

/// What [`ConnReader::next_chunk`] has.
pub(crate) enum Next<C> {
    /// The stream's next bytes, lent: decode them in place
    /// ([`FrameDecoder::lend`]), then drop the chunk (its buffer goes back)
    /// or give its unconsumed rest back with [`ConnReader::keep`].
    Chunk(C),
    /// End of stream.
    Eof,
    /// No chunk this time: read once with [`ConnReader::read_into`].
    Read,
}

/// The chunk type of readers that never lend one.
pub(crate) enum NoChunk {}

impl std::ops::Deref for NoChunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match *self {}
    }
}

/// Reads a connection's bytes straight into the decoder's spare room.
pub(crate) trait ConnReader: 'static {
    /// A chunk of the stream lent by [`next_chunk`](Self::next_chunk).
    type Chunk: std::ops::Deref<Target = [u8]>;

    /// Whether [`next_chunk`](Self::next_chunk) lends chunks (the
    /// io-uring-direct frontend's multishot receive); else every read is a
    /// [`read_into`](Self::read_into).
    fn lends_chunks(&self) -> bool {
        false
    }

    /// The stream's next bytes in a buffer the reader owns (see [`Next`]).
    /// Cancel-safe: a chunk is taken from the reader only when returned.
    async fn next_chunk(&mut self) -> io::Result<Next<Self::Chunk>> {
        Ok(Next::Read)
    }

    /// Gives back a chunk of which only the first `used` bytes were
    /// consumed: the rest are the stream's next bytes (for the next
    /// [`next_chunk`](Self::next_chunk) or
    /// [`read_direct`](Self::read_direct)).
    fn keep(&mut self, chunk: Self::Chunk, used: usize) {
        let _ = (chunk, used);
    }

    /// The host stops reading this connection for a while (a full ring or
    /// link window, a full reply queue): a reader that receives ahead
    /// (multishot) stops doing so; what it already received is kept and
    /// comes first when reading resumes.
    fn pause(&mut self) {}

    /// Reads once into `decoder.spare_capacity_mut()` and commits what was
    /// read; returns the byte count (0 at end of stream) and the decoder.
    async fn read_into(&mut self, decoder: FrameDecoder) -> (io::Result<usize>, FrameDecoder);

    /// Shuts the connection's read side down after a `read_into` future was
    /// dropped unfinished (a timeout), so a read the kernel still holds
    /// (io_uring keeps a dropped read, its buffer and its socket until it
    /// completes) completes now instead of when the peer next sends.
    /// Runtimes whose reads end when dropped (epoll) keep the default.
    fn shutdown(&self) {}

    /// Reads once into `buf[..buf.len()]` (raw bytes, not frames: TLS
    /// records, see [`crate::io::tls`]); returns the byte count (0 at end of
    /// stream) and the buffer, whose length is unchanged.
    async fn read_raw(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);

    /// Whether [`read_direct`](Self::read_direct) works on this connection:
    /// plain sockets only (a TLS connection's plaintext comes out of
    /// rustls, so its large frames take the copied path).
    fn reads_direct(&self) -> bool {
        false
    }

    /// Waits until the connection is readable, then reads what is there
    /// into `buf` without blocking: raw stream bytes, straight into memory
    /// the caller owns (a proc's ring, see [`crate::io::zero_copy`]).
    /// Cancel-safe: no operation outlives the future, so dropping it (a
    /// deadline) leaves `buf` untouched from then on. Returns the byte
    /// count, 0 at end of stream.
    async fn read_direct(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _ = buf;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// The certificate the far end presented in a TLS handshake (its leaf),
    /// if any. Plain connections have none.
    fn peer_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        None
    }
}

/// Writes whole buffers to a connection.
pub(crate) trait ConnWriter: 'static {
    /// Writes all of `buf`; returns it (for reuse) with the outcome.
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);

    /// Ends the stream cleanly before the connection is dropped (a TLS
    /// session sends its `close_notify`); plain sockets need nothing.
    async fn close(&mut self) {}
}

/// A runtime's sockets.
pub(crate) trait Frontend: 'static {
    /// The runtime's listener.
    type Listener: 'static;
    /// The read half of an accepted connection.
    type Reader: ConnReader;
    /// The write half of an accepted connection.
    type Writer: ConnWriter;
    /// For logs.
    const NAME: &'static str;
    /// Adopts a bound `std` listener (call inside the runtime).
    fn listener(listener: StdListener) -> io::Result<Self::Listener>;
    /// Accepts one connection; the string names the peer for logs.
    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Reader, Self::Writer, String)>;
    /// Adopts an accepted Unix stream (the control socket's connections).
    fn adopt_unix(
        stream: std::os::unix::net::UnixStream,
    ) -> io::Result<(Self::Reader, Self::Writer)>;
    /// Adopts a frontend connection another I/O thread accepted
    /// ([`crate::io::handoff`]), as [`accept`](Self::accept) would have
    /// returned it. `tls` is the host's TLS configuration: the runtimes
    /// speak plain sockets and ignore it; [`crate::io::tls::Tls`] uses it.
    fn adopt(
        accepted: crate::io::Accepted,
        tls: Option<&crate::TlsConfig>,
    ) -> io::Result<(Self::Reader, Self::Writer)>;
    /// Dials another host.
    async fn connect(addr: std::net::SocketAddr) -> io::Result<(Self::Reader, Self::Writer)>;
    /// Dials a link to another host at `addr`: with `tls`, the TLS
    /// handshake is done (verifying that the peer's certificate names
    /// `server_name`) before this returns. The runtimes themselves speak
    /// plain TCP only and refuse `tls`; [`crate::io::tls::Tls`] wraps a
    /// runtime to speak TLS.
    async fn connect_link(
        addr: std::net::SocketAddr,
        server_name: &str,
        tls: Option<&crate::TlsConfig>,
    ) -> Result<(Self::Reader, Self::Writer), DialFailure> {
        let _ = server_name;
        if tls.is_some() {
            return Err(DialFailure::Unreachable(format!(
                "the {} frontend cannot speak TLS by itself",
                Self::NAME
            )));
        }
        Self::connect(addr)
            .await
            .map_err(|e| DialFailure::Unreachable(format!("connect failed: {e}")))
    }
    /// How many writes (and dials) this thread has queued that reach the
    /// kernel only when the runtime parks: tokio-uring submits its queue
    /// in tokio's park hook, not when an operation is created. A count
    /// that moves tells the I/O loop's spin (which never parks) to let the
    /// runtime park now, or the reply it just queued would wait for the
    /// end of the spin. Runtimes that make their system calls on the spot
    /// (epoll) keep the default, which never moves.
    fn queued_writes() -> u64 {
        0
    }
    /// One turn of the I/O loop (each turn of its spin, and after each
    /// drain round that did not finish): a runtime that batches its
    /// system calls submits what this thread's tasks queued since the last
    /// turn and wakes the tasks whose operations completed (the
    /// io-uring-direct frontend, see [`crate::uring_direct`]). Runtimes
    /// that make their system calls on the spot keep the default, which
    /// does nothing.
    fn turn() {}
}

/// One non-blocking `recv` into `buf` (`MSG_DONTWAIT`): the byte count,
/// 0 at end of stream, `WouldBlock` if nothing is there.
pub(crate) fn recv_now(fd: impl std::os::fd::AsFd, buf: &mut [u8]) -> io::Result<usize> {
    rustix::net::recv(fd, buf, rustix::net::RecvFlags::DONTWAIT)
        .map(|(n, _)| n)
        .map_err(io::Error::from)
}

/// [`ConnReader::read_direct`] for a runtime whose own reads cannot be
/// cancelled: `socket` is a duplicate of the connection's socket,
/// registered (on first use, into `registered`) with tokio's reactor for
/// readability; reads at once if bytes are there, else waits for
/// readability and reads without blocking, so no operation outlives the
/// future.
pub(crate) async fn read_when_readable(
    registered: &mut Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    socket: impl FnOnce() -> io::Result<std::os::fd::OwnedFd>,
    buf: &mut [u8],
) -> io::Result<usize> {
    if registered.is_none() {
        *registered = Some(hostmux_boot::reactor::register_readable(socket()?)?);
    }
    let io = registered.as_ref().expect("registered above");
    match recv_now(io.get_ref(), buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        read => return read,
    }
    loop {
        let mut ready = io.readable().await?;
        if let Ok(read) = ready.try_io(|fd| recv_now(fd.get_ref(), buf)) {
            return read;
        }
    }
}

/// The read on the spot of a socket with a backlog (a ring frontend's
/// previous read filled all its room): `recv` (a non-blocking read) into
/// the decoder's spare room. `backlog` says afterwards whether that read
/// filled its room too; `None` (and no backlog) if nothing was there, so
/// the read must go through the ring.
pub(crate) async fn read_backlog(
    decoder: &mut FrameDecoder,
    backlog: &mut bool,
    recv: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> Option<io::Result<usize>> {
    let spare = decoder.spare_capacity_mut();
    let room = spare.len();
    match recv(spare) {
        Ok(n) => {
            decoder.commit(n);
            *backlog = n == room;
            // A read that never waits must still let the thread's other
            // tasks run (tokio's own reads do the same).
            tokio::task::coop::consume_budget().await;
            Some(Ok(n))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            *backlog = false;
            None
        }
        Err(e) => Some(Err(e)),
    }
}

/// One step of a write-all loop: adds what a write wrote to `written`, or
/// says why the loop ends (an error; a write that took nothing is
/// `WriteZero`). An interrupted write is retried.
pub(crate) fn write_step(result: io::Result<usize>, written: &mut usize) -> Option<io::Error> {
    match result {
        Ok(0) => Some(io::Error::new(
            io::ErrorKind::WriteZero,
            "the peer took no more bytes",
        )),
        Ok(n) => {
            *written += n;
            None
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        Err(e) => Some(e),
    }
}

/// Why a link to another host could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialFailure {
    /// No connection, or it broke before the link was up: the address does
    /// not resolve, nothing listens, a time-out.
    Unreachable(String),
    /// The peer was reached and said no: its TLS handshake failed (a
    /// certificate that does not chain to the CA or does not name the
    /// peer, either way) or it answered the hello with a refusal.
    Refused(String),
}

impl From<String> for DialFailure {
    fn from(reason: String) -> Self {
        DialFailure::Unreachable(reason)
    }
}

impl std::fmt::Display for DialFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialFailure::Unreachable(why) => write!(f, "unreachable: {why}"),
            DialFailure::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

/// Binds the frontend address (TCP, or a Unix path or abstract name),
/// non-blocking; returns the listener and the address actually bound.
pub(crate) fn bind(addr: &Addr) -> Result<(StdListener, Addr), HostError> {
    let bind_error = |source| HostError::Bind {
        addr: addr.to_string(),
        source,
    };
    match addr.kind() {
        AddrKind::Tcp { host, port } => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let socket = (host, port)
                .to_socket_addrs()
                .map_err(bind_error)?
                .next()
                .ok_or_else(|| HostError::InvalidAddr {
                    addr: addr.to_string(),
                    reason: "host name resolves to no address".to_owned(),
                })?;
            let listener = std::net::TcpListener::bind(socket).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            let local = listener.local_addr().map_err(bind_error)?;
            let bound = Addr::tcp(&local.ip().to_string(), local.port())?;
            Ok((StdListener::Tcp(listener), bound))
        }
        AddrKind::UnixPath(path) => {
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            Ok((StdListener::Unix(listener), addr.clone()))
        }
        AddrKind::UnixAbstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let socket =
                std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(bind_error)?;
            let listener =
                std::os::unix::net::UnixListener::bind_addr(&socket).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            Ok((StdListener::Unix(listener), addr.clone()))
        }
    }
}
