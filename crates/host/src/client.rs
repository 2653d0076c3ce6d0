//! Clients of a host (tokio): [`Client`] for the data plane (connect, hello,
//! send and receive frames) and [`ControlClient`] for the control plane
//! (spawn, terminate, kill, list, stats, terminate-all).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hostmux_wire::{
    encode_frame_to_vec, Addr, AddrKind, ControlRequest, ControlResponse, FrameDecoder,
    FrameHeader, FrameKind, FrameView, Limits, ProcInfo, Sender, SpawnRequest, TerminateSummary,
    Undeliverable,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::HostError;
use hostmux_wire::{encode_hello, is_hello_ack};

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// A frame received by a [`Client`], copied out of its stream buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// The frame kind (data, undeliverable, control response, ...).
    pub kind: FrameKind,
    /// The message id (a reply carries the request's).
    pub message_id: u64,
    /// The port it was sent to.
    pub port: u32,
    /// The sender's name ("" for anonymous).
    pub sender: String,
    /// The sender's address ("" for this host).
    pub sender_addr: String,
    /// The payload.
    pub payload: Vec<u8>,
}

impl ReceivedFrame {
    fn from_view(view: &FrameView<'_>) -> Self {
        let (sender, sender_addr) = match view.sender() {
            Sender::Anonymous => (String::new(), String::new()),
            Sender::Client { name } => (name.to_owned(), String::new()),
            Sender::Proc { name, addr } => (name.to_owned(), addr.to_owned()),
        };
        Self {
            kind: view.kind(),
            message_id: view.message_id(),
            port: view.dest_port(),
            sender,
            sender_addr,
            payload: view.payload().to_vec(),
        }
    }

    /// The notice, if this is an `Undeliverable` frame.
    pub fn undeliverable(&self) -> Option<Undeliverable> {
        if self.kind != FrameKind::Undeliverable {
            return None;
        }
        let mut aligned = hostmux_wire::rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&self.payload);
        Undeliverable::decode(&aligned).ok()
    }
}

/// The sending half of a [`Client`]: encodes frames into a buffer and
/// writes them out. [`ClientWriter::queue`] batches; [`ClientWriter::flush`]
/// writes the batch in one call.
pub struct ClientWriter {
    name: String,
    limits: Limits,
    stream: BoxWrite,
    buf: Vec<u8>,
}

/// The receiving half of a [`Client`].
pub struct ClientReader {
    stream: BoxRead,
    decoder: FrameDecoder,
    chunk: Vec<u8>,
}

