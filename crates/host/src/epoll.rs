//! The epoll frontend: tokio's reactor on a current-thread runtime.

use std::io;

use hostmux_wire::FrameDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{tcp, unix, TcpListener, UnixListener};

use crate::frontend::{ConnReader, ConnWriter, Frontend, StdListener};

/// The epoll (tokio) frontend.
pub(crate) struct Epoll;

pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub(crate) enum Reader {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

pub(crate) enum Writer {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

impl ConnReader for Reader {
    type Chunk = crate::frontend::NoChunk;

    async fn read_into(&mut self, mut decoder: FrameDecoder) -> (io::Result<usize>, FrameDecoder) {
        let spare = decoder.spare_capacity_mut();
        let result = match self {
            Reader::Tcp(r) => r.read(spare).await,
            Reader::Unix(r) => r.read(spare).await,
        };
        if let Ok(n) = result {
            decoder.commit(n);
        }
        (result, decoder)
    }

    fn reads_direct(&self) -> bool {
        true
    }

    async fn read_direct(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let read = match self {
                Reader::Tcp(r) => {
                    r.readable().await?;
                    r.try_read(buf)
                }
                Reader::Unix(r) => {
                    r.readable().await?;
                    r.try_read(buf)
                }
            };
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                read => return read,
            }
        }
    }

    async fn read_raw(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let result = match self {
            Reader::Tcp(r) => r.read(&mut buf).await,
            Reader::Unix(r) => r.read(&mut buf).await,
        };
        (result, buf)
    }
}

impl ConnWriter for Writer {
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let result = match self {
            Writer::Tcp(w) => w.write_all(&buf).await,
            Writer::Unix(w) => w.write_all(&buf).await,
        };
        (result, buf)
    }
}

impl Frontend for Epoll {
    type Listener = Listener;
    type Reader = Reader;
    type Writer = Writer;
    const NAME: &'static str = "epoll";

    fn listener(listener: StdListener) -> io::Result<Listener> {
        Ok(match listener {
            StdListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            StdListener::Unix(l) => Listener::Unix(UnixListener::from_std(l)?),
        })
    }

    fn adopt_unix(stream: std::os::unix::net::UnixStream) -> io::Result<(Reader, Writer)> {
        stream.set_nonblocking(true)?;
        let (r, w) = tokio::net::UnixStream::from_std(stream)?.into_split();
        Ok((Reader::Unix(r), Writer::Unix(w)))
    }

    fn adopt(
        accepted: crate::io::Accepted,
        _tls: Option<&crate::TlsConfig>,
    ) -> io::Result<(Reader, Writer)> {
        match accepted {
            crate::io::Accepted::Tcp(stream, _) => {
                stream.set_nonblocking(true)?;
                stream.set_nodelay(true)?;
                let (r, w) = tokio::net::TcpStream::from_std(stream)?.into_split();
                Ok((Reader::Tcp(r), Writer::Tcp(w)))
            }
            crate::io::Accepted::Unix(stream) => Self::adopt_unix(stream),
        }
    }

    async fn connect(addr: std::net::SocketAddr) -> io::Result<(Reader, Writer)> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok((Reader::Tcp(r), Writer::Tcp(w)))
    }

    async fn accept(listener: &Listener) -> io::Result<(Reader, Writer, String)> {
        match listener {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true)?;
                let (r, w) = stream.into_split();
                Ok((Reader::Tcp(r), Writer::Tcp(w), peer.to_string()))
            }
            Listener::Unix(l) => {
                let (stream, _) = l.accept().await?;
                let (r, w) = stream.into_split();
                Ok((Reader::Unix(r), Writer::Unix(w), "unix".to_owned()))
            }
        }
    }
}
