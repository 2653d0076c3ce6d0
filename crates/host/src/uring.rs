//! The io_uring frontend (tokio-uring 0.5).
//!
//! Reads go straight into the frame decoder's aligned buffer: the decoder
//! is moved into the read operation inside [`DecoderBuf`] (io_uring owns the
//! buffer while the kernel may write it; its `unsafe` impls live in
//! [`crate::sys`]) and comes back with the byte count,
//! so the only copy between the socket and a proc's ring is the one into the
//! ring. Writes hand over the connection's owned reply buffer.
//!
//! tokio-uring submits the operations its tasks queue only when the
//! runtime parks (its `on_thread_park` hook), never when one is created,
//! and the I/O loop's spin-then-sleep poll never parks. So writes (and
//! dials) are counted ([`Frontend::queued_writes`]) and the loop lets the
//! runtime park as soon as one is queued; without that, every reply
//! waited for the end of the spin and the one-at-a-time round trip
//! doubled (docs/benchmarks.md, issue 7). Reads are not counted: a read
//! waits for a peer anyway, and the next park (at most one spin away)
//! submits it. The ring is built with `IORING_SETUP_COOP_TASKRUN`, so a
//! completion for this thread while it spins is reaped at its next system
//! call instead of interrupting it (a sleeping thread is still woken).
//!
//! A socket with a backlog is read on the spot. Each ring read costs a
//! whole runtime cycle: queue, park (which submits; the kernel reads at
//! once), `epoll_wait` on the ring's fd, reap, wake the reader: about two
//! system calls and 5-10 µs of runtime work per read, where epoll's reader
//! makes one `recv`. So a read that filled all the room it had marks the
//! socket as backlogged, and the next read is one `recv(MSG_DONTWAIT)`
//! into the decoder (then a cooperative-budget check, as tokio's own reads
//! make, so a flood cannot hold the thread); a short read or `EAGAIN` ends
//! the backlog and the read after it waits in the ring as before. Under a
//! one-way flood of 64 B frames that takes the ring out of the read path:
//! about 4 system calls per 1000 frames became 2 (epoll's count), and the
//! I/O thread's CPU per frame went to 0.82-0.90x (docs/benchmarks.md,
//! "Issue 15: the io_uring frontend at 64 B"). Request-response traffic,
//! whose reads come up short, still reads through the ring. One guard:
//! what the thread's tasks queue (a reply write, a dial, another
//! connection's read) reaches the kernel only at a park, and a reader that
//! never waits keeps the runtime from parking; so every operation queued
//! is counted, each completion vouches for every operation queued before
//! it (the queue is submitted in order), and while one may still wait
//! for submission, a backlogged reader reads through the ring too, which
//! lets the runtime park and submit.
//!
//! tokio-uring is effectively unmaintained (its issues #281 and #336); the
//! seam is [`crate::frontend::Frontend`], so this module is what moves to the
//! `io-uring` crate or to monoio (same owned-buffer shape) later.

use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use tokio::io::unix::AsyncFd;

use hostmux_wire::FrameDecoder;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpListener, TcpStream, UnixStream};

use crate::frontend::{ConnReader, ConnWriter, Frontend, StdListener};
use crate::sys::DecoderBuf;

/// The io_uring frontend.
pub(crate) struct Uring;

thread_local! {
    /// Writes and dials this thread has queued on tokio-uring's submission
    /// queue so far (wrapping); the kernel sees each at the next park.
    static QUEUED_WRITES: Cell<u64> = const { Cell::new(0) };
    /// Operations of every kind (reads, writes, dials, accepts) this
    /// thread has queued on its ring so far.
    static QUEUED_OPS: Cell<u64> = const { Cell::new(0) };
    /// A count of [`QUEUED_OPS`] the kernel is known to have been handed:
    /// the operation queued at that count completed, and tokio-uring
    /// submits its queue in order, so every earlier one was submitted too.
    static SUBMITTED_OPS: Cell<u64> = const { Cell::new(0) };
}

