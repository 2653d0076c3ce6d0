//! `Host::serve_metrics`: a real host with an echo proc, scraped with a
//! plain `std::net::TcpStream`. The series must show exactly what went
//! through, and a garbage request must get a 400 without hurting the data
//! plane.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

use hostmux_host::metrics::MAX_REQUEST_BYTES;
use hostmux_host::{ConnClass, FrontendKind, HostConfig};
use hostmux_lifecycle::TerminalStatus;
use hostmux_wire::{FrameKind, UndeliverableReason};

use crate::support::{echo_proc, every_frontend, free_port, serve, Client, WAIT};

/// Sends `request` on a fresh connection and reads the whole response
/// (the endpoint closes after one).
async fn scrape(addr: SocketAddr, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(&request).expect("write the request");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .expect("the whole response, then end of stream, within the wait");
        String::from_utf8(response).expect("a text response")
    })
    .await
    .unwrap()
}

async fn get_metrics(addr: SocketAddr) -> String {
    let response = scrape(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n".to_vec(),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{response}"
    );
    response
}

/// The value of the sample `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    let line = text
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"));
    line[prefix.len()..]
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

async fn scrapes_count_what_went_through_echo(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let requested: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addr = host.serve_metrics(requested).await.unwrap();
    assert_eq!(addr, requested);

    let mut client = Client::connect(&host, "c").await;
    // A second client of the same name is refused (and counted).
    assert!(Client::connect_with_token(&host, "c", b"").await.is_none());
    for id in 1..=5 {
        client.send("echo", id, b"hello").await;
    }
    for _ in 0..5 {
        assert_eq!(client.recv().await.payload, b"hello");
    }
    // A frame above the zero-copy threshold (64 KiB) is read straight into
    // echo's ring, and counted as such.
    let large = vec![7u8; 256 << 10];
    client.send("echo", 8, &large).await;
    assert_eq!(client.recv().await.payload, large);
    // One frame for nobody and one too large for echo's 1 MiB ring: both
    // come back as notices and are counted by reason.
    client.send("nobody", 6, b"x").await;
    client.send("echo", 7, &vec![0; 2 << 20]).await;
    for reason in [
        UndeliverableReason::NoSuchProc,
        UndeliverableReason::Oversized,
    ] {
        let notice = client.recv().await;
        assert_eq!(notice.kind, FrameKind::Undeliverable);
        assert_eq!(notice.undeliverable().reason, reason);
    }

    let text = get_metrics(addr).await;
    let echo = |name: &str| sample(&text, &format!("{name}{{proc=\"echo\"}}"));
    assert_eq!(echo("hostmux_proc_accepted_frames_total"), 6);
    assert_eq!(echo("hostmux_proc_sent_frames_total"), 6);
    assert_eq!(echo("hostmux_proc_delivered_frames_total"), 6);
    assert_eq!(echo("hostmux_proc_zero_copy_frames_total"), 1);
    assert!(echo("hostmux_proc_zero_copy_bytes_total") > large.len() as u64);
    assert_eq!(echo("hostmux_proc_zero_copy_moved_back_frames_total"), 0);
    assert_eq!(
        sample(
            &text,
            "hostmux_proc_returned_frames_total{proc=\"echo\",reason=\"Oversized\"}"
        ),
        1
    );
    assert_eq!(echo("hostmux_proc_inbound_ring_capacity_bytes"), 1 << 20);
    assert_eq!(
        sample(&text, "hostmux_proc_state{proc=\"echo\",state=\"ready\"}"),
        1
    );
    // The same numbers `hostmux stats` reads.
    let stats = host.stats().await.unwrap();
    let echo_stats = stats.proc("echo").unwrap();
    assert_eq!(
        echo("hostmux_proc_accepted_bytes_total"),
        echo_stats.bytes_in
    );
    assert_eq!(echo("hostmux_proc_sent_bytes_total"), echo_stats.bytes_out);

    let client_class = |name: &str| sample(&text, &format!("{name}{{class=\"client\"}}"));
    assert_eq!(client_class("hostmux_conn_accepted_frames_total"), 8);
    assert_eq!(client_class("hostmux_conn_delivered_frames_total"), 6);
    assert_eq!(client_class("hostmux_connections_open"), 1);
    assert_eq!(
        sample(
            &text,
            "hostmux_conn_returned_frames_total{class=\"client\",reason=\"NoSuchProc\"}"
        ),
        1
    );
    assert_eq!(sample(&text, "hostmux_spawns_total{result=\"ready\"}"), 1);
    assert_eq!(
        sample(&text, "hostmux_frontend_connections_accepted_total"),
        2
    );
    assert_eq!(
        sample(
            &text,
            "hostmux_connections_refused_total{reason=\"name_taken\"}"
        ),
        1
    );
    assert_eq!(client_class("hostmux_connections_opened_total"), 1);

    // Garbage gets a 400 and a close; the data plane goes on.
    let garbage = scrape(addr, b"\x16\x03\x01\x00\xff garbage\r\n\r\n".to_vec()).await;
    assert!(
        garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{garbage}"
    );
    let wrong_path = scrape(addr, b"GET /admin HTTP/1.1\r\n\r\n".to_vec()).await;
    assert!(wrong_path.starts_with("HTTP/1.1 404 "), "{wrong_path}");
    // A head that never ends within the bound is refused, not buffered.
    let endless = scrape(addr, vec![b'a'; MAX_REQUEST_BYTES]).await;
    assert!(endless.starts_with("HTTP/1.1 431 "), "{endless}");
    client.send("echo", 9, b"still there").await;
    assert_eq!(client.recv().await.payload, b"still there");
    let text = get_metrics(addr).await;
    assert_eq!(
        sample(&text, "hostmux_proc_accepted_frames_total{proc=\"echo\"}"),
        7
    );

    // A closed connection's frames stay in its class's totals (they only
    // grow), and an ended proc is counted by how it ended.
    drop(client);
    let deadline = tokio::time::Instant::now() + WAIT;
    while host.stats().await.unwrap().conn_classes[ConnClass::Client as usize].open > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the host never saw the client close"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let status = host.terminate_proc("echo", WAIT).await.unwrap();
    let how = match status {
        TerminalStatus::Exited { .. } => "exited",
        TerminalStatus::Signaled { .. } => "signaled",
        TerminalStatus::Failed { .. } => "failed",
    };
    let text = get_metrics(addr).await;
    let client_class = |name: &str| sample(&text, &format!("{name}{{class=\"client\"}}"));
    assert_eq!(client_class("hostmux_connections_open"), 0);
    assert_eq!(client_class("hostmux_connections_closed_total"), 1);
    assert_eq!(client_class("hostmux_conn_accepted_frames_total"), 9);
    assert_eq!(client_class("hostmux_conn_delivered_frames_total"), 7);
    assert_eq!(
        sample(&text, &format!("hostmux_proc_exits_total{{how=\"{how}\"}}")),
        1
    );
    assert_eq!(
        sample(
            &text,
            &format!("hostmux_proc_state{{proc=\"echo\",state=\"{how}\"}}")
        ),
        1
    );
}
every_frontend!(scrapes_count_what_went_through_echo);
