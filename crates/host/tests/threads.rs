//! Several host I/O threads (`HostConfig::io_threads = 2`): connections
//! spread across them, client names unique host-wide, control requests
//! answered on the thread that received them, a proc filed on every
//! thread (one lane each) and removed from every thread, stats merged.

use hostmux_host::{ControlClient, FrontendKind, HostConfig};

use crate::support::{both_frontends, echo_proc, serve, Client};

const RING: usize = 1 << 16;

fn two_threads() -> HostConfig {
    HostConfig {
        io_threads: 2,
        inbound_ring_bytes: RING,
        outbound_ring_bytes: RING,
        token: Some("t0ken".to_owned()),
        ..HostConfig::default()
    }
}

/// The I/O thread serving each open client, by name.
async fn threads_of(host: &crate::support::TestHost) -> Vec<(String, u32)> {
    let stats = host.stats().await.unwrap();
    let mut threads: Vec<_> = stats
        .conns
        .iter()
        .map(|c| (c.name.clone(), c.io_thread))
        .collect();
    threads.sort();
    threads
}

async fn clients_spread_across_threads_and_a_name_is_unique_across_them(kind: FrontendKind) {
    let (host, serving) = serve(kind, two_threads()).await;
    assert_eq!(serving.io_threads(), 2);
    // Round robin: a on 0, b on 1, c on 0; a second "a" lands on 1,
    // where the host-wide registry refuses it.
    let _a = Client::connect(&host, "a").await;
    let _b = Client::connect(&host, "b").await;
    let _c = Client::connect(&host, "c").await;
    assert_eq!(
        threads_of(&host).await,
        [
            ("a".to_owned(), 0),
            ("b".to_owned(), 1),
            ("c".to_owned(), 0)
        ]
    );
    let again = Client::connect_with_token(&host, "a", b"t0ken").await;
    assert!(again.is_none(), "a name another thread holds is refused");
    let stats = host.stats().await.unwrap();
    assert_eq!(stats.conn_limits.names_taken, 1);
    assert_eq!(stats.conn_limits.accepted, 4, "both threads' admissions");
    // The next lands on thread 0, which refuses thread 1's "b" too.
    let b_again = Client::connect_with_token(&host, "b", b"t0ken").await;
    assert!(
        b_again.is_none(),
        "refused on thread 0 for thread 1's client"
    );
    let stats = host.stats().await.unwrap();
    assert_eq!(stats.conn_limits.names_taken, 2);
}
both_frontends!(clients_spread_across_threads_and_a_name_is_unique_across_them);

async fn a_control_request_on_the_second_thread_is_answered_there(kind: FrontendKind) {
    let (host, _serving) = serve(kind, two_threads()).await;
    let _first = Client::connect(&host, "first").await;
    let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
    let client = hostmux_host::Client::connect_tcp(&addr, "ctl", Some("t0ken"), "service")
        .await
        .unwrap();
    assert_eq!(
        threads_of(&host).await,
        [("ctl".to_owned(), 1), ("first".to_owned(), 0)]
    );
    let mut control = ControlClient::over(client, "service");
    let listed = control.list().await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}
both_frontends!(a_control_request_on_the_second_thread_is_answered_there);

async fn a_proc_has_a_lane_on_every_thread_and_leaves_every_thread(kind: FrontendKind) {
    let (host, _serving) = serve(kind, two_threads()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let stats = host.stats().await.unwrap();
    assert_eq!(
        stats.procs.len(),
        1,
        "one entry per proc: {:?}",
        stats.procs
    );
    let echo = &stats.procs[0];
    assert_eq!(echo.inbound_capacity, 2 * RING as u64, "two lanes");
    assert!(echo.ready, "ready on both threads");

    // A client on thread 0 reaches it through lane 0.
    let mut client = Client::connect(&host, "cli").await;
    client.send("echo", 7, b"hi").await;
    let reply = client.recv().await;
    assert_eq!(
        (reply.message_id, reply.payload.as_slice()),
        (7, &b"hi"[..])
    );

    host.terminate_proc("echo", std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let stats = host.stats().await.unwrap();
    assert!(stats.procs.is_empty(), "removed from both threads");
    let gone: Vec<_> = stats.gone_procs.iter().map(|p| &p.name).collect();
    assert_eq!(gone, ["echo"], "merged into one entry");
    assert_eq!(stats.gone_procs[0].frames_in, 1);
    // A new incarnation gets a slot on both threads again.
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    client.send("echo", 8, b"again").await;
    let reply = client.recv().await;
    assert_eq!(reply.message_id, 8);
}
both_frontends!(a_proc_has_a_lane_on_every_thread_and_leaves_every_thread);

#[test]
fn zero_io_threads_is_refused_by_name() {
    crate::support::runtime().block_on(async {
        let config = HostConfig {
            io_threads: 0,
            ..HostConfig::default()
        };
        let served = hostmux_host::Host::serve(
            hostmux_lifecycle::LocalProcManager::new(),
            hostmux_wire::Addr::tcp("127.0.0.1", 0).unwrap(),
            config,
        )
        .await;
        match served {
            Err(e) => assert_eq!(e.to_string(), "io_threads must be between 1 and 64, not 0"),
            Ok(_) => panic!("0 I/O threads accepted"),
        }
    });
}
