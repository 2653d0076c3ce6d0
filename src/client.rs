//! A small blocking data client for a host's frontend: connect, say hello,
//! send frames, read frames. Used by `send`, the demo and the benchmark's
//! load generator.
//!
//! Writes are buffered by the caller's choice: [`DataClient::queue`] encodes
//! into an outgoing buffer and [`DataClient::flush`] writes it in one call,
//! so a load generator pays one `write` per batch, not per frame.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hostmux_host::{encode_hello, is_hello_ack};
use hostmux_wire::{
    encode_frame_to_vec, AddrKind, FrameDecoder, FrameHeader, FrameKind, FrameView, Limits, Sender,
    Undeliverable,
};

use crate::cli::CliError;

/// A connected, greeted client.
pub(crate) struct DataClient {
    stream: Stream,
    name: String,
    limits: Limits,
    decoder: FrameDecoder,
    out: Vec<u8>,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn as_read(&mut self) -> &mut dyn Read {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
    fn as_write(&mut self) -> &mut dyn Write {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
        }
    }
}

/// What a received frame was, copied out of the decoder.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A data frame's payload.
    Data { payload: Vec<u8> },
    /// The host could not deliver a frame, for this reason.
    Undeliverable { reason: String },
}

impl DataClient {
    /// Connects to the frontend at `addr` (its text form), says hello as
    /// `name` with `token` and waits up to `timeout` for the ack.
    pub(crate) fn connect(
        addr: &str,
        name: &str,
        token: &[u8],
        service_name: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let parsed: hostmux_wire::Addr = addr.parse().map_err(|e| {
            CliError::usage(format!(
                "frontend address {addr:?} is not valid ({e}); use tcp:HOST:PORT or unix:/PATH"
            ))
        })?;
        let unreachable = |e: std::io::Error| {
            CliError::unreachable(format!(
                "cannot connect to the host's frontend at {addr} ({e}); is `hostmux serve` running there?"
            ))
        };
        let stream = match parsed.kind() {
            AddrKind::Tcp { host, port } => {
                let stream = TcpStream::connect((host, port)).map_err(unreachable)?;
                stream.set_nodelay(true).context("setting TCP_NODELAY")?;
                Stream::Tcp(stream)
            }
            AddrKind::UnixPath(path) => Stream::Unix(UnixStream::connect(path).map_err(unreachable)?),
            AddrKind::UnixAbstract(_) => {
                return Err(CliError::usage(format!(
                    "frontend address {addr}: abstract Unix sockets are not supported by this client; use a path"
                ))
                .into())
            }
        };
        let limits = Limits::default();
        let mut client = Self {
            stream,
            name: name.to_owned(),
            limits,
            decoder: FrameDecoder::new(limits),
            out: Vec::with_capacity(1 << 16),
        };
        let mut hello = vec![0u8; 1024 + token.len()];
        let len = encode_hello(&mut hello, service_name, name, token, &limits)
            .context("encoding the hello")?;
        client
            .stream
            .as_write()
            .write_all(&hello[..len])
            .map_err(unreachable)?;
        client.stream.set_read_timeout(Some(timeout))?;
        let acked = client.next_frame_with(|frame| is_hello_ack(&frame))?;
        if !acked.unwrap_or(false) {
            return Err(CliError::refused(format!(
                "the host at {addr} did not accept the hello of client {name:?}: wrong or missing token, or the name is taken; pass the host's token (--token-file) or another --client-name"
            ))
            .into());
        }
        client.stream.set_read_timeout(None)?;
        Ok(client)
    }

    /// Encodes a data frame to `dest` into the outgoing buffer.
    pub(crate) fn queue(
        &mut self,
        dest: &str,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let header = FrameHeader {
            dest_port: port,
            sender: Sender::Client { name: &self.name },
            ..FrameHeader::data(dest, message_id)
        };
        encode_frame_to_vec(&mut self.out, &header, payload, &self.limits)
            .with_context(|| format!("encoding a frame for {dest:?}"))?;
        Ok(())
    }

    /// Writes already-encoded frames (a load generator's prepared batch).
    pub(crate) fn write_raw(&mut self, frames: &[u8]) -> anyhow::Result<()> {
        self.flush()?;
        self.stream
            .as_write()
            .write_all(frames)
            .context("writing to the frontend (the host closed the connection?)")
    }

    /// Bytes queued and not yet flushed.
    pub(crate) fn queued_len(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued.
    pub(crate) fn flush(&mut self) -> anyhow::Result<()> {
        self.stream
            .as_write()
            .write_all(&self.out)
            .context("writing to the frontend (the host closed the connection?)")?;
        self.out.clear();
        Ok(())
    }

    /// Sets how long [`recv`](Self::recv) waits; `None` waits forever.
    pub(crate) fn set_timeout(&mut self, timeout: Option<Duration>) -> anyhow::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        Ok(())
    }

    /// The next frame, copied out. `Ok(None)` if the host closed the
    /// connection. A read timeout is an error naming the wait.
    pub(crate) fn recv(&mut self) -> anyhow::Result<Option<Reply>> {
        self.next_frame_with(|frame| match frame.kind() {
            FrameKind::Undeliverable => Reply::Undeliverable {
                reason: Undeliverable::decode(frame.payload())
                    .map(|u| format!("{:?}", u.reason))
                    .unwrap_or_else(|e| format!("undecodable notice: {e}")),
            },
            _ => Reply::Data {
                payload: frame.payload().to_vec(),
            },
        })
    }

    /// Reads frames until one is whole and hands it to `f` (no copy); the
    /// load generator counts replies this way.
    pub(crate) fn next_frame_with<T>(
        &mut self,
        f: impl FnOnce(FrameView<'_>) -> T,
    ) -> anyhow::Result<Option<T>> {
        loop {
            // Two-step borrow: learn whether a frame is whole first.
            let whole = match self.decoder.pending_frame_len() {
                Some(len) => self.decoder.buffered_len() >= len,
                None => false,
            };
            if whole {
                let frame = self
                    .decoder
                    .next_frame()
                    .context("the host sent a malformed frame")?
                    .context("decoder had no frame")?;
                return Ok(Some(f(frame)));
            }
            let spare = self.decoder.spare_capacity_mut();
            let n = match self.stream.as_read().read(spare) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    bail!("timed out waiting for the host's answer")
                }
                Err(e) => return Err(e).context("reading from the frontend"),
            };
            if n == 0 {
                return Ok(None);
            }
            self.decoder.commit(n);
        }
    }
}
