//! The io_uring frontend (tokio-uring 0.5).
//!
//! Reads go straight into the frame decoder's aligned buffer: the decoder
//! is moved into the read operation inside [`DecoderBuf`] (io_uring owns the
//! buffer while the kernel may write it; its `unsafe` impls live in
//! [`crate::sys`]) and comes back with the byte count,
//! so the only copy between the socket and a proc's ring is the one into the
//! ring. Writes hand over the connection's owned reply buffer.
//!
//! tokio-uring is effectively unmaintained (its issues #281 and #336); the
//! seam is [`crate::frontend::Frontend`], so this module is what moves to the
//! `io-uring` crate or to monoio (same owned-buffer shape) later.

use std::io;
use std::rc::Rc;

use hostmux_wire::FrameDecoder;
use tokio_uring::net::{TcpListener, TcpStream, UnixStream};

use crate::frontend::{ConnReader, ConnWriter, Frontend, StdListener};
use crate::sys::DecoderBuf;

/// The io_uring frontend.
pub(crate) struct Uring;

/// Whether this kernel (and its seccomp policy) lets us build an io_uring.
pub(crate) fn available() -> bool {
    tokio_uring::Runtime::new(&tokio_uring::builder()).is_ok()
}

pub(crate) enum Listener {
    Tcp(TcpListener),
    /// tokio-uring 0.5 cannot adopt a bound Unix listener, so Unix accepts go
    /// through tokio's reactor (not a hot path); the accepted stream is then
    /// driven by io_uring.
    Unix(tokio::net::UnixListener),
}

#[derive(Clone)]
pub(crate) enum Stream {
    Tcp(Rc<TcpStream>),
    Unix(Rc<UnixStream>),
}

impl ConnReader for Stream {
    async fn read_into(&mut self, decoder: FrameDecoder) -> (io::Result<usize>, FrameDecoder) {
        let buf = DecoderBuf::new(decoder);
        let (result, buf) = match self {
            Stream::Tcp(s) => s.read(buf).await,
            Stream::Unix(s) => s.read(buf).await,
        };
        (result, buf.into_decoder())
    }
}

impl ConnWriter for Stream {
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Stream::Tcp(s) => s.write_all(buf).await,
            Stream::Unix(s) => s.write_all(buf).await,
        }
    }
}

impl Frontend for Uring {
    type Listener = Listener;
    type Reader = Stream;
    type Writer = Stream;
    const NAME: &'static str = "io_uring";

    fn listener(listener: StdListener) -> io::Result<Listener> {
        Ok(match listener {
            StdListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)),
            StdListener::Unix(l) => Listener::Unix(tokio::net::UnixListener::from_std(l)?),
        })
    }

    fn adopt_unix(stream: std::os::unix::net::UnixStream) -> io::Result<(Stream, Stream)> {
        let stream = Stream::Unix(Rc::new(UnixStream::from_std(stream)));
        Ok((stream.clone(), stream))
    }

    async fn connect(addr: std::net::SocketAddr) -> io::Result<(Stream, Stream)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let stream = Stream::Tcp(Rc::new(stream));
        Ok((stream.clone(), stream))
    }

    async fn accept(listener: &Listener) -> io::Result<(Stream, Stream, String)> {
        match listener {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true)?;
                let stream = Stream::Tcp(Rc::new(stream));
                Ok((stream.clone(), stream, peer.to_string()))
            }
            Listener::Unix(l) => {
                let (stream, _) = l.accept().await?;
                let stream = Stream::Unix(Rc::new(UnixStream::from_std(stream.into_std()?)));
                Ok((stream.clone(), stream, "unix".to_owned()))
            }
        }
    }
}
