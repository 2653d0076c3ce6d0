//! The load generator: its own process, one connection, one system.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use hostmux_host::BlockingClient;
use hostmux_wire::{encode_frame_to_vec, FrameHeader, FrameKind, Limits, Sender};

use super::conventional::{read_envelope, write_envelope, Envelope};
use super::{cpu_ticks, LoadResult, Mode, RunSpec, System};
use crate::client::client_error;
use crate::procs::SINK_COUNT_PORT;

/// The proc (or child) the load is sent to.
pub(crate) fn dest_for(mode: Mode) -> &'static str {
    match mode {
        Mode::Oneway => "sink",
        Mode::Rr => "echo",
    }
}

/// The load generator's client name (`load-N` for load generator N of
/// `--scaling`).
pub(crate) const CLIENT_NAME: &str = "load";

/// The client name and destination proc of the load generator `spec` runs.
pub(crate) fn names(spec: &RunSpec) -> (String, String) {
    let dest = dest_for(spec.mode);
    match spec.client_index {
        None => (CLIENT_NAME.to_owned(), dest.to_owned()),
        Some(index) => (format!("{CLIENT_NAME}-{index}"), format!("{dest}-{index}")),
    }
}
/// A one-way batch is at least this many bytes of frames (one write).
const BATCH_BYTES: usize = 256 << 10;

/// The header of the load generator's frames to proc `dest` at host
/// `dest_addr` (empty: the host the client is connected to).
fn client_header<'a>(
    name: &'a str,
    dest: &'a str,
    dest_addr: &'a str,
    port: u32,
    id: u64,
) -> FrameHeader<'a> {
    FrameHeader {
        dest_addr,
        dest_port: port,
        sender: Sender::Client { name },
        ..FrameHeader::data(dest, id)
    }
}

/// One hostmux frame of `size` payload bytes, as the client `name` sends it.
pub(crate) fn hostmux_frame(
    name: &str,
    dest: &str,
    dest_addr: &str,
    size: usize,
) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_frame_to_vec(
        &mut out,
        &client_header(name, dest, dest_addr, 0, 0),
        &vec![0xA5; size],
        &Limits::default(),
    )?;
    Ok(out)
}

/// Fresh message ids (1, 2, …) for copies of one encoded frame.
struct FreshIds {
    /// Where the id is in the frame.
    at: usize,
    next: u64,
}

impl FreshIds {
    fn new(frame: &[u8]) -> anyhow::Result<Self> {
        Ok(FreshIds {
            at: hostmux_wire::frame_message_id_offset(frame, &Limits::default())?,
            next: 1,
        })
    }

    /// Gives each frame of `frames` (back-to-back copies of `frame_len`
    /// bytes) the next id.
    fn stamp(&mut self, frames: &mut [u8], frame_len: usize) {
        for frame in frames.chunks_exact_mut(frame_len) {
            frame[self.at..self.at + 8].copy_from_slice(&self.next.to_le_bytes());
            self.next += 1;
        }
    }
}

