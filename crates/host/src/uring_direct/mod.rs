//! The io-uring-direct frontend: io_uring through the `io-uring` crate,
//! with a ring per I/O thread that this module drives itself
//! ([`driver`]), on a plain tokio current-thread runtime and `LocalSet`
//! (as the epoll frontend runs).
//!
//! Why not tokio-uring ([`crate::uring`]): it is unmaintained, and it
//! submits only when its runtime parks, which the I/O loop's spin never
//! does. Here the frontend decides: operations are queued as tasks create
//! them and go to the kernel in one `io_uring_enter` per batch, at the
//! runtime's park, on every turn of the I/O loop's spin
//! ([`Frontend::turn`]), and at once for a send (a reply never waits).
//! Completions are read from the completion queue in memory on every turn
//! of the spin, and by a reaper task when the ring's eventfd signals.
//!
//! * Each connection's socket sits in the ring's sparse fixed-file table
//!   (`IOSQE_FIXED_FILE`) while it lives; the slot is emptied and reused
//!   when the connection closes ([`driver::Socket`]).
//! * Reads: one `recv` into the frame decoder's spare room, the decoder
//!   moved into the operation and back (no copy), as `crate::uring` does;
//!   a read that filled its room marks the socket as backlogged and the
//!   next read is one `recv(MSG_DONTWAIT)` on the spot (then a
//!   cooperative-budget check). Large frames are read straight into a
//!   proc's ring by readiness plus a non-blocking read
//!   ([`ConnReader::read_direct`]): nothing is in flight on the socket
//!   then (reads on a connection are sequential), so nothing races it.
//! * Writes: `send` of the owned reply buffer, again until all is sent.
//! * A read future dropped unfinished (a timeout) leaves its buffer with
//!   the driver, which cancels the operation and frees the buffer only
//!   when the kernel answers ([`sys`]).
//! * Accepts and dials go through tokio's reactor (not the hot path); the
//!   accepted or dialled socket is then adopted into the ring.
//!
//! The ring is set up with `IORING_SETUP_COOP_TASKRUN` and
//! `IORING_SETUP_SINGLE_ISSUER` ([`Setup::Cooperative`]): the spin calls
//! `sched_yield` every turn, which runs the ring's pending task work, so
//! completions arrive in memory while the thread spins without the kernel
//! interrupting it. `DEFER_TASKRUN` ([`Setup::Deferred`]) makes every reap
//! an `io_uring_enter`; measured against cooperative in docs/benchmarks.md
//! ("Issue 15: io_uring on the io-uring crate"). `HOSTMUX_URING_SETUP`
//! (`cooperative`, `deferred`, `plain`) picks one for measurements.
//!
//! Multishot receive ([`multishot`]): where the ring has provided buffers
//! ([`crate::HostConfig::uring_recv_buffers`]), an established
//! connection's reads are one multishot receive whose chunks the read loop
//! decodes in place ([`ConnReader::next_chunk`]); the single receive above
//! remains for hellos, TLS, after `ENOBUFS`, and kernels without buffer
//! rings. See docs/architecture.md, "Frontends".

use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use hostmux_wire::FrameDecoder;

use crate::frontend::{ConnReader, ConnWriter, Frontend, StdListener};

pub(crate) mod driver;
mod multishot;
#[allow(unsafe_code)]
pub(crate) mod sys;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_multishot;

use driver::{Driver, Socket};
pub use multishot::{receive_counts, ReceiveCounts};
use sys::{Lent, Setup};

/// The io-uring-direct frontend.
pub(crate) struct UringDirect;

/// The ring setup this process uses (`HOSTMUX_URING_SETUP`, else
/// cooperative).
fn setup() -> Setup {
    match std::env::var("HOSTMUX_URING_SETUP").as_deref() {
        Ok("deferred") => Setup::Deferred,
        Ok("plain") => Setup::Plain,
        _ => Setup::Cooperative,
    }
}

/// A current-thread tokio runtime whose thread owns a ring driver, and
/// the `LocalSet` its tasks run on.
pub(crate) struct Runtime {
    runtime: tokio::runtime::Runtime,
    driver: Rc<Driver>,
    /// The task that reaps completions when the ring's eventfd signals.
    reaper: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
}

