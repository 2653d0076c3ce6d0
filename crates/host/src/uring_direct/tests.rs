//! The io-uring-direct driver's own tests: completions wake their
//! operation, a dropped read keeps its buffer until the kernel answers,
//! fixed-file slots are reused, a batch goes in one enter, and a backlog
//! is read on the spot. Each waits on events with bounded timeouts.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use hostmux_wire::Limits;

use super::*;

pub(super) const WAIT: Duration = Duration::from_secs(5);

/// Runs `test` on an io-uring-direct runtime (a driver with 8 fixed-file
/// slots), or skips where the kernel refuses io_uring.
fn on_a_ring<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    on_a_ring_with(Some(crate::RecvBuffers::DEFAULT), test);
}

/// [`on_a_ring`] with the provided buffers `recv` (or none).
pub(super) fn on_a_ring_with<F: std::future::Future<Output = ()>>(
    recv: Option<crate::RecvBuffers>,
    test: impl FnOnce() -> F,
) {
    let runtime = match Runtime::new(8, recv) {
        Ok(runtime) => runtime,
        Err(e) => {
            hostmux_testkit::facility::missing(
                hostmux_testkit::facility::Facility::IoUring,
                &format!("the kernel refused to set up a ring: {e}"),
            );
            return;
        }
    };
    runtime.block_on(async move {
        tokio::time::timeout(Duration::from_secs(30), test())
            .await
            .expect("the test finished in time");
    });
}

use crate::tests::sink_frames as frames;

/// `count` socket pairs, the host end of each adopted into this thread's
/// ring.
fn adopted_pairs(count: usize) -> Vec<(UnixStream, driver::Socket)> {
    (0..count)
        .map(|_| {
            let (peer, host) = UnixStream::pair().expect("a pair");
            (peer, driver::Socket::adopt(host.into()).expect("adopted"))
        })
        .collect()
}

