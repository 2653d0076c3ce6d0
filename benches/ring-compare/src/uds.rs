//! Baseline: a Unix domain stream socket pair; throughput with 64 KiB batched
//! writes, round trip with both sides busy-polling non-blocking sockets.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::common::{
    measure_rtt, message_seq, payload_source, write_message, Control, Counter, Latency, Peer,
    Throughput, SENTINEL,
};

pub const BATCH: usize = 64 * 1024;

pub fn throughput(size: usize, secs: f64) -> Throughput {
    let (mine, theirs) = UnixStream::pair().unwrap();
    let mut peer = Peer::spawn(
        &[
            "uds".into(),
            "throughput".into(),
            size.to_string(),
            secs.to_string(),
        ],
        &[theirs.as_fd()],
    );
    drop(theirs);
    let mut socket = mine;
    peer.wait_ready();
    peer.go();
    let mut counter = Counter::new();
    let mut batch = vec![0u8; BATCH];
    'outer: loop {
        socket.read_exact(&mut batch).unwrap();
        for message in batch.chunks_exact(size) {
            if !counter.take(message) {
                break 'outer;
            }
        }
    }
    let result = counter.result();
    peer.finish();
    result
}

fn read_spinning(socket: &mut UnixStream, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        match socket.read(&mut buf[got..]) {
            Ok(0) => panic!("peer closed"),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("{e}"),
        }
    }
}

fn write_spinning(socket: &mut UnixStream, buf: &[u8]) {
    let mut sent = 0;
    while sent < buf.len() {
        match socket.write(&buf[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("{e}"),
        }
    }
}

pub fn rtt(size: usize, duration: Duration) -> Latency {
    let (mine, theirs) = UnixStream::pair().unwrap();
    let mut peer = Peer::spawn(
        &["uds".into(), "rtt".into(), size.to_string(), "0".into()],
        &[theirs.as_fd()],
    );
    drop(theirs);
    let mut socket = mine;
    socket.set_nonblocking(true).unwrap();
    peer.wait_ready();
    let src = payload_source(size);
    let mut out = vec![0u8; size];
    let mut back = vec![0u8; size];
    let latency = measure_rtt(duration, |seq| {
        write_message(&mut out, seq, &src);
        write_spinning(&mut socket, &out);
        read_spinning(&mut socket, &mut back);
        assert_eq!(message_seq(&back), seq);
    });
    write_message(&mut out, SENTINEL, &src);
    write_spinning(&mut socket, &out);
    peer.finish();
    latency
}

pub fn peer(mode: &str, size: usize, secs: f64, mut control: Control) {
    let mut socket = UnixStream::from(control.fds.remove(0));
    let src = payload_source(size);
    match mode {
        "throughput" => {
            control.ready();
            control.wait_go();
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut batch = vec![0u8; BATCH];
            let mut seq = 0u64;
            loop {
                for message in batch.chunks_exact_mut(size) {
                    write_message(message, seq, &src);
                    seq += 1;
                }
                socket.write_all(&batch).unwrap();
                if Instant::now() >= end {
                    break;
                }
            }
            write_message(&mut batch[..size], SENTINEL, &src);
            socket.write_all(&batch).unwrap();
        }
        "rtt" => {
            socket.set_nonblocking(true).unwrap();
            control.ready();
            let mut message = vec![0u8; size];
            loop {
                read_spinning(&mut socket, &mut message);
                if message_seq(&message) == SENTINEL {
                    break;
                }
                write_spinning(&mut socket, &message);
            }
        }
        other => panic!("unknown uds mode {other}"),
    }
}