fn batch_of(frame: &[u8]) -> (Vec<u8>, u64) {
    let count = (BATCH_BYTES / frame.len()).max(1);
    (frame.repeat(count), count as u64)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs the load for `spec` against `target` (to a proc at host
/// `dest_addr`, empty for the target itself); prints `START` when the
/// measured window opens and the [`LoadResult`] as JSON at the end.
pub(crate) fn run(spec: &RunSpec, target: &str, dest_addr: &str) -> anyhow::Result<ExitCode> {
    let (name, dest) = names(spec);
    let dest = dest.as_str();
    let mut conn = Conn::connect(spec.system, target, &name, spec.busy_poll_client)?;
    let frame = match spec.system {
        System::Conventional => {
            let envelope = Envelope {
                dest: dest.to_owned(),
                port: 0,
                sender: CLIENT_NAME.to_owned(),
                message_id: 0,
                payload: vec![0xA5; spec.size],
            };
            let mut out = Vec::new();
            write_envelope(&mut out, &envelope)?;
            out
        }
        _ => hostmux_frame(&name, dest, dest_addr, spec.size)?,
    };
    // Every system but the conventional one sends hostmux frames (the TCP
    // baselines too, at equal frame bytes), each with a fresh message id
    // as docs/wire.md asks of a client: written into the encoded frame.
    let mut ids = match spec.system {
        System::Conventional => None,
        _ => Some(FreshIds::new(&frame)?),
    };
    let mut frame = frame;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "START")?;
    stdout.flush()?;
    let cpu_before = cpu_ticks("self")?;
    let started = Instant::now();
    let mut latencies = histogram();
    let (frames, returned) = match spec.mode {
        Mode::Oneway => {
            let (mut batch, per_batch) = batch_of(&frame);
            let mut sent = 0u64;
            while started.elapsed() < spec.duration {
                if let Some(ids) = ids.as_mut() {
                    ids.stamp(&mut batch, frame.len());
                }
                conn.write_all(&batch)?;
                sent += per_batch;
            }
            let (received, returned) = conn.confirm(frame.len(), dest_addr, &name, dest)?;
            if received + returned != sent {
                bail!("sent {sent} frames but the receiver confirmed {received} (+{returned} returned)");
            }
            (received, returned)
        }
        Mode::Rr => {
            let mut count = 0u64;
            let mut scratch = vec![0u8; frame.len()];
            while started.elapsed() < spec.duration {
                let at = Instant::now();
                if let Some(ids) = ids.as_mut() {
                    let len = frame.len();
                    ids.stamp(&mut frame, len);
                }
                conn.write_all(&frame)?;
                conn.read_reply(&mut scratch)?;
                latencies.saturating_record(at.elapsed().as_nanos() as u64);
                count += 1;
            }
            (count, 0)
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let result = LoadResult {
        frames,
        returned,
        secs,
        cpu_ticks: cpu_ticks("self")? - cpu_before,
        p50_ns: latencies.value_at_quantile(0.5),
        p99_ns: latencies.value_at_quantile(0.99),
        p999_ns: latencies.value_at_quantile(0.999),
    };
    writeln!(stdout, "{}", serde_json::to_string(&result)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The client side of one system.
enum Conn {
    Tcp(TcpStream),
    /// Non-blocking; reads and writes poll until done (see [`spin`]).
    TcpBusyPoll(TcpStream),
    Hostmux(Box<BlockingClient>),
    Conventional(TcpStream),
}

/// How long a busy-polling read waits for its reply before failing.
const BUSY_POLL_TIMEOUT: Duration = Duration::from_secs(30);

impl Conn {
    fn connect(system: System, target: &str, name: &str, busy_poll: bool) -> anyhow::Result<Self> {
        Ok(match system {
            System::Tcp
            | System::TcpRelay
            | System::TcpSpread
            | System::Conventional
            | System::TcpBusyPoll
            | System::TcpRelayBusyPoll => {
                let stream = TcpStream::connect(target)
                    .with_context(|| format!("connecting to {target}"))?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                match system {
                    // The plain TCP systems' client is hostmux's: it blocks
                    // unless told to spin (`--busy-poll-client`).
                    System::Tcp
                    | System::TcpRelay
                    | System::TcpSpread
                    | System::TcpRelayBusyPoll
                        if !busy_poll =>
                    {
                        Conn::Tcp(stream)
                    }
                    System::Tcp
                    | System::TcpRelay
                    | System::TcpSpread
                    | System::TcpBusyPoll
                    | System::TcpRelayBusyPoll => {
                        stream.set_nonblocking(true)?;
                        Conn::TcpBusyPoll(stream)
                    }
                    _ => Conn::Conventional(stream),
                }
            }
            System::Uring
            | System::Epoll
            | System::UringDirect
            | System::SameHost
            | System::CrossHost => {
                let mut client =
                    crate::client::connect(target, name, b"", "service", Duration::from_secs(5))?;
                client
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .map_err(client_error)?;
                if busy_poll {
                    client.set_busy_poll(true).map_err(client_error)?;
                }
                Conn::Hostmux(Box::new(client))
            }
            System::Tls => {
                let addr: hostmux_wire::Addr = target.parse()?;
                let tls = super::bench_tls()?.client_config().clone();
                let hello_timeout = Duration::from_secs(5);
                let mut client =
                    BlockingClient::connect_tls(&addr, name, b"", "service", hello_timeout, tls)
                        .map_err(client_error)?;
                client
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .map_err(client_error)?;
                Conn::Hostmux(Box::new(client))
            }
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Conn::Tcp(s) | Conn::Conventional(s) => s.write_all(bytes)?,
            Conn::TcpBusyPoll(s) => spin(bytes.len(), |done| s.write(&bytes[done..]))?,
            Conn::Hostmux(c) => c.write_raw(bytes).map_err(client_error)?,
        }
        Ok(())
    }

    /// Reads one reply (its payload lands in `scratch` for TCP).
    fn read_reply(&mut self, scratch: &mut [u8]) -> anyhow::Result<()> {
        match self {
            Conn::Tcp(s) => s.read_exact(scratch).context("reading the echo")?,
            Conn::TcpBusyPoll(s) => spin(scratch.len(), |done| s.read(&mut scratch[done..]))
                .context("reading the echo")?,
            Conn::Conventional(s) => {
                read_envelope(s)?.context("the conventional host closed the connection")?;
            }
            Conn::Hostmux(c) => {
                let kind = c
                    .recv_with(|frame| frame.kind())
                    .map_err(client_error)?
                    .context("the host closed the connection")?;
                if kind != FrameKind::Data {
                    bail!("expected an echo, got a {kind:?} frame");
                }
            }
        }
        Ok(())
    }

    /// Ends a one-way stream and learns how many frames were received (and
    /// returned as undeliverable).
    /// `name` is this client's, `dest` the sink's.
    fn confirm(
        &mut self,
        frame_len: usize,
        dest_addr: &str,
        name: &str,
        dest: &str,
    ) -> anyhow::Result<(u64, u64)> {
        match self {
            Conn::Tcp(s) | Conn::TcpBusyPoll(s) => {
                // The count is one blocking read (a spinning client's socket
                // is non-blocking).
                s.set_nonblocking(false)?;
                s.shutdown(Shutdown::Write)?;
                let mut count = [0u8; 8];
                s.read_exact(&mut count)
                    .context("reading the discard count")?;
                Ok((u64::from_le_bytes(count) / frame_len as u64, 0))
            }
            Conn::Conventional(s) => {
                let request = Envelope {
                    dest: dest_for(Mode::Oneway).to_owned(),
                    port: SINK_COUNT_PORT,
                    sender: CLIENT_NAME.to_owned(),
                    message_id: 1,
                    payload: Vec::new(),
                };
                let mut out = Vec::new();
                write_envelope(&mut out, &request)?;
                s.write_all(&out)?;
                let reply = read_envelope(s)?.context("no count from the conventional child")?;
                Ok((count_of(&reply.payload)?, 0))
            }
            Conn::Hostmux(c) => {
                let header = client_header(name, dest, dest_addr, SINK_COUNT_PORT, 1);
                c.queue_frame(&header, &[])
                    .map_err(|e| client_error(e).context("encoding the count request"))?;
                c.flush().map_err(client_error)?;
                let mut returned = 0;
                loop {
                    let answer = c
                        .recv_with(|frame| match frame.kind() {
                            FrameKind::Undeliverable => None,
                            _ => Some(count_of(frame.payload())),
                        })
                        .map_err(client_error)?
                        .context("the host closed the connection")?;
                    match answer {
                        Some(count) => return Ok((count?, returned)),
                        None => returned += 1,
                    }
                }
            }
        }
    }
}

/// Moves `len` bytes with `step` (a non-blocking read or write of what is
/// left after `done` bytes), polling again while the socket would block.
/// Each empty poll yields the CPU (`sched_yield`): the poller never sleeps,
/// but on a machine with more runnable threads than cores it does not hold
/// the core its peer needs for a whole time slice.
fn spin(len: usize, mut step: impl FnMut(usize) -> std::io::Result<usize>) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut done = 0;
    while done < len {
        match step(done) {
            Ok(0) => bail!("the connection closed after {done} of {len} bytes"),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if started.elapsed() > BUSY_POLL_TIMEOUT {
                    bail!("no progress for {BUSY_POLL_TIMEOUT:?} after {done} of {len} bytes");
                }
                std::thread::yield_now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn count_of(payload: &[u8]) -> anyhow::Result<u64> {
    let bytes: [u8; 8] = payload
        .try_into()
        .map_err(|_| anyhow::anyhow!("a count is 8 bytes, got {}", payload.len()))?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that counts what it got until the client's half-close and
    /// answers the count, as the bench's discard server does one-way.
    fn counting_reader() -> (std::net::TcpListener, std::thread::JoinHandle<u64>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let accepting = listener.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut stream, _) = accepting.accept().unwrap();
            let mut total = 0u64;
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).unwrap() {
                    0 => break,
                    n => total += n as u64,
                }
            }
            stream.write_all(&total.to_le_bytes()).unwrap();
            total
        });
        (listener, reader)
    }

    #[test]
    fn the_plain_tcp_client_spins_when_told_and_still_learns_the_count() {
        for busy_poll in [false, true] {
            let (listener, reader) = counting_reader();
            let target = listener.local_addr().unwrap().to_string();
            let mut conn = Conn::connect(System::Tcp, &target, "load", busy_poll).unwrap();
            assert_eq!(
                matches!(conn, Conn::TcpBusyPoll(_)),
                busy_poll,
                "busy_poll {busy_poll}"
            );
            let frame = [7u8; 100];
            for _ in 0..50 {
                conn.write_all(&frame).unwrap();
            }
            let (frames, returned) = conn.confirm(frame.len(), "", "load", "sink").unwrap();
            assert_eq!((frames, returned), (50, 0), "busy_poll {busy_poll}");
            assert_eq!(reader.join().unwrap(), 5000);
        }
    }
}
