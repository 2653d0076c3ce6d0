//! Multishot receive from the provided buffer ring: a long stream arrives
//! whole and in order, `ENOBUFS` and the per-connection cap end a
//! multishot without losing a byte, a paused reader's multishot is
//! cancelled (the kernel leaves later bytes in the socket), a direct read
//! takes what the multishot delivered first and is followed by one plain
//! receive, and a ring without buffers reads as before. Each waits on
//! events with bounded timeouts.

use std::io::Write as _;
use std::os::unix::net::UnixStream;

use hostmux_wire::{decode_frame, FrameDecoder, Limits};

use super::tests::{on_a_ring_with, until};
use super::*;
use crate::frontend::Next;
use crate::tests::sink_frames as frames;
use crate::RecvBuffers;

/// Writes `bytes` to `peer` from another thread, then closes it.
fn write_in_thread(mut peer: UnixStream, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        peer.write_all(&bytes).expect("written");
    })
}

/// Frames `first..first + count` (100-byte payloads), as
/// [`frames`] encodes them.
fn frames_from(first: u64, count: u64) -> Vec<u8> {
    let all = frames(first + count, 100);
    let one = all.len() / (first + count) as usize;
    all[first as usize * one..].to_vec()
}

/// Reads the stream to its end as the host's read loop does: chunks lent
/// to the decoder (large frames stop a loan; none here), a single read
/// when the reader says so. Returns the message ids, starting with
/// `first`'s frames if given.
async fn read_to_end(reader: &mut Reader, first: Option<sys::Chunk>) -> Vec<u64> {
    let mut decoder = FrameDecoder::new(Limits::default());
    let mut ids = Vec::new();
    let mut pending = first.map(Next::Chunk);
    loop {
        let next = match pending.take() {
            Some(next) => next,
            None => reader.next_chunk().await.expect("read"),
        };
        match next {
            Next::Chunk(chunk) => {
                let mut lent = decoder.lend(&chunk, usize::MAX);
                while let Some(frame) = lent.next_frame().expect("valid frames") {
                    ids.push(frame.message_id());
                }
                assert_eq!(lent.finish(), chunk.len(), "no large frame here");
            }
            Next::Read => {
                let (read, back) = reader.read_into(decoder).await;
                decoder = back;
                if read.expect("read") == 0 {
                    break;
                }
                while let Some(frame) = decoder.next_frame().expect("valid frames") {
                    ids.push(frame.message_id());
                }
            }
            Next::Eof => break,
        }
    }
    decoder.finish().expect("no partial frame at the end");
    ids
}

fn counts() -> sys::RingCounts {
    Driver::current().expect("a driver").counts()
}

async fn all_buffers_back() {
    let driver = Driver::current().expect("a driver");
    until("every provided buffer given back", || {
        driver.buffers_out() == 0
    })
    .await;
}