impl Runtime {
    /// Builds the runtime and its ring (with up to `file_slots` fixed-file
    /// slots) for the calling thread, which must be the one that runs it.
    /// With `recv`, each ring registers provided buffers for multishot
    /// receives.
    pub(crate) fn new(
        file_slots: u32,
        recv: Option<crate::config::RecvBuffers>,
    ) -> io::Result<Runtime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(Driver::park_current)
            .build()?;
        let driver = Driver::new(setup(), file_slots, recv)?;
        let reaper = {
            let _entered = runtime.enter();
            Box::pin(driver.reaper()?)
        };
        Ok(Runtime {
            runtime,
            driver,
            reaper,
        })
    }

    /// Runs `future` to its end with this thread's driver installed (and
    /// its reaper task running); the driver is uninstalled after.
    pub(crate) fn block_on<T>(self, future: impl std::future::Future<Output = T>) -> T {
        let Runtime {
            runtime,
            driver,
            reaper,
        } = self;
        Driver::install(driver);
        let local = tokio::task::LocalSet::new();
        let reaping = local.spawn_local(reaper);
        let output = local.block_on(&runtime, future);
        reaping.abort();
        drop(local);
        drop(runtime);
        if let Ok(driver) = Driver::current() {
            let counts = driver.counts();
            tracing::debug!(
                setup = ?driver.setup(),
                pushed = counts.pushed,
                enters = counts.enters,
                reaped = counts.reaped,
                on_the_spot = driver.on_the_spot(),
                multishots_armed = counts.armed,
                multishot_chunks = counts.chunks,
                multishot_enobufs = counts.enobufs,
                multishot_cancels = counts.cancels,
                multishot_cap_cancels = counts.cap_cancels,
                "io_uring driver done"
            );
        }
        Driver::uninstall();
        output
    }
}

/// Accepts go through tokio's reactor, as the epoll frontend's do (not
/// the hot path); the accepted socket is then adopted into the ring.
use crate::epoll::Listener;

/// A connection's read side.
pub(crate) struct Reader {
    /// Declared first: a multishot still armed is cancelled (queued) before
    /// the socket's drop submits what is queued.
    multi: multishot::Receive,
    /// Deregistered from tokio's reactor before the socket can close.
    direct: Option<tokio::io::unix::AsyncFd<OwnedFd>>,
    socket: Rc<Socket>,
    /// The last read filled all the room it had: the socket probably holds
    /// more, so the next read tries `recv` on the spot first.
    backlog: bool,
}

/// A connection's write side.
pub(crate) struct Writer {
    socket: Rc<Socket>,
}

fn halves(fd: OwnedFd) -> io::Result<(Reader, Writer)> {
    let socket = Rc::new(Socket::adopt(fd)?);
    Ok((
        Reader {
            multi: multishot::Receive::default(),
            direct: None,
            socket: socket.clone(),
            backlog: false,
        },
        Writer { socket },
    ))
}

impl Reader {
    /// One `recv(MSG_DONTWAIT)` into the decoder's spare room while the
    /// socket has a backlog; `None` if the read must go through the ring.
    async fn read_backlog(&mut self, decoder: &mut FrameDecoder) -> Option<io::Result<usize>> {
        if !self.backlog {
            return None;
        }
        // A reader that never waits keeps the runtime from parking: what
        // other tasks queued goes to the kernel now.
        self.socket.driver().submit_if_queued();
        let socket = &self.socket;
        crate::frontend::read_backlog(decoder, &mut self.backlog, |spare| {
            let read = crate::frontend::recv_now(socket.fd(), spare);
            if read.is_ok() {
                socket.driver().count_on_the_spot();
            }
            read
        })
        .await
    }
}

impl ConnReader for Reader {
    type Chunk = sys::Chunk;

    fn lends_chunks(&self) -> bool {
        self.socket.driver().multishot() || self.multi.active()
    }