/// A data-plane client: connects to a host's frontend (TCP or Unix), says
/// hello under its name (with the host's token if it has one), then sends
/// and receives frames. [`Client::into_split`] gives independent halves for
/// a load generator that sends and receives at once.
pub struct Client {
    writer: ClientWriter,
    reader: ClientReader,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.writer.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientWriter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReader").finish_non_exhaustive()
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
        let connect_error = |reason: String| HostError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| connect_error(e.to_string()))?;
        let (r, w) = stream.into_split();
        Self::hello(addr, Box::new(r), Box::new(w), name, token, service_name).await
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
        let stream =
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| HostError::Connect {
                    addr: shown.clone(),
                    reason: e.to_string(),
                })?;
        let (r, w) = stream.into_split();
        Self::hello(&shown, Box::new(r), Box::new(w), name, token, service_name).await
    }

    /// Connects to a host's frontend address (`tcp:…`, `unix:/path`).
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
            AddrKind::UnixAbstract(_) => Err(HostError::Connect {
                addr: addr.to_string(),
                reason: "abstract Unix addresses are not supported by this client".to_owned(),
            }),
        }
    }

    async fn hello(
        addr: &str,
        reader: BoxRead,
        writer: BoxWrite,
        name: &str,
        token: Option<&str>,
        service_name: &str,
    ) -> Result<Client, HostError> {
        let limits = Limits::default();
        let mut client = Client {
            writer: ClientWriter {
                name: name.to_owned(),
                limits,
                stream: writer,
                buf: Vec::with_capacity(64 * 1024),
            },
            reader: ClientReader {
                stream: reader,
                decoder: FrameDecoder::new(limits),
                chunk: vec![0; 64 * 1024],
            },
        };
        let mut hello = vec![0; 1024 + token.map_or(0, str::len)];
        let len = encode_hello(
            &mut hello,
            service_name,
            name,
            token.unwrap_or("").as_bytes(),
            &limits,
        )?;
        client
            .writer
            .stream
            .write_all(&hello[..len])
            .await
            .map_err(HostError::Io)?;
        let acked = client.reader.recv_with(is_hello_ack).await?;
        match acked {
            Some(true) => Ok(client),
            Some(false) => Err(HostError::Connect {
                addr: addr.to_owned(),
                reason: "the host answered the hello with something else".to_owned(),
            }),
            None => Err(HostError::Connect {
                addr: addr.to_owned(),
                reason: "the host closed the connection instead of acknowledging the hello (wrong token, taken name, or a peer it refuses)".to_owned(),
            }),
        }
    }

    /// The name this client said hello with.
    pub fn name(&self) -> &str {
        &self.writer.name
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
    /// Encodes a data frame into the batch (sent by [`ClientWriter::flush`]).
    pub fn queue(
        &mut self,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> Result<(), HostError> {
        let header = FrameHeader {
            dest_port: port,
            sender: Sender::Client { name: &self.name },
            ..FrameHeader::data(dest, message_id)
        };
        encode_frame_to_vec(&mut self.buf, &header, payload, &self.limits)?;
        Ok(())
    }

    /// Encodes a frame with any header into the batch.
    pub fn queue_frame(
        &mut self,
        header: &FrameHeader<'_>,
        payload: &[u8],
    ) -> Result<(), HostError> {
        encode_frame_to_vec(&mut self.buf, header, payload, &self.limits)?;
        Ok(())
    }

    /// Bytes queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Writes the batch.
    pub async fn flush(&mut self) -> Result<(), HostError> {
        if !self.buf.is_empty() {
            self.stream
                .write_all(&self.buf)
                .await
                .map_err(HostError::Io)?;
            self.buf.clear();
        }
        Ok(())
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
                .read(&mut self.chunk)
                .await
                .map_err(HostError::Io)?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.feed(&self.chunk[..n]);
        }
    }
}

/// A control-plane client: a [`Client`] connected through the host's
/// control socket (peer credentials checked) or its TCP frontend with the
/// host's token, sending `ControlRequest` frames to the service proc.
#[derive(Debug)]
pub struct ControlClient {
    client: Client,
    service_name: String,
    next_id: u64,
}

