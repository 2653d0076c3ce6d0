//! `serve --metrics` and `stats --json` from outside: frames sent with
//! `hostmux send` to an echo proc show up, with exactly their numbers, in
//! the Prometheus series and in the JSON of `stats` and `ps`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use crate::serve::{echo_json, run, stdout, Served, DEADLINE};

/// The `IP:PORT` of the metrics endpoint from `serve`'s serving line.
fn metrics_addr(serving_line: &str) -> String {
    let start = serving_line
        .find("metrics on http://")
        .unwrap_or_else(|| panic!("no metrics address in {serving_line:?}"))
        + "metrics on http://".len();
    let rest = &serving_line[start..];
    rest[..rest.find("/metrics").expect("the /metrics path")].to_owned()
}

/// One HTTP exchange on a plain TCP connection: the whole response.
fn http(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request).expect("write the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the response, then end of stream");
    response
}

/// The value of the sample `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    let line = text
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"));
    line[prefix.len()..].parse().expect("an integer sample")
}

#[test]
fn metrics_and_stats_json_count_what_was_sent_to_echo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    // A 64 KiB ring, so that a payload a command line can carry is too
    // large for it.
    let served = Served::start_with(
        &socket,
        &token_file,
        &["--metrics", "127.0.0.1:0", "--inbound-ring-bytes", "64K"],
    );
    let addr = metrics_addr(&served.serving_line);
    let exe = env!("CARGO_BIN_EXE_hostmux");
    stdout(&run(
        &socket,
        &["spawn", "echo", "--", exe, "__proc", "echo"],
    ));
    // The host's readiness ping to echo's agent, and the agent's answer,
    // went through echo's rings already: count from here.
    let before = echo_json(&socket, &["stats", "echo", "--json"]);
    let (accepted_before, delivered_before) = (
        before["accepted"].as_u64().expect("accepted"),
        before["delivered"].as_u64().expect("delivered"),
    );
    let token = token_file.to_str().unwrap();
    let send = |payload: &str| {
        let frontend = served.frontend.as_str();
        run(
            &socket,
            &[
                "send",
                "echo",
                payload,
                "--frontend",
                frontend,
                "--token-file",
                token,
            ],
        )
    };
    for i in 0..3 {
        let payload = format!("hello {i}");
        assert_eq!(stdout(&send(&payload)).trim(), payload);
    }
    let oversized = send(&"x".repeat(100 << 10));
    assert_eq!(
        oversized.status.code(),
        Some(4),
        "returned as undeliverable"
    );

    let response = http(&addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let echo = |name: &str| sample(&response, &format!("{name}{{proc=\"echo\"}}"));
    assert_eq!(
        echo("hostmux_proc_accepted_frames_total"),
        accepted_before + 3
    );
    assert_eq!(
        echo("hostmux_proc_delivered_frames_total"),
        delivered_before + 3
    );
    assert_eq!(
        sample(
            &response,
            "hostmux_proc_returned_frames_total{proc=\"echo\",reason=\"Oversized\"}"
        ),
        1
    );
    assert_eq!(echo("hostmux_proc_inbound_ring_capacity_bytes"), 64 << 10);
    assert_eq!(
        sample(&response, "hostmux_spawns_total{result=\"ready\"}"),
        1
    );

    // `stats --json` (all procs and one) carries the same numbers.
    for args in [
        &["stats", "--json"][..],
        &["stats", "echo", "--json"],
        &["ps", "--json"],
    ] {
        let json = echo_json(&socket, args);
        assert_eq!(json["accepted"], accepted_before + 3, "{args:?}: {json}");
        assert_eq!(json["delivered"], delivered_before + 3, "{args:?}: {json}");
        assert_eq!(json["returned"], 1, "{args:?}: {json}");
        assert_eq!(
            json["returned_by_reason"]["Oversized"], 1,
            "{args:?}: {json}"
        );
        assert_eq!(
            json["returned_by_reason"]["NoSuchProc"], 0,
            "{args:?}: {json}"
        );
    }

    // A malformed request gets a 400; the data plane goes on.
    let bad = http(&addr, b"BREW /metrics HTCPCP/1.0\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");
    assert_eq!(stdout(&send("after")).trim(), "after");
    let response = http(&addr, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(
        sample(
            &response,
            "hostmux_proc_accepted_frames_total{proc=\"echo\"}"
        ),
        accepted_before + 4
    );
}

#[test]
fn a_taken_metrics_address_is_a_usage_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = crate::serve::hostmux()
        .args(["serve", "--frontend", "tcp:127.0.0.1:0", "--metrics", &addr])
        .arg("--control-socket")
        .arg(dir.path().join("control.sock"))
        .env("HOSTMUX_LOG", "error")
        .output()
        .expect("run hostmux serve");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}")) && stderr.contains("--metrics"),
        "{stderr}"
    );
}