/// Waits (bounded) until `done` holds, looking after each timer tick (a
/// wait that lets the runtime park, so the ring's eventfd is watched).
pub(super) async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn a_completion_wakes_the_task_waiting_on_its_operation() {
    on_a_ring(|| async {
        let (mut peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        let reading = tokio::task::spawn_local(async move { reader.read_raw(vec![0; 16]).await });
        // The read is queued, then submitted when the runtime parks.
        tokio::task::yield_now().await;
        peer.write_all(b"hello").expect("written");
        let (read, buf) = tokio::time::timeout(WAIT, reading)
            .await
            .expect("the completion woke the reader")
            .expect("the reader task");
        assert_eq!(read.expect("read"), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(buf.len(), 16, "the buffer's length is unchanged");
    });
}

#[test]
fn a_dropped_read_keeps_its_buffer_until_the_kernel_answers() {
    on_a_ring(|| async {
        let (mut peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        let driver = Driver::current().expect("a driver");
        let before = driver.in_flight();
        let decoder = FrameDecoder::new(Limits::default());
        let read = reader.read_into(decoder);
        // Times out (the peer is silent): the future, decoder inside, is
        // dropped while the kernel holds the read.
        let timed_out = tokio::time::timeout(Duration::from_millis(20), read).await;
        assert!(timed_out.is_err(), "nothing was sent");
        assert_eq!(
            driver.in_flight(),
            before + 1,
            "the driver keeps the read (and its buffer) until the kernel answers"
        );
        // The cancellation pushed at the drop is answered: only then is
        // the slot, and the decoder in it, freed.
        until("the cancelled read freed", || driver.in_flight() == before).await;
        // The cancelled read took nothing: the next read gets every byte.
        peer.write_all(b"after").expect("written");
        let (read, buf) = tokio::time::timeout(WAIT, reader.read_raw(vec![0; 8]))
            .await
            .expect("read in time");
        assert_eq!(read.expect("read"), 5);
        assert_eq!(&buf[..5], b"after");
    });
}

#[test]
fn fixed_file_slots_are_reused_after_a_connection_closes() {
    on_a_ring(|| async {
        let socket = || {
            let (_peer, host) = UnixStream::pair().expect("a pair");
            driver::Socket::adopt(host.into()).expect("adopted")
        };
        let first = socket();
        let second = socket();
        let (a, b) = (first.slot(), second.slot());
        assert!(a.is_some() && b.is_some() && a != b, "{a:?} {b:?}");
        drop(first);
        let third = socket();
        assert_eq!(third.slot(), a, "the emptied slot is taken first");
        // A full table: sockets go by descriptor instead.
        let more: Vec<_> = (0..8).map(|_| socket()).collect();
        assert!(more.iter().filter(|s| s.slot().is_none()).count() >= 2);
        // And a socket in a reused slot still works.
        let (mut peer, host) = UnixStream::pair().expect("a pair");
        drop(third);
        drop(more);
        let (mut reader, mut writer) = UringDirect::adopt_unix(host).expect("adopted");
        let (written, _) = writer.write_all(b"ping".to_vec()).await;
        written.expect("sent");
        let mut got = [0; 4];
        peer.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"ping");
        peer.write_all(b"pong").expect("written");
        let (read, buf) = tokio::time::timeout(WAIT, reader.read_raw(vec![0; 4]))
            .await
            .expect("read in time");
        assert_eq!(read.expect("read"), 4);
        assert_eq!(&buf, b"pong");
    });
}

#[test]
fn queued_operations_go_to_the_kernel_in_one_enter() {
    on_a_ring(|| async {
        let driver = Driver::current().expect("a driver");
        let pairs = adopted_pairs(3);
        let before = driver.counts();
        let ops: Vec<_> = pairs
            .iter()
            .map(|(_, socket)| socket.recv_bytes(vec![0; 8]))
            .collect();
        assert_eq!(
            driver.counts().enters,
            before.enters,
            "queued, not submitted"
        );
        driver.turn();
        let after = driver.counts();
        assert_eq!(after.pushed - before.pushed, 3);
        assert_eq!(after.enters - before.enters, 1, "one enter for the batch");
        for (peer, _) in &pairs {
            let mut peer: &UnixStream = peer;
            peer.write_all(b"x").expect("written");
        }
        for op in ops {
            let (read, _) = tokio::time::timeout(WAIT, op).await.expect("completed");
            assert_eq!(read.expect("read"), 1);
        }
        // Nothing queued: a turn makes no system call (a deferred ring's
        // turn always enters, to have the kernel post completions).
        let quiet = driver.counts().enters;
        driver.turn();
        let entered = driver.counts().enters - quiet;
        assert_eq!(entered, u64::from(driver.setup() == Setup::Deferred));
    });
}

#[test]
fn a_backlog_is_read_on_the_spot_and_an_empty_socket_through_the_ring() {
    on_a_ring(|| async {
        let (mut client, host) = UnixStream::pair().expect("a pair");
        // Room for the whole backlog (written before the first read).
        rustix::net::sockopt::set_socket_send_buffer_size(&client, 1 << 20)
            .expect("a send buffer size");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        let driver = Driver::current().expect("a driver");
        // Well over one 64 KiB read, well under the socket's buffer.
        let count = 1200;
        client.write_all(&frames(count, 64)).expect("written");
        let mut decoder = FrameDecoder::new(Limits::default());
        let (mut next_id, mut reads) = (0, 0);
        let (pushed, spot) = (driver.counts().pushed, driver.on_the_spot());
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
            driver.counts().pushed - pushed,
            1,
            "only the first read used the ring"
        );
        assert_eq!(driver.on_the_spot() - spot, reads - 1);
        assert!(!reader.backlog, "the last read drained the socket");
        // Nothing left: the next read waits in the ring for the peer.
        let late = frames(1, 64);
        client.write_all(&late).expect("written");
        let (read, _) = reader.read_into(decoder).await;
        assert_eq!(read.expect("read"), late.len());
        assert_eq!(driver.counts().pushed - pushed, 2);
    });
}

#[test]
fn a_send_goes_to_the_kernel_at_once_with_what_was_queued() {
    on_a_ring(|| async {
        let driver = Driver::current().expect("a driver");
        let (mut peer, host) = UnixStream::pair().expect("a pair");
        let (_other_peer, other) = UnixStream::pair().expect("a pair");
        let (_, mut writer) = UringDirect::adopt_unix(host).expect("adopted");
        let waiting = driver::Socket::adopt(other.into()).expect("adopted");
        let read = waiting.recv_bytes(vec![0; 8]);
        let before = driver.counts();
        let send = writer.write_all(b"reply".to_vec());
        tokio::pin!(send);
        // One poll queues the send and submits it with the read before it.
        assert!(futures_poll_once(send.as_mut()).await.is_none());
        let after = driver.counts();
        assert_eq!(after.enters - before.enters, 1);
        assert_eq!(driver.ring_unsubmitted(), 0, "the queued read went too");
        let (written, _) = tokio::time::timeout(WAIT, send).await.expect("sent");
        written.expect("sent");
        let mut got = [0; 5];
        peer.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"reply");
        drop(read);
    });
}

/// Polls `future` once; its output if it was ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[test]
fn a_batch_larger_than_the_submission_queue_goes_in_parts() {
    on_a_ring(|| async {
        let driver = Driver::current().expect("a driver");
        // More reads than the SQ has entries (256), none submitted by a
        // park meanwhile: pushing the 257th submits the full queue first.
        let pairs = adopted_pairs(300);
        let before = driver.counts();
        let ops: Vec<_> = pairs
            .iter()
            .map(|(_, socket)| socket.recv_bytes(vec![0; 8]))
            .collect();
        driver.turn();
        let after = driver.counts();
        assert_eq!(after.pushed - before.pushed, 300);
        assert_eq!(
            after.enters - before.enters,
            2,
            "a full queue, then the rest"
        );
        for (peer, _) in &pairs {
            let mut peer: &UnixStream = peer;
            peer.write_all(b"y").expect("written");
        }
        for op in ops {
            let (read, _) = tokio::time::timeout(WAIT, op).await.expect("completed");
            assert_eq!(read.expect("read"), 1);
        }
    });
}