#[test]
fn multishot_delivers_a_long_pipelined_stream_in_order() {
    on_a_ring_with(Some(RecvBuffers::DEFAULT), || async {
        let (peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        assert!(reader.lends_chunks());
        let before = counts();
        let writing = write_in_thread(peer, frames(20_000, 100));
        let ids = read_to_end(&mut reader, None).await;
        writing.join().expect("the writer");
        assert_eq!(ids, (0..20_000).collect::<Vec<u64>>());
        let after = counts();
        let chunks = after.chunks - before.chunks;
        assert!(chunks >= 10, "{after:?}");
        assert!(
            after.armed - before.armed < chunks,
            "one multishot brings many chunks: {after:?}"
        );
        drop(reader);
        all_buffers_back().await;
    });
}

#[test]
fn a_dry_buffer_ring_ends_the_multishot_with_enobufs_and_the_stream_completes() {
    // Two 4 KiB buffers, no cap below them: a socket holding 64 KiB runs
    // the ring dry at the first multishot.
    let tiny = RecvBuffers {
        count: 2,
        len: 4096,
        held_per_conn: 64,
    };
    on_a_ring_with(Some(tiny), || async {
        let (mut peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        let stream = frames(5_000, 100);
        let (now, later) = stream.split_at(64 * 1024);
        peer.write_all(now).expect("buffered by the socket");
        let before = counts();
        let writing = write_in_thread(peer, later.to_vec());
        let ids = read_to_end(&mut reader, None).await;
        writing.join().expect("the writer");
        assert_eq!(ids, (0..5_000).collect::<Vec<u64>>());
        let after = counts();
        assert!(after.enobufs > before.enobufs, "{after:?}");
        assert!(after.armed - before.armed >= 2, "re-armed: {after:?}");
        drop(reader);
        all_buffers_back().await;
    });
}

#[test]
fn a_reader_that_holds_its_cap_of_buffers_has_its_multishot_cancelled() {
    let capped = RecvBuffers {
        count: 64,
        len: 4096,
        held_per_conn: 4,
    };
    on_a_ring_with(Some(capped), || async {
        let (mut peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        let stream = frames(3_000, 100);
        let (now, later) = stream.split_at(100 * 1024);
        peer.write_all(now).expect("buffered by the socket");
        let before = counts();
        let writing = write_in_thread(peer, later.to_vec());
        let ids = read_to_end(&mut reader, None).await;
        writing.join().expect("the writer");
        assert_eq!(ids, (0..3_000).collect::<Vec<u64>>());
        let after = counts();
        assert!(after.cap_cancels > before.cap_cancels, "{after:?}");
        drop(reader);
        all_buffers_back().await;
    });
}

#[test]
fn a_paused_reader_stops_its_multishot_and_keeps_what_it_delivered() {
    on_a_ring_with(Some(RecvBuffers::DEFAULT), || async {
        let (mut peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        peer.write_all(&frames_from(0, 10)).expect("written");
        let Next::Chunk(first) = reader.next_chunk().await.expect("read") else {
            panic!("a chunk from the multishot");
        };
        assert!(reader.multi.armed());
        // The host stops reading (a full ring): the multishot ends.
        reader.pause();
        let cancels = counts().cancels;
        until("the cancelled multishot ends", || !reader.multi.armed()).await;
        assert_eq!(counts().cancels, cancels, "one cancellation");
        // Bytes sent now stay in the socket: no multishot takes them.
        let later = frames_from(10, 10);
        peer.write_all(&later).expect("written");
        let mut peek = vec![0; later.len() + 64];
        let (queued, _) = rustix::net::recv(
            reader.socket.fd(),
            &mut peek,
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
        )
        .expect("peeked");
        assert_eq!(&peek[..queued], &later[..], "left in the socket, whole");
        // Reading resumes: what was delivered first, then the rest.
        drop(peer);
        let ids = read_to_end(&mut reader, Some(first)).await;
        assert_eq!(ids, (0..20).collect::<Vec<u64>>());
        drop(reader);
        all_buffers_back().await;
    });
}

#[test]
fn a_direct_read_takes_what_the_multishot_delivered_first() {
    on_a_ring_with(Some(RecvBuffers::DEFAULT), || async {
        let (peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        let limits = Limits::default();
        let mut stream = Vec::new();
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        for (id, body) in [(0u64, &b"small"[..]), (1, &payload[..]), (2, &b"after"[..])] {
            let header = hostmux_wire::FrameHeader::data("sink", id);
            hostmux_wire::encode_frame_to_vec(&mut stream, &header, body, &limits)
                .expect("a frame");
        }
        // The writer keeps its end open: the multishot does not end at
        // the end of stream before the direct read cancels it.
        let writing = std::thread::spawn(move || {
            let mut peer = peer;
            peer.write_all(&stream).expect("written");
            peer
        });
        let before = counts();
        let large = 64 * 1024;
        let mut decoder = FrameDecoder::new(limits);
        let mut ids = Vec::new();
        while ids.len() < 3 {
            let Next::Chunk(chunk) = reader.next_chunk().await.expect("read") else {
                panic!("chunks until the last frame");
            };
            let mut lent = decoder.lend(&chunk, large);
            while let Some(frame) = lent.next_frame().expect("valid") {
                ids.push(frame.message_id());
            }
            let used = lent.finish();
            if used < chunk.len() {
                reader.keep(chunk, used);
            }
            let Some(len) = decoder.pending_frame_len().filter(|&len| len >= large) else {
                continue;
            };
            // The large frame's head is in: its payload is read around the
            // decoder, first out of what the multishot delivered.
            let mut whole = vec![0; len];
            let mut filled = decoder.buffered_len();
            whole[..filled].copy_from_slice(decoder.front_bytes());
            while filled < len {
                let n = reader
                    .read_direct(&mut whole[filled..])
                    .await
                    .expect("read");
                assert!(n > 0, "the stream goes on");
                filled += n;
            }
            assert!(decoder.skip_front_frame(len));
            let mut aligned = hostmux_wire::rkyv::util::AlignedVec::<16>::new();
            aligned.extend_from_slice(&whole);
            let frame = decode_frame(&aligned, &limits).expect("the large frame");
            assert_eq!(frame.payload(), &payload[..]);
            ids.push(frame.message_id());
        }
        let peer = writing.join().expect("the writer");
        assert_eq!(ids, [0, 1, 2]);
        let after = counts();
        assert!(
            after.cancels > before.cancels,
            "cancelled for the direct read"
        );
        drop(peer);
        drop(reader);
        all_buffers_back().await;
    });
}

#[test]
fn without_provided_buffers_reads_are_single_receives() {
    on_a_ring_with(None, || async {
        let (peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        assert!(!reader.lends_chunks());
        let before = counts();
        let writing = write_in_thread(peer, frames(2_000, 100));
        let ids = read_to_end(&mut reader, None).await;
        writing.join().expect("the writer");
        assert_eq!(ids, (0..2_000).collect::<Vec<u64>>());
        assert_eq!(counts().armed, before.armed, "no multishot");
    });
}

#[test]
fn after_a_large_frame_read_straight_into_a_ring_the_next_read_is_one_plain_receive() {
    on_a_ring_with(Some(RecvBuffers::DEFAULT), || async {
        let (peer, host) = UnixStream::pair().expect("a pair");
        let (mut reader, _writer) = UringDirect::adopt_unix(host).expect("adopted");
        let limits = Limits::default();
        let mut stream = Vec::new();
        let payload = vec![7u8; 300_000];
        for (id, body) in [(1u64, &payload[..]), (2, &b"after"[..]), (3, &b"last"[..])] {
            let header = hostmux_wire::FrameHeader::data("sink", id);
            hostmux_wire::encode_frame_to_vec(&mut stream, &header, body, &limits)
                .expect("a frame");
        }
        // The large frame's head and a little payload first; the rest (and
        // two small frames) only once the multishot is over, so that they
        // can only come by the direct read and the reads after it.
        let (go, gone) = std::sync::mpsc::channel::<()>();
        let (first, rest) = stream.split_at(4096);
        let (first, rest) = (first.to_vec(), rest.to_vec());
        let writing = std::thread::spawn(move || {
            let mut peer = peer;
            peer.write_all(&first).expect("written");
            gone.recv().expect("go");
            peer.write_all(&rest).expect("written");
        });
        let large = 64 * 1024;
        let mut decoder = FrameDecoder::new(limits);
        let len = loop {
            let Next::Chunk(chunk) = reader.next_chunk().await.expect("read") else {
                panic!("a chunk with the large frame's head");
            };
            let mut lent = decoder.lend(&chunk, large);
            assert!(lent.next_frame().expect("valid").is_none());
            let used = lent.finish();
            if used < chunk.len() {
                reader.keep(chunk, used);
            }
            if let Some(len) = decoder.pending_frame_len().filter(|&len| len >= large) {
                break len;
            }
        };
        let mut whole = vec![0; len];
        let mut filled = decoder.buffered_len();
        whole[..filled].copy_from_slice(decoder.front_bytes());
        let driver = Driver::current().expect("a driver");
        let before = counts();
        let mut go = Some(go);
        while filled < len {
            // Once the multishot is cancelled and over (no operation in the
            // ring), the writer sends the rest (while a direct read waits).
            let signal = async {
                if go.is_some() {
                    until("the multishot cancelled and ended", || {
                        counts().cancels > before.cancels && driver.in_flight() == 0
                    })
                    .await;
                    go.take().expect("once").send(()).expect("the writer waits");
                }
                std::future::pending::<()>().await
            };
            let read = tokio::select! {
                biased;
                read = reader.read_direct(&mut whole[filled..]) => read,
                () = signal => unreachable!("the signal never ends"),
            };
            let n = read.expect("read");
            assert!(n > 0, "the stream goes on");
            filled += n;
        }
        assert!(decoder.skip_front_frame(len));
        // The read after the frame is one plain receive: no multishot was
        // armed to fill provided buffers with what follows.
        let armed = counts().armed;
        assert!(matches!(
            reader.next_chunk().await.expect("read"),
            Next::Read
        ));
        assert_eq!(counts().armed, armed, "no multishot armed after the frame");
        let mut ids = Vec::new();
        while ids.len() < 2 {
            let (read, back) = reader.read_into(decoder).await;
            decoder = back;
            assert!(read.expect("read") > 0, "the small frames come");
            while let Some(frame) = decoder.next_frame().expect("valid") {
                ids.push(frame.message_id());
            }
        }
        assert_eq!(ids, [2, 3]);
        writing.join().expect("the writer");
        // And the read after that arms one again (it meets the end of the
        // stream: the writer has closed its end).
        assert!(matches!(
            reader.next_chunk().await.expect("read"),
            Next::Eof
        ));
        assert_eq!(counts().armed, armed + 1, "re-armed after one plain read");
        drop(reader);
        all_buffers_back().await;
    });
}
