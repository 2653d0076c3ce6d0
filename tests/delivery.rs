//! The delivery contract tried from outside, with the released CLI and a
//! client written from `docs/wire.md`: a reply nobody waits for must not
//! start a loop (issue 11, case 1), and a client that half-closes gets the
//! answer to every frame it sent before (case 2).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use hostmux_wire::{
    encode_frame_to_vec, encode_hello, FrameDecoder, FrameHeader, FrameKind, Limits, Sender,
};

use crate::serve::{run, stdout, Served, DEADLINE};

/// Echo's counters from `ps --json`: (frames_in, frames_out).
fn echo_counters(socket: &Path) -> (u64, u64) {
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&run(socket, &["ps", "--json"]))).expect("json");
    let echo = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["name"] == "echo")
        .unwrap_or_else(|| panic!("no echo in {listed}"))
        .clone();
    (
        echo["frames_in"].as_u64().expect("frames_in"),
        echo["frames_out"].as_u64().expect("frames_out"),
    )
}

fn serve_with_echo(dir: &Path, extra: &[&str]) -> (Served, std::path::PathBuf, String) {
    let socket = dir.join("control.sock");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let served = Served::start_with(&socket, &token_file, extra);
    let exe = env!("CARGO_BIN_EXE_hostmux");
    stdout(&run(
        &socket,
        &["spawn", "echo", "--", exe, "__proc", "echo"],
    ));
    (served, socket, token_file.to_str().unwrap().to_owned())
}

/// `hostmux send echo hi --timeout 0`, the issue's own repro: one request
/// whose reply nobody waits for. Before the delivery rules, echo answered
/// the notice its reply came back as, the host answered that, and the two
/// bounced ~800,000 frames in 2 s. Now echo's counters stop at once.
#[test]
fn a_reply_nobody_waits_for_does_not_start_a_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (served, socket, token) = serve_with_echo(dir.path(), &["--half-close-linger", "0s"]);
    let sent = run(
        &socket,
        &[
            "send",
            "echo",
            "hi",
            "--timeout",
            "0",
            "--frontend",
            &served.frontend,
            "--token-file",
            &token,
        ],
    );
    stdout(&sent);
    wait_for_echo(&socket, 1);
    assert_bounded(&socket, 1);
}

/// Many replies whose client is gone: a client sends `REQUESTS` frames to
/// echo and closes its socket at once (no linger), so most replies find no
/// client and come back to echo as `NoSuchProc` notices. Echo must not
/// answer them, and whatever it sends back to the notices' sender (the
/// service proc) is consumed: the counters settle within 2x the requests.
/// (Whether a reply outruns the close is up to the scheduler; the
/// simulation and the host's own tests drive that path deterministically.)
#[test]
fn replies_to_a_vanished_client_do_not_loop() {
    const REQUESTS: u64 = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (served, socket, _token) = serve_with_echo(dir.path(), &["--half-close-linger", "0s"]);
    let limits = Limits::default();
    let addr = served.frontend.trim_start_matches("tcp:").to_owned();
    let name = "gone";
    let mut stream = TcpStream::connect(&addr).expect("connect to the frontend");
    let mut out = vec![0; 512];
    let len = encode_hello(&mut out, "service", name, b"s3cret", &limits).expect("hello");
    out.truncate(len);
    for id in 1..=REQUESTS {
        let header = FrameHeader {
            sender: Sender::Client { name },
            ..FrameHeader::data("echo", id)
        };
        encode_frame_to_vec(&mut out, &header, b"ping", &limits).expect("encode");
    }
    stream.write_all(&out).expect("send");
    // Closed with unread data (the hello ack): the host may see a reset and
    // drop what it has not read yet, so echo gets at most REQUESTS.
    drop(stream);
    wait_for_echo(&socket, 1);
    assert_bounded(&socket, REQUESTS);
}