    async fn next_chunk(&mut self) -> io::Result<crate::frontend::Next<sys::Chunk>> {
        let next = self.multi.next_chunk(&self.socket).await;
        if matches!(next, Ok(crate::frontend::Next::Read)) {
            multishot::SINGLE_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        next
    }

    fn keep(&mut self, chunk: sys::Chunk, used: usize) {
        self.multi.keep(chunk, used);
    }

    fn pause(&mut self) {
        self.multi.pause();
    }

    async fn read_into(&mut self, mut decoder: FrameDecoder) -> (io::Result<usize>, FrameDecoder) {
        // Bytes a multishot delivered come first: a plain read happens only
        // once it is over and all of them were taken (`Next::Read`).
        debug_assert!(!self.multi.active(), "a plain read behind a multishot");
        if let Some(result) = self.read_backlog(&mut decoder).await {
            return (result, decoder);
        }
        let room = decoder.spare_capacity_mut().len();
        let (result, lent) = self.socket.recv_decoder(decoder).await;
        let Lent::Decoder(mut decoder) = lent else {
            unreachable!("a decoder receive returns its decoder");
        };
        if let Ok(n) = result {
            decoder.commit(n);
        }
        self.backlog = matches!(result, Ok(n) if n == room);
        (result, decoder)
    }

    fn shutdown(&self) {
        // The read side only: a pending read ends at once, and what the
        // writer still has queued (an error notice) may go out.
        let _ = rustix::net::shutdown(self.socket.fd(), rustix::net::Shutdown::Read);
    }

    async fn read_raw(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let (result, lent) = self.socket.recv_bytes(buf).await;
        let Lent::Bytes(buf) = lent else {
            unreachable!("a bytes receive returns its bytes");
        };
        (result, buf)
    }

    fn reads_direct(&self) -> bool {
        true
    }

    async fn read_direct(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // What a multishot delivered comes first (it is cancelled first).
        if let Some(read) = self.multi.read_direct(&self.socket, buf).await {
            return read;
        }
        let socket = || self.socket.fd().try_clone();
        crate::frontend::read_when_readable(&mut self.direct, socket, buf).await
    }
}

impl ConnWriter for Writer {
    async fn write_all(&mut self, mut buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut written = 0;
        while written < buf.len() {
            let (result, lent) = self.socket.send(buf, written).await;
            let Lent::Bytes(back) = lent else {
                unreachable!("a send returns its bytes");
            };
            buf = back;
            if let Some(e) = crate::frontend::write_step(result, &mut written) {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }
}

impl Frontend for UringDirect {
    type Listener = Listener;
    type Reader = Reader;
    type Writer = Writer;
    const NAME: &'static str = "io_uring (io-uring crate)";

    fn listener(listener: StdListener) -> io::Result<Listener> {
        crate::epoll::Epoll::listener(listener)
    }

    fn adopt_unix(stream: std::os::unix::net::UnixStream) -> io::Result<(Reader, Writer)> {
        stream.set_nonblocking(true)?;
        halves(stream.into())
    }

    fn adopt(
        accepted: crate::io::Accepted,
        _tls: Option<&crate::TlsConfig>,
    ) -> io::Result<(Reader, Writer)> {
        match accepted {
            crate::io::Accepted::Tcp(stream, _) => {
                stream.set_nonblocking(true)?;
                stream.set_nodelay(true)?;
                halves(stream.into())
            }
            crate::io::Accepted::Unix(stream) => Self::adopt_unix(stream),
        }
    }

    async fn connect(addr: std::net::SocketAddr) -> io::Result<(Reader, Writer)> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        halves(stream.into_std()?.into())
    }

    async fn accept(listener: &Listener) -> io::Result<(Reader, Writer, String)> {
        match listener {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true)?;
                let (r, w) = halves(stream.into_std()?.into())?;
                Ok((r, w, peer.to_string()))
            }
            Listener::Unix(l) => {
                let (stream, _) = l.accept().await?;
                let (r, w) = halves(stream.into_std()?.into())?;
                Ok((r, w, "unix".to_owned()))
            }
        }
    }

    fn turn() {
        Driver::turn_current();
    }
}
