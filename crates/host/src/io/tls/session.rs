//! One connection's TLS session over a runtime's reader and writer.
//!
//! rustls's [`Connection`] is sans-IO: it takes ciphertext in
//! ([`read_tls`](Connection::read_tls)), hands plaintext out
//! ([`reader`](Connection::reader)), takes plaintext in
//! ([`writer`](Connection::writer)) and hands ciphertext out
//! ([`write_tls`](Connection::write_tls)). A [`TlsReader`] and a
//! [`TlsWriter`] share it (`Rc<RefCell<…>>`, on the one I/O thread; no
//! borrow is held across an `.await`) and move the bytes with the runtime's
//! owned-buffer calls, so both frontends speak TLS through one piece of
//! code, and the frame decoder still receives plaintext through
//! [`ConnReader::read_into`].
//!
//! The socket's write half sits in a slot of the shared state whenever no
//! write is under way: the writer takes it for each write, and so does the
//! reader when rustls has something to send while reading (the server's
//! handshake messages, an alert). Whoever takes it puts it back and wakes
//! the other. After each write the writer looks again, so what the reader
//! queued while the writer held the slot goes out too.
//!
//! An accepted connection on a host with TLS starts *undecided*: its first
//! byte says what it is. A TLS record starts with 0x16 (a handshake); a
//! hostmux frame starts with its length, a multiple of 16, whose low byte
//! never is 0x16. A plain connection then reads straight into the decoder
//! as before (one extra one-byte read per connection); a plain one the host
//! refuses (`PlainTcp`) fails its first read with the reason.
//!
//! Memory: each TLS connection holds rustls's buffers plus a
//! [`CIPHER_CHUNK`] read buffer, outside the connection memory budget
//! (bounded per connection; connections are capped). The TLS path
//! allocates per record inside rustls; the plain path is unchanged.

use std::cell::RefCell;
use std::io::{self, Read as _, Write as _};
use std::rc::Rc;

use hostmux_wire::FrameDecoder;
use rustls::pki_types::CertificateDer;
use rustls::Connection;
use tokio::sync::Notify;

use crate::frontend::{ConnReader, ConnWriter, DialFailure, Frontend};

/// Bytes of ciphertext read from the socket at a time: two full TLS
/// records (16 KiB of plaintext each, plus overhead).
pub(super) const CIPHER_CHUNK: usize = 2 * (16 * 1024 + 512);

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the two halves share.
struct Shared<F: Frontend> {
    state: RefCell<State<F>>,
    /// Rung whenever the write half is put back in its slot.
    writer_free: Notify,
}

struct State<F: Frontend> {
    /// `None`: the connection turned out plain.
    tls: Option<Connection>,
    /// The socket's write half, when no write is under way.
    writer: Option<F::Writer>,
}

/// How an accepted connection that has not yet sent a byte is decided.
pub(super) struct Undecided {
    pub(super) server: std::sync::Arc<rustls::ServerConfig>,
    /// `None`: plain TCP is served; otherwise why it is refused.
    pub(super) plain_refused: Option<String>,
}

/// The read half: plaintext out of the session.
pub(crate) struct TlsReader<F: Frontend> {
    inner: F::Reader,
    shared: Option<Rc<Shared<F>>>,
    undecided: Option<Undecided>,
    /// Ciphertext read and not yet given to rustls: `cipher[pos..filled]`.
    cipher: Vec<u8>,
    pos: usize,
    filled: usize,
    eof: bool,
}

/// The write half: plaintext into the session, ciphertext to the socket.
pub(crate) struct TlsWriter<F: Frontend> {
    inner: Option<F::Writer>,
    shared: Option<Rc<Shared<F>>>,
    /// Reused for the ciphertext of each write.
    scratch: Vec<u8>,
}

/// A plain pair: no session, every call goes straight through.
pub(super) fn plain<F: Frontend>(
    reader: F::Reader,
    writer: F::Writer,
) -> (TlsReader<F>, TlsWriter<F>) {
    (
        TlsReader {
            inner: reader,
            shared: None,
            undecided: None,
            cipher: Vec::new(),
            pos: 0,
            filled: 0,
            eof: false,
        },
        TlsWriter {
            inner: Some(writer),
            shared: None,
            scratch: Vec::new(),
        },
    )
}

