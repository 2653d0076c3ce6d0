//! The blocking data-plane client on std sockets, for programs without an
//! async runtime (the CLI's `send`, the demo's and the benchmark's load).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use hostmux_wire::{Addr, AddrKind, FrameHeader, FrameView, Limits};

use super::codec::{hello_answer, hello_outcome, ClientDecoder, ClientEncoder};
use super::ReceivedFrame;
use crate::HostError;

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn reader(&mut self) -> &mut dyn Read {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Tls(s) => s,
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Tls(s) => s,
        }
    }

    fn set_nonblocking(&self, nonblocking: bool) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(nonblocking),
            Stream::Unix(s) => s.set_nonblocking(nonblocking),
            Stream::Tls(_) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "busy polling is for plain TCP and Unix-socket connections, not TLS",
            )),
        }
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tls(s) => s.sock.set_read_timeout(timeout),
        }
    }
}

/// A data-plane client on std sockets: the blocking twin of
/// [`Client`](crate::Client), over the same [`ClientEncoder`] and
/// [`ClientDecoder`].
///
/// Writes are batched by the caller's choice: [`queue`](Self::queue)
/// encodes into the batch and [`flush`](Self::flush) writes it in one call;
/// [`write_raw`](Self::write_raw) writes a prepared buffer as it is, so a
/// load generator pays one `write` per batch and nothing per frame.
/// Receiving reads into the decoder's buffer and hands frames out in place
/// ([`recv_with`](Self::recv_with)); a read timeout
/// ([`set_read_timeout`](Self::set_read_timeout)) ends a wait with
/// [`HostError::ReceiveTimeout`]. With [`set_busy_poll`](Self::set_busy_poll)
/// the socket is non-blocking and reads and writes spin instead of
/// sleeping: the lowest round trip, for a core's worth of CPU.
#[derive(Debug)]
pub struct BlockingClient {
    stream: Stream,
    peer: String,
    encoder: ClientEncoder,
    decoder: ClientDecoder,
    read_timeout: Option<Duration>,
    /// Reads and writes spin on a non-blocking socket.
    busy_poll: bool,
}

impl BlockingClient {
    /// Connects to the frontend at `addr` (`tcp:…` or `unix:/path`), says
    /// hello as `name` presenting `token` (empty when the host has none) to
    /// the service proc `service_name`, and waits up to `hello_timeout` for
    /// the ack. Reads then wait without a limit until
    /// [`set_read_timeout`](Self::set_read_timeout).
    pub fn connect(
        addr: &Addr,
        name: &str,
        token: &[u8],
        service_name: &str,
        hello_timeout: Duration,
    ) -> Result<Self, HostError> {
        let peer = addr.to_string();
        let connect_error = |source| HostError::Connect {
            addr: peer.clone(),
            source,
        };
        let stream = match addr.kind() {
            AddrKind::Tcp { host, port } => {
                let stream = TcpStream::connect((host, port)).map_err(connect_error)?;
                stream.set_nodelay(true).map_err(connect_error)?;
                Stream::Tcp(stream)
            }
            AddrKind::UnixPath(path) => {
                Stream::Unix(UnixStream::connect(path).map_err(connect_error)?)
            }
            AddrKind::UnixAbstract(_) => return Err(super::abstract_unsupported(addr)),
        };
        Self::hello(stream, peer, name, token, service_name, hello_timeout)
    }

    /// [`connect`](Self::connect) over TLS to a TCP frontend: the host's
    /// certificate must chain to a root of `tls` and name the address's
    /// host (an IP SAN for an IP address). `tls` may carry a client
    /// certificate ([`TlsConfig::client_config`](crate::TlsConfig::client_config)
    /// does) or not (ordinary clients need none).
    pub fn connect_tls(
        addr: &Addr,
        name: &str,
        token: &[u8],
        service_name: &str,
        hello_timeout: Duration,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Self, HostError> {
        let peer = addr.to_string();
        let connect_error = |source| HostError::Connect {
            addr: peer.clone(),
            source,
        };
        let AddrKind::Tcp { host, port } = addr.kind() else {
            return Err(HostError::InvalidAddr {
                addr: peer,
                reason: "TLS needs a TCP address".to_owned(),
            });
        };
        let server_name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name =
            rustls::pki_types::ServerName::try_from(server_name.to_owned()).map_err(|e| {
                HostError::InvalidAddr {
                    addr: peer.clone(),
                    reason: format!("not a TLS server name: {e}"),
                }
            })?;
        let session = rustls::ClientConnection::new(tls, server_name)
            .map_err(|e| connect_error(std::io::Error::other(e)))?;
        let socket = TcpStream::connect((host, port)).map_err(connect_error)?;
        socket.set_nodelay(true).map_err(connect_error)?;
        let stream = Stream::Tls(Box::new(rustls::StreamOwned::new(session, socket)));
        Self::hello(stream, peer, name, token, service_name, hello_timeout)
    }

    fn hello(
        stream: Stream,
        peer: String,
        name: &str,
        token: &[u8],
        service_name: &str,
        hello_timeout: Duration,
    ) -> Result<Self, HostError> {
        let limits = Limits::default();
        let mut client = Self {
            stream,
            encoder: ClientEncoder::new(name, limits),
            decoder: ClientDecoder::new(&peer, limits),
            peer,
            read_timeout: None,
            busy_poll: false,
        };
        client.encoder.queue_hello(service_name, token)?;
        // A hello that cannot be written is a connection that never was.
        client.flush().map_err(|error| match error {
            HostError::Send { addr, source } => HostError::Connect { addr, source },
            other => other,
        })?;
        client.set_read_timeout(Some(hello_timeout))?;
        let answer = client.recv_with(hello_answer);
        hello_outcome(&client.peer, name, answer)?;
        client.set_read_timeout(None)?;
        Ok(client)
    }

    /// The name this client said hello with.
    pub fn name(&self) -> &str {
        self.encoder.name()
    }

    /// The encoder: to prepare frames outside the batch
    /// ([`ClientEncoder::encode_to`]) for [`write_raw`](Self::write_raw).
    pub fn encoder(&self) -> &ClientEncoder {
        &self.encoder
    }

    /// Encodes a data frame to proc `dest` on `port` into the batch.
    pub fn queue(
        &mut self,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.encoder.queue(dest, port, message_id, payload)
    }

    /// Encodes a frame with any header into the batch.
    pub fn queue_frame(
        &mut self,
        header: &FrameHeader<'_>,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.encoder.queue_frame(header, payload)
    }

    /// Bytes queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.encoder.queued()
    }

