//! The frontend seam: what the I/O thread needs from a runtime's sockets.
//!
//! Kept small on purpose: accept, read into the frame decoder's buffer, and
//! write an owned buffer. Both calls move their buffer in and out (the
//! io_uring shape: the kernel owns the buffer while the operation runs), so
//! one driver ([`crate::io`]) serves both implementations.

use std::io;
use std::os::unix::net::UnixListener;

use hostmux_wire::FrameDecoder;

/// A bound, non-blocking listening socket from `std`.
#[derive(Debug)]
pub(crate) enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(UnixListener),
}

/// Reads a connection's bytes straight into the decoder's spare room.
pub(crate) trait ConnReader: 'static {
    /// Reads once into `decoder.spare_capacity_mut()` and commits what was
    /// read; returns the byte count (0 at end of stream) and the decoder.
    async fn read_into(&mut self, decoder: FrameDecoder) -> (io::Result<usize>, FrameDecoder);
}

/// Writes whole buffers to a connection.
pub(crate) trait ConnWriter: 'static {
    /// Writes all of `buf`; returns it (for reuse) with the outcome.
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
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
    /// Dials another host.
    async fn connect(addr: std::net::SocketAddr) -> io::Result<(Self::Reader, Self::Writer)>;
}