/// Waits until echo has answered at least `answers` frames and its counters
/// have stopped moving between two `ps` rounds; returns them. A loop never
/// stops moving, so it fails here at the deadline.
fn wait_for_echo(socket: &Path, answers: u64) -> (u64, u64) {
    let deadline = Instant::now() + DEADLINE;
    let mut last = (0, 0);
    loop {
        let now = echo_counters(socket);
        if now.1 >= answers && now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "echo's counters never settled (frames in, out): {now:?}"
        );
        last = now;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Echo never exceeds two frames in and two out per request (each request
/// and at most one notice; each reply and at most one frame about a
/// notice), plus its agent's answer to the host's readiness ping. A loop ran
/// at hundreds of thousands of frames a second, so any of these samples
/// would show it.
fn assert_bounded(socket: &Path, requests: u64) {
    for _ in 0..5 {
        let (frames_in, frames_out) = echo_counters(socket);
        assert!(
            frames_in <= 2 * requests && frames_out <= 2 * requests + 1,
            "echo received {frames_in} and sent {frames_out} frames for {requests} requests"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client from `docs/wire.md`: hello, 100 requests to echo, shutdown of
/// its write side, then it reads until the host closes. Every request is
/// answered exactly once before the close.
#[test]
fn a_half_closed_client_gets_every_reply() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A long linger, so closing at the last answer and closing at the linger
    // cannot be confused.
    let (served, _socket, _token) = serve_with_echo(dir.path(), &["--half-close-linger", "60s"]);
    let limits = Limits::default();
    let addr = served.frontend.trim_start_matches("tcp:");
    let mut stream = TcpStream::connect(addr).expect("connect to the frontend");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut out = vec![0; 512];
    let len = encode_hello(&mut out, "service", "halfway", b"s3cret", &limits).expect("hello");
    out.truncate(len);
    const REQUESTS: u64 = 100;
    for id in 1..=REQUESTS {
        let header = FrameHeader {
            sender: Sender::Client { name: "halfway" },
            ..FrameHeader::data("echo", id)
        };
        encode_frame_to_vec(&mut out, &header, &id.to_le_bytes(), &limits).expect("encode");
    }
    stream.write_all(&out).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let started = Instant::now();
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("read until the host closes");
    let mut decoder = FrameDecoder::new(limits);
    decoder.feed(&received);
    let mut answered = vec![0u32; REQUESTS as usize + 1];
    let mut acks = 0;
    while let Some(frame) = decoder.next_frame().expect("well-formed frames") {
        if hostmux_wire::is_hello_ack(&frame) {
            acks += 1;
            continue;
        }
        assert_eq!(frame.kind(), FrameKind::Data, "a reply, not a notice");
        let id = frame.message_id();
        assert_eq!(frame.payload(), id.to_le_bytes());
        answered[id as usize] += 1;
    }
    assert_eq!(acks, 1);
    assert!(
        answered[1..].iter().all(|&n| n == 1),
        "every request answered exactly once: {answered:?}"
    );
    // The host closed once everything was answered, not at the linger.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "closed after {:?}",
        started.elapsed()
    );
}

/// One-way sends to a proc that never answers: the host keeps each
/// half-closed connection (and its client name) for the linger, waiting for
/// answers that will not come; the next `send` must not be refused for its
/// name.
#[test]
fn one_way_sends_follow_each_other_while_the_host_lingers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (served, socket, token) = serve_with_echo(dir.path(), &["--half-close-linger", "60s"]);
    let exe = env!("CARGO_BIN_EXE_hostmux");
    stdout(&run(
        &socket,
        &["spawn", "sink", "--", exe, "__proc", "sink"],
    ));
    for n in 0..3 {
        let sent = run(
            &socket,
            &[
                "send",
                "sink",
                &format!("one-way {n}"),
                "--timeout",
                "0",
                "--frontend",
                &served.frontend,
                "--token-file",
                &token,
            ],
        );
        stdout(&sent);
    }
}