/// Counts one write (or dial) about to be queued on this thread's ring.
fn note_write() {
    QUEUED_WRITES.with(|queued| queued.set(queued.get().wrapping_add(1)));
}

/// Counts one operation about to be queued on this thread's ring; returns
/// its place in the count, for [`note_submitted`] once it completes.
fn note_op() -> u64 {
    QUEUED_OPS.with(|queued| {
        let at = queued.get() + 1;
        queued.set(at);
        at
    })
}

/// The operation counted `at` by [`note_op`] completed: it, and everything
/// queued before it, reached the kernel.
fn note_submitted(at: u64) {
    SUBMITTED_OPS.with(|submitted| submitted.set(submitted.get().max(at)));
}

/// True if nothing this thread queued may still wait in the submission
/// queue for the runtime to park.
fn nothing_unsubmitted() -> bool {
    QUEUED_OPS.with(Cell::get) == SUBMITTED_OPS.with(Cell::get)
}

/// Whether this kernel (and its seccomp policy) lets us build an io_uring.
pub(crate) fn available() -> bool {
    tokio_uring::Runtime::new(&tokio_uring::builder()).is_ok()
}

/// Builds the I/O thread's tokio-uring runtime: a ring with cooperative
/// task running (Linux 5.19+), or a plain one where the kernel refuses it.
pub(crate) fn runtime() -> io::Result<tokio_uring::Runtime> {
    let mut ring = tokio_uring::uring_builder();
    ring.setup_coop_taskrun();
    let mut builder = tokio_uring::builder();
    builder.uring_builder(&ring);
    tokio_uring::Runtime::new(&builder).or_else(|e| {
        tracing::debug!(error = %e, "io_uring without cooperative task running");
        tokio_uring::Runtime::new(&tokio_uring::builder())
    })
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

/// A connection's read side: its stream, and (once a large frame is read
/// straight into a ring) a duplicate of its socket registered with tokio's
/// reactor for readability.
///
/// Reads into ring memory ([`ConnReader::read_direct`]) are not io_uring
/// operations: tokio-uring cannot cancel a read, and a read it holds keeps
/// its buffer until the peer sends, so a ring reservation lent to one
/// would stay held (and the ring blocked) for as long as a stalled client
/// likes. Waiting for readability and then reading without blocking
/// (`recv(MSG_DONTWAIT)`) leaves nothing in flight when the deadline
/// drops the wait.
pub(crate) struct Reader {
    /// Declared first: deregistered before the stream can close.
    direct: Option<AsyncFd<OwnedFd>>,
    stream: Stream,
    /// The last read filled all the room it had: the socket probably holds
    /// more, so the next read tries `recv` on the spot first.
    backlog: bool,
}

impl Reader {
    fn new(stream: Stream) -> Self {
        Reader {
            direct: None,
            stream,
            backlog: false,
        }
    }

    /// One `recv(MSG_DONTWAIT)` into the decoder's spare room, while the
    /// socket has a backlog and nothing queued on this thread's ring waits
    /// for a park; `None` if the read must go through the ring instead.
    async fn read_backlog(&mut self, decoder: &mut FrameDecoder) -> Option<io::Result<usize>> {
        if !self.backlog || !nothing_unsubmitted() {
            return None;
        }
        let stream = &self.stream;
        crate::frontend::read_backlog(decoder, &mut self.backlog, |spare| match stream {
            Stream::Tcp(s) => crate::sys::recv_now(&**s, spare),
            Stream::Unix(s) => crate::sys::recv_now(&**s, spare),
        })
        .await
    }
}

impl ConnReader for Reader {
    type Chunk = crate::frontend::NoChunk;

    fn reads_direct(&self) -> bool {
        true
    }

    async fn read_direct(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stream = &self.stream;
        let socket = || match stream {
            Stream::Tcp(s) => crate::sys::duplicate_socket(&**s),
            Stream::Unix(s) => crate::sys::duplicate_socket(&**s),
        };
        crate::frontend::read_when_readable(&mut self.direct, socket, buf).await
    }

    async fn read_into(&mut self, mut decoder: FrameDecoder) -> (io::Result<usize>, FrameDecoder) {
        if let Some(result) = self.read_backlog(&mut decoder).await {
            return (result, decoder);
        }
        let buf = DecoderBuf::new(decoder);
        let room = tokio_uring::buf::IoBuf::bytes_total(&buf);
        let at = note_op();
        let (result, buf) = match &self.stream {
            Stream::Tcp(s) => s.read(buf).await,
            Stream::Unix(s) => s.read(buf).await,
        };
        note_submitted(at);
        self.backlog = matches!(result, Ok(n) if n == room);
        (result, buf.into_decoder())
    }

    async fn read_raw(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // Bounded by the length, not the capacity: the buffer's length
        // says how much to read, and stays what it was.
        let len = buf.len();
        let at = note_op();
        let (result, slice) = match &self.stream {
            Stream::Tcp(s) => s.read(buf.slice(..len)).await,
            Stream::Unix(s) => s.read(buf.slice(..len)).await,
        };
        note_submitted(at);
        (result, slice.into_inner())
    }

    fn shutdown(&self) {
        // The read side only: a pending read ends at once, and what the
        // writer still has queued (an error notice) may go out.
        let how = std::net::Shutdown::Read;
        let _ = match &self.stream {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        };
    }
}

impl ConnWriter for Stream {
    /// tokio-uring's own `write_all` loop, with each write counted.
    async fn write_all(&mut self, mut buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut written = 0;
        while written < buf.len() {
            note_write();
            let at = note_op();
            let (result, slice) = match self {
                Stream::Tcp(s) => s.write(buf.slice(written..)).submit().await,
                Stream::Unix(s) => s.write(buf.slice(written..)).submit().await,
            };
            note_submitted(at);
            buf = slice.into_inner();
            if let Some(e) = crate::frontend::write_step(result, &mut written) {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }
}

impl Frontend for Uring {
    type Listener = Listener;
    type Reader = Reader;
    type Writer = Stream;
    const NAME: &'static str = "io_uring";

    fn listener(listener: StdListener) -> io::Result<Listener> {
        Ok(match listener {
            StdListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)),
            StdListener::Unix(l) => Listener::Unix(tokio::net::UnixListener::from_std(l)?),
        })
    }

    fn adopt_unix(stream: std::os::unix::net::UnixStream) -> io::Result<(Reader, Stream)> {
        let stream = Stream::Unix(Rc::new(UnixStream::from_std(stream)));
        Ok((Reader::new(stream.clone()), stream))
    }

    fn adopt(
        accepted: crate::io::Accepted,
        _tls: Option<&crate::TlsConfig>,
    ) -> io::Result<(Reader, Stream)> {
        let stream = match accepted {
            crate::io::Accepted::Tcp(stream, _) => {
                stream.set_nodelay(true)?;
                Stream::Tcp(Rc::new(TcpStream::from_std(stream)))
            }
            crate::io::Accepted::Unix(stream) => {
                Stream::Unix(Rc::new(UnixStream::from_std(stream)))
            }
        };
        Ok((Reader::new(stream.clone()), stream))
    }

    async fn connect(addr: std::net::SocketAddr) -> io::Result<(Reader, Stream)> {
        note_write();
        let at = note_op();
        let stream = TcpStream::connect(addr).await;
        note_submitted(at);
        let stream = stream?;
        stream.set_nodelay(true)?;
        let stream = Stream::Tcp(Rc::new(stream));
        Ok((Reader::new(stream.clone()), stream))
    }

    async fn accept(listener: &Listener) -> io::Result<(Reader, Stream, String)> {
        match listener {
            Listener::Tcp(l) => {
                let at = note_op();
                let accepted = l.accept().await;
                note_submitted(at);
                let (stream, peer) = accepted?;
                stream.set_nodelay(true)?;
                let stream = Stream::Tcp(Rc::new(stream));
                Ok((Reader::new(stream.clone()), stream, peer.to_string()))
            }
            Listener::Unix(l) => {
                let (stream, _) = l.accept().await?;
                let stream = Stream::Unix(Rc::new(UnixStream::from_std(stream.into_std()?)));
                Ok((Reader::new(stream.clone()), stream, "unix".to_owned()))
            }
        }
    }

    fn queued_writes() -> u64 {
        QUEUED_WRITES.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use hostmux_wire::Limits;

    use super::*;

    use crate::tests::sink_frames as frames;

    fn queued_ops() -> u64 {
        QUEUED_OPS.with(Cell::get)
    }

    #[test]
    fn an_operation_counts_as_submitted_once_it_or_a_later_one_completes() {
        assert!(nothing_unsubmitted());
        let first = note_op();
        let second = note_op();
        assert!(!nothing_unsubmitted());
        // Submission is in order: the later one done means both were sent.
        note_submitted(second);
        assert!(nothing_unsubmitted());
        note_submitted(first);
        assert!(nothing_unsubmitted());
        assert_eq!(SUBMITTED_OPS.with(Cell::get), second);
    }

    /// A socket holding more than one read's room: the first read goes
    /// through the ring, the rest of the backlog is read on the spot, and
    /// once the socket is drained the next read is the ring's again. Every
    /// frame arrives, in order.
    #[test]
    fn a_backlog_is_read_on_the_spot_and_an_empty_socket_through_the_ring() {
        let runtime = runtime().expect("an io_uring runtime");
        runtime.block_on(async {
            let (mut client, host) = std::os::unix::net::UnixStream::pair().expect("a pair");
            // Room for the whole backlog (written before the first read).
            rustix::net::sockopt::set_socket_send_buffer_size(&client, 1 << 20)
                .expect("a send buffer size");
            let (mut reader, _writer) = Uring::adopt_unix(host).expect("adopted");
            // Well over one 64 KiB read, well under the socket's buffer.
            let count = 1200;
            client.write_all(&frames(count, 64)).expect("written");
            let mut decoder = FrameDecoder::new(Limits::default());
            let (mut next_id, mut reads) = (0, 0);
            let ring_reads_before = queued_ops();
            while next_id < count {
                let (read, back) = reader.read_into(decoder).await;
                decoder = back;
                assert!(read.expect("read") > 0);
                reads += 1;
                while let Some(frame) = decoder.next_frame().expect("a valid frame") {
                    assert_eq!(frame.message_id(), next_id);
                    next_id += 1;
                }
            }
            assert!(reads >= 2, "the backlog took {reads} reads");
            assert_eq!(
                queued_ops() - ring_reads_before,
                1,
                "only the first read used the ring"
            );
            assert!(!reader.backlog, "the last read drained the socket");
            // Nothing left: the next read waits in the ring for the peer.
            let late = frames(1, 64);
            client.write_all(&late).expect("written");
            let (read, _) = reader.read_into(decoder).await;
            assert_eq!(read.expect("read"), late.len());
            assert_eq!(queued_ops() - ring_reads_before, 2);
        });
    }

    /// An operation queued on the ring and not yet handed to the kernel
    /// (it goes at the next park) makes a backlogged reader use the ring
    /// too, so that the runtime parks and submits it instead of waiting
    /// behind a flood of on-the-spot reads.
    #[test]
    fn a_backlog_read_waits_for_the_ring_while_an_operation_is_unsubmitted() {
        let runtime = runtime().expect("an io_uring runtime");
        runtime.block_on(async {
            let (mut client, host) = std::os::unix::net::UnixStream::pair().expect("a pair");
            let (mut reader, _writer) = Uring::adopt_unix(host).expect("adopted");
            client.write_all(&frames(1200, 64)).expect("written");
            let decoder = FrameDecoder::new(Limits::default());
            let (read, mut decoder) = reader.read_into(decoder).await;
            assert!(read.expect("read") > 0);
            assert!(reader.backlog);
            // Stands for a write another task queued.
            let _unsubmitted = note_op();
            let before = queued_ops();
            while let Some(_frame) = decoder.next_frame().expect("a valid frame") {}
            let (read, _) = reader.read_into(decoder).await;
            assert!(read.expect("read") > 0);
            assert_eq!(queued_ops() - before, 1, "the read went through the ring");
            assert!(
                nothing_unsubmitted(),
                "its completion vouches for the earlier operation"
            );
        });
    }

    /// A write queued while another socket on the thread floods (its reads
    /// all on the spot, so the runtime would never park) reaches the
    /// kernel at once: the flood's next read goes through the ring, and
    /// the runtime parks and submits both. Unguarded, the write waited for
    /// the flood to pause (hundreds to thousands of reads here).
    #[test]
    fn a_write_queued_during_another_sockets_flood_is_submitted_at_once() {
        use std::io::{ErrorKind, Read as _, Write as _};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::Duration;

        let runtime = runtime().expect("an io_uring runtime");
        runtime.block_on(async {
            let (mut flood, host) = std::os::unix::net::UnixStream::pair().expect("a pair");
            let (mut reader, flood_writer) = Uring::adopt_unix(host).expect("adopted");
            flood.set_nonblocking(true).expect("non-blocking");
            let stop = Arc::new(AtomicBool::new(false));
            let flooder = std::thread::spawn({
                let stop = stop.clone();
                move || {
                    // Whole frames, over and over: a valid stream at any cut.
                    let batch = frames(600, 64);
                    let mut at = 0;
                    while !stop.load(Ordering::Relaxed) {
                        match flood.write(&batch[at..]) {
                            Ok(n) => at = (at + n) % batch.len(),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                            Err(_) => return,
                        }
                    }
                }
            });
            let (mut peer, other) = std::os::unix::net::UnixStream::pair().expect("a pair");
            peer.set_nonblocking(true).expect("non-blocking");
            // Reads made on the spot; and how many there were when the
            // write was queued, and when its bytes were first seen at the
            // peer (looked for after every read, on this thread).
            let on_the_spot = Rc::new(Cell::new(0u64));
            let queued_at = Rc::new(Cell::new(None::<u64>));
            let arrived_at = Rc::new(Cell::new(None::<u64>));
            let reading = tokio::task::spawn_local({
                let (on_the_spot, queued_at) = (on_the_spot.clone(), queued_at.clone());
                let arrived_at = arrived_at.clone();
                async move {
                    let _flood_writer = flood_writer;
                    let mut decoder = FrameDecoder::new(Limits::default());
                    loop {
                        let ring_reads = queued_ops();
                        let (read, back) = reader.read_into(decoder).await;
                        decoder = back;
                        if !matches!(read, Ok(n) if n > 0) {
                            return;
                        }
                        if queued_ops() == ring_reads {
                            on_the_spot.set(on_the_spot.get() + 1);
                        }
                        while let Some(_frame) = decoder.next_frame().expect("a valid frame") {}
                        if queued_at.get().is_some() && arrived_at.get().is_none() {
                            let mut reply = [0; 5];
                            if peer.read(&mut reply).is_ok_and(|n| n > 0) {
                                arrived_at.set(Some(on_the_spot.get()));
                            }
                        }
                    }
                }
            });
            // The flood is on once reads are made on the spot.
            let start = std::time::Instant::now();
            while on_the_spot.get() < 10 {
                assert!(start.elapsed() < Duration::from_secs(10), "no backlog");
                // A wait that lets the runtime park (a yield would not).
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let (_other_reader, mut writer) = Uring::adopt_unix(other).expect("adopted");
            queued_at.set(Some(on_the_spot.get()));
            let write = writer.write_all(b"reply".to_vec());
            let (written, _) = tokio::time::timeout(Duration::from_secs(5), write)
                .await
                .expect("the write was submitted during the flood");
            written.expect("written");
            while arrived_at.get().is_none() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "the reply never arrived"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let meanwhile = arrived_at.get().unwrap_or(0) - queued_at.get().unwrap_or(0);
            assert!(meanwhile <= 2, "the write waited behind {meanwhile} reads");
            stop.store(true, Ordering::Relaxed);
            reading.abort();
            flooder.join().expect("the flooder");
        });
    }
}
