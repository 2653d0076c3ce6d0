//! The tokio data-plane client: [`Client`], and its halves [`ClientWriter`]
//! and [`ClientReader`] for a load that sends and receives at once.

use std::path::Path;

use hostmux_wire::{Addr, AddrKind, FrameHeader, FrameView, Limits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{hello_answer, hello_outcome, ClientDecoder, ClientEncoder};
use super::ReceivedFrame;
use crate::HostError;

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// The sending half of a [`Client`]: encodes frames into a batch
/// ([`ClientWriter::queue`]) and writes the batch in one call
/// ([`ClientWriter::flush`]).
pub struct ClientWriter {
    stream: BoxWrite,
    encoder: ClientEncoder,
    peer: String,
}

/// The receiving half of a [`Client`]: frames are read into the decoder's
/// buffer and handed out in place.
pub struct ClientReader {
    stream: BoxRead,
    decoder: ClientDecoder,
}

/// A data-plane client on tokio: connects to a host's frontend (TCP or
/// Unix), says hello under its name (with the host's token if it has one),
/// then sends and receives frames. [`Client::into_split`] gives independent
/// halves for a load generator that sends and receives at once.
/// [`BlockingClient`](crate::BlockingClient) is the same client on std
/// sockets.
pub struct Client {
    writer: ClientWriter,
    reader: ClientReader,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.writer.encoder.name())
            .field("peer", &self.writer.peer)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientWriter")
            .field("name", &self.encoder.name())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReader")
            .field("peer", &self.decoder.peer())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to a TCP frontend (`host:port`) and says hello as `name`.
    /// `service_name` is the host's service proc (default `service`).
    pub async fn connect_tcp(
        addr: &str,
        name: &str,
        token: Option<&str>,
        service_name: &str,
    ) -> Result<Client, HostError> {
        let connect_error = |source| HostError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
        let (r, w) = stream.into_split();
        Self::over_stream(addr, r, w, name, token, service_name).await
    }

    /// Connects to a Unix-socket frontend or control socket at `path`.
    pub async fn connect_unix(
        path: impl AsRef<Path>,
        name: &str,
        token: Option<&str>,
        service_name: &str,
    ) -> Result<Client, HostError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| HostError::Connect {
                addr: shown.clone(),
                source,
            })?;
        let (r, w) = stream.into_split();
        Self::over_stream(&shown, r, w, name, token, service_name).await
    }

    /// Connects to a host's frontend address (`tcp:…`, `unix:/path`).
    /// Abstract Unix addresses are refused with [`HostError::InvalidAddr`].
    pub async fn connect(
        addr: &Addr,
        name: &str,
        token: Option<&str>,
        service_name: &str,
    ) -> Result<Client, HostError> {
        match addr.kind() {
            AddrKind::Tcp { host, port } => {
                let target = format!("{host}:{port}");
                Self::connect_tcp(&target, name, token, service_name).await
            }
            AddrKind::UnixPath(path) => Self::connect_unix(path, name, token, service_name).await,
            AddrKind::UnixAbstract(_) => Err(super::abstract_unsupported(addr)),
        }
    }

    /// Says hello as `name` over an already connected stream (its two
    /// halves) to the host at `peer` (shown in errors), and waits for the
    /// ack: for transports the `connect_*` functions do not open.
    pub async fn over_stream(
        peer: &str,
        reader: impl AsyncRead + Unpin + Send + 'static,
        writer: impl AsyncWrite + Unpin + Send + 'static,
        name: &str,
        token: Option<&str>,
        service_name: &str,
    ) -> Result<Client, HostError> {
        let limits = Limits::default();
        let mut client = Client {
            writer: ClientWriter {
                stream: Box::new(writer),
                encoder: ClientEncoder::new(name, limits),
                peer: peer.to_owned(),
            },
            reader: ClientReader {
                stream: Box::new(reader),
                decoder: ClientDecoder::new(peer, limits),
            },
        };
        client
            .writer
            .encoder
            .queue_hello(service_name, token.unwrap_or("").as_bytes())?;
        // A hello that cannot be written is a connection that never was.
        client.writer.flush().await.map_err(|error| match error {
            HostError::Send { addr, source } => HostError::Connect { addr, source },
            other => other,
        })?;
        let answer = client.reader.recv_with(hello_answer).await;
        hello_outcome(peer, name, answer)?;
        Ok(client)
    }

    /// The name this client said hello with.
    pub fn name(&self) -> &str {
        self.writer.name()
    }

    /// The host's address, as shown in errors.
    pub fn peer(&self) -> &str {
        &self.writer.peer
    }

    /// Sends a data frame to proc `dest` on `port` at once.
    pub async fn send(
        &mut self,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.writer.send(dest, port, message_id, payload).await
    }

    /// Sends a frame with any header (kind, flags, destination address).
    pub async fn send_frame(
        &mut self,
        header: &FrameHeader<'_>,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.writer.send_frame(header, payload).await
    }

    /// Sends a data frame to another client, by its hello name, at once
    /// ([`ClientEncoder::queue_to_client`]).
    pub async fn send_to_client(
        &mut self,
        client: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.writer
            .send_to_client(client, port, message_id, payload)
            .await
    }

    /// Writes already encoded bytes as they are (after anything queued).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        self.writer.write_raw(bytes).await
    }

    /// The encoder: to prepare frames outside the batch
    /// ([`ClientEncoder::encode_to`]).
    pub fn encoder(&self) -> &ClientEncoder {
        &self.writer.encoder
    }

    /// Encodes a frame with any header into the batch (sent by
    /// [`Client::flush`]).
    pub fn queue_frame(
        &mut self,
        header: &FrameHeader<'_>,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.writer.queue_frame(header, payload)
    }

    /// Writes the batch.
    pub async fn flush(&mut self) -> Result<(), HostError> {
        self.writer.flush().await
    }

    /// The next frame, or `None` once the host closed the connection.
    pub async fn recv(&mut self) -> Result<Option<ReceivedFrame>, HostError> {
        self.reader.recv().await
    }

    /// The next frame, read in place by `f` (no copy), or `None` at the end.
    pub async fn recv_with<T>(
        &mut self,
        f: impl FnOnce(&FrameView<'_>) -> T,
    ) -> Result<Option<T>, HostError> {
        self.reader.recv_with(f).await
    }

    /// Independent sending and receiving halves.
    pub fn into_split(self) -> (ClientWriter, ClientReader) {
        (self.writer, self.reader)
    }
}