fn shared_pair<F: Frontend>(
    reader: F::Reader,
    writer: F::Writer,
    tls: Option<Connection>,
    undecided: Option<Undecided>,
) -> (TlsReader<F>, TlsWriter<F>) {
    let shared = Rc::new(Shared {
        state: RefCell::new(State {
            tls,
            writer: Some(writer),
        }),
        writer_free: Notify::new(),
    });
    (
        TlsReader {
            inner: reader,
            shared: Some(shared.clone()),
            undecided,
            cipher: Vec::new(),
            pos: 0,
            filled: 0,
            eof: false,
        },
        TlsWriter {
            inner: None,
            shared: Some(shared),
            scratch: Vec::new(),
        },
    )
}

/// An accepted TCP connection whose first byte decides TLS or plain.
pub(super) fn undecided<F: Frontend>(
    reader: F::Reader,
    writer: F::Writer,
    how: Undecided,
) -> (TlsReader<F>, TlsWriter<F>) {
    shared_pair(reader, writer, None, Some(how))
}

/// Dials' side: a client session over a fresh connection, its handshake
/// done. The peer's certificate must chain to the CA and name
/// `server_name`.
pub(super) async fn client<F: Frontend>(
    reader: F::Reader,
    writer: F::Writer,
    config: std::sync::Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<(TlsReader<F>, TlsWriter<F>), DialFailure> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).map_err(|e| {
        DialFailure::Unreachable(format!("'{server_name}' is not a TLS server name: {e}"))
    })?;
    let session = rustls::ClientConnection::new(config, name)
        .map_err(|e| DialFailure::Unreachable(format!("cannot start a TLS session: {e}")))?;
    let (mut reader, writer) = shared_pair(reader, writer, Some(session.into()), None);
    reader.handshake().await?;
    Ok((reader, writer))
}