fn control_client_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "ctl-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl ControlClient {
    /// Connects to the control socket at `path` (service proc `service`).
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Self, HostError> {
        Self::connect_unix_with(path, "service").await
    }

    /// [`ControlClient::connect_unix`] for a host whose service proc has
    /// another name.
    pub async fn connect_unix_with(
        path: impl AsRef<Path>,
        service_name: &str,
    ) -> Result<Self, HostError> {
        let client = Client::connect_unix(path, &control_client_name(), None, service_name).await?;
        Ok(Self::over(client, service_name))
    }

    /// Connects to a TCP frontend (`host:port`) presenting `token`.
    pub async fn connect_tcp(addr: &str, token: &str) -> Result<Self, HostError> {
        Self::connect_tcp_with(addr, token, "service").await
    }

    /// [`ControlClient::connect_tcp`] for another service proc name.
    pub async fn connect_tcp_with(
        addr: &str,
        token: &str,
        service_name: &str,
    ) -> Result<Self, HostError> {
        let client =
            Client::connect_tcp(addr, &control_client_name(), Some(token), service_name).await?;
        Ok(Self::over(client, service_name))
    }

    /// Uses an already connected client (its privilege decides the answers).
    pub fn over(client: Client, service_name: &str) -> Self {
        Self {
            client,
            service_name: service_name.to_owned(),
            next_id: 0,
        }
    }

    /// Sends one request and waits for its response (frames that are not
    /// the response are skipped). An `Error` response is returned as is;
    /// the typed methods turn it into [`HostError::Control`].
    pub async fn request(
        &mut self,
        request: &ControlRequest,
    ) -> Result<ControlResponse, HostError> {
        self.next_id += 1;
        let id = self.next_id;
        let payload = request.to_bytes()?;
        let header = FrameHeader {
            kind: FrameKind::ControlRequest,
            sender: Sender::Client {
                name: &self.client.writer.name,
            },
            ..FrameHeader::data(&self.service_name, id)
        };
        let mut bytes = Vec::new();
        encode_frame_to_vec(&mut bytes, &header, &payload, &Limits::default())?;
        self.client
            .writer
            .stream
            .write_all(&bytes)
            .await
            .map_err(HostError::Io)?;
        loop {
            let Some(frame) = self.client.recv().await? else {
                return Err(HostError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the host closed the connection before answering",
                )));
            };
            if frame.message_id != id {
                continue;
            }
            match frame.kind {
                FrameKind::ControlResponse => {
                    return Ok(ControlResponse::decode(&frame.payload)?);
                }
                FrameKind::Undeliverable => {
                    let reason = frame.undeliverable().map(|u| u.reason);
                    return Err(HostError::Unexpected(format!(
                        "the request came back undeliverable ({reason:?})"
                    )));
                }
                _ => continue,
            }
        }
    }

    /// Spawns a proc and waits for it to be ready; returns its pid.
    pub async fn spawn(&mut self, request: SpawnRequest) -> Result<u32, HostError> {
        match self.request(&ControlRequest::Spawn(request)).await? {
            ControlResponse::Spawned { pid, .. } => Ok(pid),
            other => Err(unexpected(other)),
        }
    }

    /// Terminates a proc (polite stop, SIGTERM, SIGKILL after `timeout_ms`).
    pub async fn terminate(
        &mut self,
        name: &str,
        timeout_ms: u64,
    ) -> Result<hostmux_wire::ProcState, HostError> {
        let request = ControlRequest::Terminate {
            name: name.to_owned(),
            timeout_ms,
        };
        match self.request(&request).await? {
            ControlResponse::Stopped { state, .. } => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// Kills a proc now.
    pub async fn kill(&mut self, name: &str) -> Result<hostmux_wire::ProcState, HostError> {
        let request = ControlRequest::Kill {
            name: name.to_owned(),
        };
        match self.request(&request).await? {
            ControlResponse::Stopped { state, .. } => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// Live procs and recently gone ones.
    pub async fn list(&mut self) -> Result<Vec<ProcInfo>, HostError> {
        match self.request(&ControlRequest::List).await? {
            ControlResponse::Procs(procs) => Ok(procs),
            other => Err(unexpected(other)),
        }
    }

    /// Counters of one proc, or of all.
    pub async fn stats(&mut self, name: Option<&str>) -> Result<Vec<ProcInfo>, HostError> {
        let request = ControlRequest::Stats {
            name: name.map(str::to_owned),
        };
        match self.request(&request).await? {
            ControlResponse::Procs(procs) => Ok(procs),
            other => Err(unexpected(other)),
        }
    }

    /// Terminates every proc, a bounded number at a time, each with
    /// `timeout_ms` of grace before SIGKILL
    /// ([`Host::terminate_children`](crate::Host::terminate_children)).
    pub async fn terminate_all(&mut self, timeout_ms: u64) -> Result<TerminateSummary, HostError> {
        match self
            .request(&ControlRequest::TerminateAll { timeout_ms })
            .await?
        {
            ControlResponse::TerminatedAll(summary) => Ok(summary),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(response: ControlResponse) -> HostError {
    match response {
        ControlResponse::Error { kind, message } => HostError::Control { kind, message },
        other => HostError::Unexpected(format!("{other:?}")),
    }
}