impl ClientWriter {
    /// The name this client said hello with.
    pub fn name(&self) -> &str {
        self.encoder.name()
    }

    /// The encoder: to prepare frames outside the batch
    /// ([`ClientEncoder::encode_to`]).
    pub fn encoder(&self) -> &ClientEncoder {
        &self.encoder
    }

    /// Encodes a data frame into the batch (sent by [`ClientWriter::flush`]).
    pub fn queue(
        &mut self,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.encoder.queue(dest, port, message_id, payload)
    }

    /// Encodes a data frame to another client, by its hello name, into the
    /// batch ([`ClientEncoder::queue_to_client`]).
    pub fn queue_to_client(
        &mut self,
        client: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.encoder
            .queue_to_client(client, port, message_id, payload)
    }

    /// Queues and flushes one data frame to another client, by its hello
    /// name ([`ClientEncoder::queue_to_client`]).
    pub async fn send_to_client(
        &mut self,
        client: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.queue_to_client(client, port, message_id, payload)?;
        self.flush().await
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

    /// Writes the batch.
    pub async fn flush(&mut self) -> Result<(), HostError> {
        if self.encoder.queued() > 0 {
            self.stream
                .write_all(self.encoder.batch())
                .await
                .map_err(|source| HostError::Send {
                    addr: self.peer.clone(),
                    source,
                })?;
            self.encoder.clear();
        }
        Ok(())
    }

    /// Writes already encoded bytes as they are (after anything queued): a
    /// prepared batch, or bytes a test wants the host to see.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        self.flush().await?;
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| HostError::Send {
                addr: self.peer.clone(),
                source,
            })
    }

    /// Queues and flushes one data frame.
    pub async fn send(
        &mut self,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.queue(dest, port, message_id, payload)?;
        self.flush().await
    }

    /// Queues and flushes one frame with any header.
    pub async fn send_frame(
        &mut self,
        header: &FrameHeader<'_>,
        payload: &[u8],
    ) -> Result<(), HostError> {
        self.queue_frame(header, payload)?;
        self.flush().await
    }

    /// Shuts the write side down (a half-close): the host answers what it
    /// accepted, then closes.
    pub async fn shutdown(&mut self) -> Result<(), HostError> {
        self.flush().await?;
        self.stream
            .shutdown()
            .await
            .map_err(|source| HostError::Send {
                addr: self.peer.clone(),
                source,
            })
    }
}

impl ClientReader {
    /// The next frame, copied, or `None` once the host closed the connection.
    pub async fn recv(&mut self) -> Result<Option<ReceivedFrame>, HostError> {
        self.recv_with(ReceivedFrame::from_view).await
    }

    /// The next frame, read in place by `f`, or `None` at the end.
    pub async fn recv_with<T>(
        &mut self,
        f: impl FnOnce(&FrameView<'_>) -> T,
    ) -> Result<Option<T>, HostError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(f(&frame)));
            }
            let n = self
                .stream
                .read(self.decoder.read_buf())
                .await
                .map_err(|source| HostError::Receive {
                    addr: self.decoder.peer().to_owned(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.commit(n);
        }
    }
}
