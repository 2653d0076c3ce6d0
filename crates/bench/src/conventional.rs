//! Baseline (4): the conventional design the benchmark compares against.
//!
//! A tokio host (epoll; tokio's multi-thread runtime, 2 workers) reads
//! length-prefixed envelopes from its client, **deserialises** each one with
//! serde + bincode 1.x into an owned [`Envelope`], looks its destination up,
//! **serialises** it again and forwards it through a channel to the task
//! that writes the child's Unix socket. The child (its own process)
//! deserialises every envelope again. Replies take the same path back. This
//! is how actor runtimes with serde envelopes route: every hop owns and
//! re-encodes the message.
//!
//! To be fair to it, payload bytes go through `serialize_bytes` /
//! `deserialize_byte_buf` (one memcpy) rather than serde's default
//! element-by-element `Vec<u8>` encoding, which would be far slower.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

use super::Mode;
use crate::procs::SINK_COUNT_PORT;

/// Largest envelope accepted (16 MiB, hostmux's default frame limit).
const MAX_ENVELOPE: usize = 16 << 20;
/// Buffered envelopes between tasks (bounded: backpressure like hostmux).
const CHANNEL_DEPTH: usize = 1024;

/// The conventional message envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) dest: String,
    pub(crate) port: u32,
    pub(crate) sender: String,
    pub(crate) message_id: u64,
    #[serde(with = "bytes")]
    pub(crate) payload: Vec<u8>,
}

/// `Vec<u8>` as one byte string (what `serde_bytes` does).
mod bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// Appends `envelope` as a u32 little-endian length and its bincode bytes.
pub(crate) fn write_envelope(out: &mut Vec<u8>, envelope: &Envelope) -> anyhow::Result<()> {
    let len = bincode::serialized_size(envelope)? as usize;
    out.extend_from_slice(&(len as u32).to_le_bytes());
    bincode::serialize_into(&mut *out, envelope)?;
    Ok(())
}

/// Reads one envelope (blocking); `None` at a clean end of stream.
pub(crate) fn read_envelope(stream: &mut impl Read) -> anyhow::Result<Option<Envelope>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading an envelope length"),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_ENVELOPE {
        bail!("envelope of {len} bytes exceeds the {MAX_ENVELOPE}-byte limit");
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .context("reading an envelope")?;
    Ok(Some(
        bincode::deserialize(&body).context("decoding an envelope")?,
    ))
}

async fn read_envelope_async(
    stream: &mut (impl AsyncReadExt + Unpin),
    body: &mut Vec<u8>,
) -> anyhow::Result<Option<Envelope>> {
    let len = match stream.read_u32_le().await {
        Ok(len) => len as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if len > MAX_ENVELOPE {
        bail!("envelope of {len} bytes exceeds the {MAX_ENVELOPE}-byte limit");
    }
    body.resize(len, 0);
    stream.read_exact(body).await?;
    Ok(Some(bincode::deserialize(body)?))
}

/// Writes serialised envelopes from `rx`, flushing when the channel is empty.
async fn writer_task(
    mut rx: mpsc::Receiver<Vec<u8>>,
    sink: impl AsyncWriteExt + Unpin,
) -> anyhow::Result<()> {
    let mut sink = BufWriter::with_capacity(256 << 10, sink);
    while let Some(bytes) = rx.recv().await {
        sink.write_all(&bytes).await?;
        if rx.is_empty() {
            sink.flush().await?;
        }
    }
    sink.flush().await?;
    Ok(())
}

/// The conventional host: accepts one child on `uds` (named `child_name`),
/// then serves clients on `tcp`, routing envelopes by name. Runs until the
/// child disconnects.
pub(crate) async fn host(
    tcp: tokio::net::TcpListener,
    uds: tokio::net::UnixListener,
    child_name: String,
) -> anyhow::Result<()> {
    let (child, _) = uds
        .accept()
        .await
        .context("waiting for the conventional child")?;
    let (child_read, child_write) = child.into_split();
    let (to_child, child_rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    tokio::spawn(writer_task(child_rx, child_write));

    // Client name -> its writer channel; replies are routed by name.
    let clients: std::sync::Arc<parking_lot_free::Map> = Default::default();
    let routes = clients.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::with_capacity(256 << 10, child_read);
        let mut body = Vec::new();
        while let Ok(Some(envelope)) = read_envelope_async(&mut reader, &mut body).await {
            let Some(tx) = routes.get(&envelope.dest) else {
                continue;
            };
            let mut out = Vec::new();
            if write_envelope(&mut out, &envelope).is_ok() && tx.send(out).await.is_err() {
                routes.remove(&envelope.dest);
            }
        }
    });

    loop {
        let (client, _) = tcp.accept().await?;
        client.set_nodelay(true)?;
        let (client_read, client_write) = client.into_split();
        let (to_client, client_rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
        tokio::spawn(writer_task(client_rx, client_write));
        let to_child = to_child.clone();
        let clients = clients.clone();
        let child_name = child_name.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(256 << 10, client_read);
            let mut body = Vec::new();
            while let Ok(Some(envelope)) = read_envelope_async(&mut reader, &mut body).await {
                clients.insert(envelope.sender.clone(), to_client.clone());
                if envelope.dest != child_name {
                    continue; // no such proc: dropped (the baseline has no notices)
                }
                let mut out = Vec::with_capacity(envelope.payload.len() + 64);
                if write_envelope(&mut out, &envelope).is_err() || to_child.send(out).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// A tiny name -> channel map behind a std mutex (the routing table).
mod parking_lot_free {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    #[derive(Default)]
    pub(crate) struct Map(Mutex<HashMap<String, mpsc::Sender<Vec<u8>>>>);

    impl Map {
        pub(crate) fn get(&self, name: &str) -> Option<mpsc::Sender<Vec<u8>>> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()
        }
        pub(crate) fn insert(&self, name: String, tx: mpsc::Sender<Vec<u8>>) {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name)
                .or_insert(tx);
        }
        pub(crate) fn remove(&self, name: &str) {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
        }
    }
}

/// The conventional child: deserialises every envelope; counts (`oneway`,
/// answering a count request on [`SINK_COUNT_PORT`]) or echoes (`rr`).
pub(crate) fn child(socket: &Path, mode: Mode, name: &str) -> anyhow::Result<ExitCode> {
    let stream = StdUnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to the conventional host at {}",
            socket.display()
        )
    })?;
    let mut reader = std::io::BufReader::with_capacity(256 << 10, stream.try_clone()?);
    let mut writer = std::io::BufWriter::with_capacity(256 << 10, stream);
    let mut count = 0u64;
    let mut out = Vec::new();
    while let Some(envelope) = read_envelope(&mut reader)? {
        let reply = match mode {
            Mode::Oneway if envelope.port == SINK_COUNT_PORT => Some(count.to_le_bytes().to_vec()),
            Mode::Oneway => {
                count += 1;
                None
            }
            Mode::Rr => Some(envelope.payload),
        };
        if let Some(payload) = reply {
            out.clear();
            write_envelope(
                &mut out,
                &Envelope {
                    dest: envelope.sender,
                    port: envelope.port,
                    sender: name.to_owned(),
                    message_id: envelope.message_id,
                    payload,
                },
            )?;
            writer.write_all(&out)?;
            writer.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