/// Whether a read error is the TLS session failing (an alert from the
/// peer, a certificate it or we refused), not the network.
pub(crate) fn is_tls_refusal(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

impl<F: Frontend> Shared<F> {
    /// Writes every TLS byte the session has queued, taking the write half
    /// from its slot (waiting while the other half has it).
    async fn write_pending(&self, mut scratch: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        loop {
            let mut writer = loop {
                if let Some(writer) = self.state.borrow_mut().writer.take() {
                    break writer;
                }
                self.writer_free.notified().await;
            };
            scratch.clear();
            let collected = {
                let mut state = self.state.borrow_mut();
                let mut collected = Ok(());
                if let Some(tls) = state.tls.as_mut() {
                    while tls.wants_write() {
                        if let Err(e) = tls.write_tls(&mut scratch) {
                            collected = Err(e);
                            break;
                        }
                    }
                }
                collected
            };
            let result = match collected {
                Err(e) => Err(e),
                Ok(()) if scratch.is_empty() => {
                    self.put_back(writer);
                    return (Ok(()), scratch);
                }
                Ok(()) => {
                    let (result, back) = writer.write_all(scratch).await;
                    scratch = back;
                    result
                }
            };
            self.put_back(writer);
            if result.is_err() {
                return (result, scratch);
            }
        }
    }

    fn put_back(&self, writer: F::Writer) {
        self.state.borrow_mut().writer = Some(writer);
        self.writer_free.notify_waiters();
    }

    fn is_plain(&self) -> bool {
        self.state.borrow().tls.is_none()
    }
}

/// What one step of the reader found.
enum Step {
    /// Plaintext was handed to the decoder, or the stream ended.
    Done(io::Result<usize>),
    /// The session wants more ciphertext from the socket.
    NeedBytes,
    /// Ciphertext was given to rustls: look for plaintext again.
    Again,
}

impl<F: Frontend> TlsReader<F> {
    /// Reads the first byte of an undecided connection and decides.
    async fn decide(
        &mut self,
        how: Undecided,
        decoder: &mut FrameDecoder,
    ) -> Option<io::Result<usize>> {
        let shared = self
            .shared
            .clone()
            .expect("undecided connections share a session");
        let (read, first) = self.inner.read_raw(vec![0; 1]).await;
        match read {
            Ok(0) => return Some(Ok(0)),
            Err(e) => return Some(Err(e)),
            Ok(_) => {}
        }
        if first[0] != TLS_HANDSHAKE {
            if let Some(why) = how.plain_refused {
                return Some(Err(io::Error::new(io::ErrorKind::PermissionDenied, why)));
            }
            // Plain from here on: reads go straight into the decoder.
            decoder.feed(&first);
            return Some(Ok(1));
        }
        let session = match rustls::ServerConnection::new(how.server) {
            Ok(session) => session,
            Err(e) => return Some(Err(io::Error::other(e))),
        };
        shared.state.borrow_mut().tls = Some(session.into());
        self.cipher = vec![0; CIPHER_CHUNK];
        self.cipher[0] = TLS_HANDSHAKE;
        self.pos = 0;
        self.filled = 1;
        None
    }

    /// One step: plaintext out, or ciphertext in (then any answer rustls
    /// has out: handshake messages, an alert).
    async fn step(&mut self, shared: &Shared<F>, decoder: &mut FrameDecoder) -> Step {
        let mut failure = None;
        let mut fed = false;
        let wants_write = {
            let mut state = shared.state.borrow_mut();
            let Some(tls) = state.tls.as_mut() else {
                unreachable!("step runs on TLS sessions only");
            };
            let spare = decoder.spare_capacity_mut();
            if spare.is_empty() {
                // A poisoned decoder takes nothing (as a plain read would).
                return Step::Done(Ok(0));
            }
            match tls.reader().read(spare) {
                Ok(n) => {
                    // 0: the peer's close_notify, a clean end of stream.
                    decoder.commit(n);
                    return Step::Done(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without close_notify: frames are
                // self-delimiting (the decoder tells a cut frame), so this
                // is an end of stream like a plain one.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Step::Done(Ok(0)),
                Err(e) => return Step::Done(Err(e)),
            }
            if self.pos < self.filled {
                let mut rest = &self.cipher[self.pos..self.filled];
                match tls.read_tls(&mut rest) {
                    Ok(n) => self.pos += n,
                    Err(e) => return Step::Done(Err(e)),
                }
                fed = true;
                if let Err(e) = tls.process_new_packets() {
                    failure = Some(e);
                }
            } else if self.eof {
                return Step::Done(Ok(0));
            }
            tls.wants_write()
        };
        if wants_write {
            // Handshake messages and alerts only: rare, a fresh buffer.
            let (written, _) = shared.write_pending(Vec::new()).await;
            if let Err(e) = written {
                if failure.is_none() {
                    return Step::Done(Err(e));
                }
            }
        }
        if let Some(e) = failure {
            return Step::Done(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        // What was fed may have been plaintext: look before reading more.
        if fed {
            Step::Again
        } else {
            Step::NeedBytes
        }
    }

    /// Reads the next ciphertext chunk from the socket.
    async fn fill(&mut self, shared: &Shared<F>) -> io::Result<()> {
        if self.cipher.len() < CIPHER_CHUNK {
            self.cipher = vec![0; CIPHER_CHUNK];
        }
        let buf = std::mem::take(&mut self.cipher);
        let (read, buf) = self.inner.read_raw(buf).await;
        self.cipher = buf;
        self.pos = 0;
        match read? {
            0 => {
                self.filled = 0;
                self.eof = true;
                let mut state = shared.state.borrow_mut();
                if let Some(tls) = state.tls.as_mut() {
                    // An empty read tells rustls the stream ended.
                    let _ = tls.read_tls(&mut &[][..]);
                }
            }
            n => self.filled = n,
        }
        Ok(())
    }

    /// Drives a client session's handshake to its end.
    async fn handshake(&mut self) -> Result<(), DialFailure> {
        let shared = self.shared.clone().expect("a client session");
        loop {
            let handshaking = {
                let state = shared.state.borrow();
                state.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
            };
            let (written, _) = shared.write_pending(Vec::new()).await;
            written.map_err(|e| DialFailure::Unreachable(format!("TLS handshake: {e}")))?;
            if !handshaking {
                return Ok(());
            }
            if self.pos == self.filled {
                if self.eof {
                    return Err(DialFailure::Refused(
                        "closed the connection during the TLS handshake (does it serve TLS?)"
                            .to_owned(),
                    ));
                }
                self.fill(&shared)
                    .await
                    .map_err(|e| DialFailure::Unreachable(format!("TLS handshake: {e}")))?;
                continue;
            }
            let failure = {
                let mut state = shared.state.borrow_mut();
                let tls = state.tls.as_mut().expect("a client session");
                let mut rest = &self.cipher[self.pos..self.filled];
                match tls.read_tls(&mut rest) {
                    Ok(n) => {
                        self.pos += n;
                        tls.process_new_packets().err()
                    }
                    Err(e) => {
                        return Err(DialFailure::Refused(format!("TLS handshake: {e}")));
                    }
                }
            };
            if let Some(e) = failure {
                // Tell the peer why (the alert rustls queued), then give up.
                let _ = shared.write_pending(Vec::new()).await;
                return Err(DialFailure::Refused(format!("TLS handshake failed: {e}")));
            }
        }
    }
}

impl<F: Frontend> TlsReader<F> {
    /// Decided plain, or on a host without TLS: reads go straight to the
    /// runtime's socket.
    fn is_plain(&self) -> bool {
        match &self.shared {
            None => true,
            Some(shared) => self.undecided.is_none() && shared.is_plain(),
        }
    }
}

impl<F: Frontend> ConnReader for TlsReader<F> {
    type Chunk = <F::Reader as ConnReader>::Chunk;

    /// Plain connections only, as [`reads_direct`](Self::reads_direct):
    /// a session's plaintext comes out of rustls.
    fn lends_chunks(&self) -> bool {
        self.is_plain() && self.inner.lends_chunks()
    }

    async fn next_chunk(&mut self) -> io::Result<crate::frontend::Next<Self::Chunk>> {
        if !self.is_plain() {
            return Ok(crate::frontend::Next::Read);
        }
        self.inner.next_chunk().await
    }

    fn keep(&mut self, chunk: Self::Chunk, used: usize) {
        self.inner.keep(chunk, used);
    }

    fn pause(&mut self) {
        self.inner.pause();
    }

    async fn read_into(&mut self, mut decoder: FrameDecoder) -> (io::Result<usize>, FrameDecoder) {
        let Some(shared) = self.shared.clone() else {
            return self.inner.read_into(decoder).await;
        };
        if let Some(how) = self.undecided.take() {
            if let Some(result) = self.decide(how, &mut decoder).await {
                return (result, decoder);
            }
        }
        if shared.is_plain() {
            return self.inner.read_into(decoder).await;
        }
        loop {
            match self.step(&shared, &mut decoder).await {
                Step::Done(result) => return (result, decoder),
                Step::Again => {}
                Step::NeedBytes => {
                    if let Err(e) = self.fill(&shared).await {
                        return (Err(e), decoder);
                    }
                }
            }
        }
    }

    fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Plain connections only (decided plain, or on a host without TLS): a
    /// session's plaintext comes out of rustls, so its large frames take
    /// the copied path.
    fn reads_direct(&self) -> bool {
        self.is_plain() && self.inner.reads_direct()
    }

    async fn read_direct(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.reads_direct() {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        self.inner.read_direct(buf).await
    }

    async fn read_raw(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // Raw reads below a session would steal its records.
        debug_assert!(self.shared.is_none(), "raw read on a TLS session");
        self.inner.read_raw(buf).await
    }

    fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        let shared = self.shared.as_ref()?;
        let state = shared.state.borrow();
        let certificate = state.tls.as_ref()?.peer_certificates()?.first()?;
        Some(certificate.clone().into_owned())
    }
}

impl<F: Frontend> ConnWriter for TlsWriter<F> {
    async fn close(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let closing = match shared.state.borrow_mut().tls.as_mut() {
            Some(tls) => {
                tls.send_close_notify();
                true
            }
            None => false,
        };
        if closing {
            let (_, scratch) = shared
                .write_pending(std::mem::take(&mut self.scratch))
                .await;
            self.scratch = scratch;
        }
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        if let Some(inner) = self.inner.as_mut() {
            return inner.write_all(buf).await;
        }
        let shared = self
            .shared
            .clone()
            .expect("a writer has a socket or a session");
        if shared.is_plain() {
            let mut writer = loop {
                if let Some(writer) = shared.state.borrow_mut().writer.take() {
                    break writer;
                }
                shared.writer_free.notified().await;
            };
            let (result, buf) = writer.write_all(buf).await;
            shared.put_back(writer);
            return (result, buf);
        }
        let mut offset = 0;
        loop {
            let taken = {
                let mut state = shared.state.borrow_mut();
                let tls = state.tls.as_mut().expect("a TLS session");
                if offset < buf.len() {
                    tls.writer().write(&buf[offset..])
                } else {
                    Ok(0)
                }
            };
            let taken = match taken {
                Ok(n) => n,
                Err(e) => return (Err(e), buf),
            };
            offset += taken;
            let (written, scratch) = shared
                .write_pending(std::mem::take(&mut self.scratch))
                .await;
            self.scratch = scratch;
            if let Err(e) = written {
                return (Err(e), buf);
            }
            if offset >= buf.len() {
                return (Ok(()), buf);
            }
            if taken == 0 {
                // Nothing taken and nothing left to send: the session can
                // take no data (it is closing).
                let e = io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the TLS session took no more bytes",
                );
                return (Err(e), buf);
            }
        }
    }
}