    /// Writes the batch in one call (nothing if it is empty).
    pub fn flush(&mut self) -> Result<(), HostError> {
        if self.encoder.queued() > 0 {
            let Self {
                stream,
                encoder,
                peer,
                ..
            } = self;
            write_all(stream, peer, encoder.batch(), self.busy_poll)?;
            encoder.clear();
        }
        Ok(())
    }

    /// Writes already encoded frames as they are (a load generator's
    /// prepared batch), after anything queued.
    pub fn write_raw(&mut self, frames: &[u8]) -> Result<(), HostError> {
        self.flush()?;
        write_all(&mut self.stream, &self.peer, frames, self.busy_poll)
    }

    /// Queues and flushes one data frame.
    pub fn send(
        &mut self,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.queue(dest, port, message_id, payload)?;
        self.flush()
    }

    /// Sets how long a receive waits for the host; `None` waits forever.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), HostError> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|source| HostError::Receive {
                addr: self.peer.clone(),
                source,
            })?;
        self.read_timeout = timeout;
        Ok(())
    }

    /// Busy polling: with `true` the socket is made non-blocking, and a
    /// receive spins until a frame is there (up to the read timeout, as
    /// before) and a write spins while the socket is full, never sleeping
    /// in the kernel. That saves the wake-up of a blocked reader on every
    /// answer (several microseconds on small VMs) for a whole core spent
    /// spinning: for latency-critical clients and benchmarks on machines
    /// with a core to spare. Plain TCP and Unix-socket connections only
    /// ([`HostError::Receive`] with `Unsupported` for TLS).
    pub fn set_busy_poll(&mut self, on: bool) -> Result<(), HostError> {
        self.stream
            .set_nonblocking(on)
            .map_err(|source| HostError::Receive {
                addr: self.peer.clone(),
                source,
            })?;
        self.busy_poll = on;
        Ok(())
    }

    /// The next frame, copied, or `None` once the host closed the
    /// connection.
    pub fn recv(&mut self) -> Result<Option<ReceivedFrame>, HostError> {
        self.recv_with(ReceivedFrame::from_view)
    }

    /// The next frame, read in place by `f` (no copy, no allocation), or
    /// `None` once the host closed the connection.
    pub fn recv_with<T>(
        &mut self,
        f: impl FnOnce(&FrameView<'_>) -> T,
    ) -> Result<Option<T>, HostError> {
        let mut spinning_since = None;
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(f(&frame)));
            }
            let n = match self.stream.reader().read(self.decoder.read_buf()) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && self.busy_poll => {
                    let since = *spinning_since.get_or_insert_with(std::time::Instant::now);
                    if self
                        .read_timeout
                        .is_some_and(|limit| since.elapsed() >= limit)
                    {
                        return Err(HostError::ReceiveTimeout {
                            addr: self.peer.clone(),
                            waited: self.read_timeout.unwrap_or_default(),
                        });
                    }
                    std::hint::spin_loop();
                    continue;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(HostError::ReceiveTimeout {
                        addr: self.peer.clone(),
                        waited: self.read_timeout.unwrap_or_default(),
                    })
                }
                Err(source) => {
                    return Err(HostError::Receive {
                        addr: self.peer.clone(),
                        source,
                    })
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.decoder.commit(n);
        }
    }
}

fn write_all(
    stream: &mut Stream,
    peer: &str,
    bytes: &[u8],
    busy_poll: bool,
) -> Result<(), HostError> {
    if busy_poll {
        return spin_write_all(stream.writer(), bytes).map_err(|source| HostError::Send {
            addr: peer.to_owned(),
            source,
        });
    }
    let writer = stream.writer();
    writer
        .write_all(bytes)
        // TLS: what rustls still holds goes out now.
        .and_then(|()| writer.flush())
        .map_err(|source| HostError::Send {
            addr: peer.to_owned(),
            source,
        })
}

/// `write_all` on a non-blocking socket: spins while it is full.
fn spin_write_all(writer: &mut dyn Write, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match writer.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
