//! Several host I/O threads (`HostConfig::io_threads = 2`): connections
//! spread across them, client names unique host-wide, control requests
//! answered on the thread that received them, a proc filed on every
//! thread (one lane each) and removed from every thread, stats merged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hostmux_host::{
    ChildRings, ControlClient, FrontendKind, Host, HostConfig, LocalProc, ProcEndpoint, Received,
    ServeHandle,
};
use hostmux_lifecycle::LocalProcManager;
use hostmux_wire::{Addr, FrameKind, UndeliverableReason};

use crate::support::{assert_conn_adds_up, every_frontend, reply, Client, Frame, TestHost, WAIT};

/// Serves on loopback with `config` as it is (the suite's `serve` pins
/// one I/O thread).
async fn serve(kind: FrontendKind, config: HostConfig) -> (TestHost, ServeHandle) {
    let config = HostConfig {
        frontend: kind,
        ..config
    };
    let (host, handle) = Host::serve(
        LocalProcManager::new(),
        Addr::tcp("127.0.0.1", 0).unwrap(),
        config,
    )
    .await
    .unwrap();
    assert_eq!(handle.frontend(), kind);
    (host, handle)
}

/// An in-process proc serving each of its lanes on a blocking thread of
/// its own ([`ProcEndpoint`] serves one lane): `step(lane, endpoint,
/// frame)` for every frame, a reply going out on the lane it came in on.
fn lane_proc<S>(step: S) -> LocalProc
where
    S: Fn(usize, &mut ProcEndpoint, Frame) + Send + Sync + 'static,
{
    let step = Arc::new(step);
    LocalProc::new(move |mut cx, rings| async move {
        let ChildRings {
            name,
            lanes,
            proc_doorbell,
            limits,
            id,
            service_name,
        } = rings;
        let mut endpoints = Vec::with_capacity(lanes.len());
        for lane in lanes {
            let one = ChildRings {
                name: name.clone(),
                lanes: vec![lane],
                proc_doorbell: proc_doorbell.try_clone().map_err(|e| e.to_string())?,
                limits,
                id: id.clone(),
                service_name: service_name.clone(),
            };
            endpoints.push(one.attach().map_err(|e| e.to_string())?);
        }
        cx.report_ready();
        let workers: Vec<_> = endpoints
            .into_iter()
            .enumerate()
            .map(|(lane, mut endpoint)| {
                let step = step.clone();
                tokio::task::spawn_blocking(move || loop {
                    match endpoint.recv(Duration::from_secs(60), Frame::from_view) {
                        Ok(Received::Frame(frame)) => step(lane, &mut endpoint, frame),
                        Ok(Received::TimedOut) => {}
                        Ok(Received::Closed) | Err(_) => return,
                    }
                })
            })
            .collect();
        let all = async {
            for worker in workers {
                let _ = worker.await;
            }
        };
        tokio::select! {
            () = all => Ok(()),
            () = cx.stopped() => Ok(()),
        }
    })
}

/// Echoes every data frame on the lane it came in on.
fn echo() -> LocalProc {
    lane_proc(|_, endpoint, frame| {
        if frame.kind == FrameKind::Data {
            reply(endpoint, &frame, &frame.payload);
        }
    })
}

/// Waits (bounded) until the host's stats satisfy `ready`.
async fn stats_until(
    host: &TestHost,
    what: &str,
    ready: impl Fn(&hostmux_host::HostStats) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        if ready(&host.stats().await.unwrap()) {
            return;
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

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
async fn threads_of(host: &TestHost) -> Vec<(String, u32)> {
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
every_frontend!(clients_spread_across_threads_and_a_name_is_unique_across_them);

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
every_frontend!(a_control_request_on_the_second_thread_is_answered_there);

async fn a_proc_has_a_lane_on_every_thread_and_leaves_every_thread(kind: FrontendKind) {
    let (host, _serving) = serve(kind, two_threads()).await;
    host.spawn("echo", echo()).await.unwrap();
    let stats = host.stats().await.unwrap();
    assert_eq!(
        stats.procs.len(),
        1,
        "one entry per proc: {:?}",
        stats.procs
    );
    let entry = &stats.procs[0];
    assert_eq!(entry.inbound_capacity, 2 * RING as u64, "two lanes");
    assert!(entry.ready, "ready on both threads");

    // A client on thread 0 reaches it (through lane 0).
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
    host.spawn("echo", echo()).await.unwrap();
    client.send("echo", 8, b"again").await;
    let reply = client.recv().await;
    assert_eq!(reply.message_id, 8);
}
every_frontend!(a_proc_has_a_lane_on_every_thread_and_leaves_every_thread);

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

async fn two_clients_on_two_threads_pipeline_to_one_proc_in_order(kind: FrontendKind) {
    const FRAMES: u64 = 300;
    let (host, _serving) = serve(kind, two_threads()).await;
    host.spawn("echo", echo()).await.unwrap();
    let a = Client::connect(&host, "a").await;
    let b = Client::connect(&host, "b").await;
    assert_eq!(
        threads_of(&host).await,
        [("a".to_owned(), 0), ("b".to_owned(), 1)]
    );
    // Both pipeline at once: every frame is sent before any reply is read.
    let run = |mut client: Client, name: &'static str| async move {
        let mut batch = Vec::new();
        for id in 1..=FRAMES {
            client.encode("echo", id, format!("{name}{id}").as_bytes(), &mut batch);
        }
        client.write_all(&batch).await;
        let mut ids = Vec::with_capacity(FRAMES as usize);
        for _ in 0..FRAMES {
            let reply = client.recv().await;
            assert_eq!(reply.kind, FrameKind::Data, "{reply:?}");
            assert_eq!(
                reply.payload,
                format!("{name}{}", reply.message_id).into_bytes()
            );
            ids.push(reply.message_id);
        }
        (client, ids)
    };
    let ((_a, a_ids), (_b, b_ids)) = tokio::join!(run(a, "a"), run(b, "b"));
    let in_order: Vec<u64> = (1..=FRAMES).collect();
    assert_eq!(a_ids, in_order, "a: each id once, in order");
    assert_eq!(b_ids, in_order, "b: each id once, in order");

    let stats = host.stats().await.unwrap();
    let entry = stats.procs.iter().find(|p| p.name == "echo").unwrap();
    assert_eq!(entry.frames_in, 2 * FRAMES);
    assert_eq!(entry.frames_out, 2 * FRAMES);
    assert_eq!(entry.outbound_delivered, 2 * FRAMES);
    for conn in &stats.conns {
        assert_conn_adds_up(conn);
        assert_eq!(
            (conn.accepted, conn.delivered, conn.frames_out),
            (FRAMES, FRAMES, FRAMES)
        );
    }
    let clients = &stats.conn_classes[hostmux_host::ConnClass::Client as usize];
    assert_eq!((clients.open, clients.totals.accepted), (2, 2 * FRAMES));
}
every_frontend!(two_clients_on_two_threads_pipeline_to_one_proc_in_order);

/// On `to:NAME`, sends `from relay` to client NAME on the lane the request
/// came in on, then answers the request `sent`; a notice that comes back
/// is reported to client `a` as `notice:ID`.
fn relay() -> LocalProc {
    lane_proc(|_, endpoint, frame| match frame.kind {
        FrameKind::Data => {
            let to = std::str::from_utf8(&frame.payload)
                .unwrap()
                .strip_prefix("to:")
                .unwrap()
                .to_owned();
            let onward = Frame {
                sender: to,
                sender_is_client: true,
                message_id: 1000 + frame.message_id,
                ..frame.clone()
            };
            reply(endpoint, &onward, b"from relay");
            reply(endpoint, &frame, b"sent");
        }
        FrameKind::Undeliverable => {
            let to_a = Frame {
                sender: "a".to_owned(),
                sender_is_client: true,
                ..frame.clone()
            };
            reply(
                endpoint,
                &to_a,
                format!("notice:{}", frame.message_id).as_bytes(),
            );
        }
        _ => {}
    })
}

async fn a_proc_reaches_the_other_threads_client_and_hears_of_one_gone(kind: FrontendKind) {
    let (host, _serving) = serve(kind, two_threads()).await;
    host.spawn("relay", relay()).await.unwrap();
    let mut a = Client::connect(&host, "a").await;
    let mut b = Client::connect(&host, "b").await;
    assert_eq!(
        threads_of(&host).await,
        [("a".to_owned(), 0), ("b".to_owned(), 1)]
    );
    // a (thread 0) asks the relay, which sends on lane 0: thread 0 hands
    // the frame to thread 1, b's.
    a.send("relay", 1, b"to:b").await;
    let onward = b.recv().await;
    assert_eq!(
        (
            onward.message_id,
            onward.sender.as_str(),
            onward.payload.as_slice()
        ),
        (1001, "relay", &b"from relay"[..])
    );
    assert_eq!(a.recv().await.payload, b"sent");

    // c lands on thread 0, d on thread 1; d leaves.
    let _c = Client::connect(&host, "c").await;
    let d = Client::connect(&host, "d").await;
    drop(d);
    stats_until(&host, "d's connection to close", |s| {
        s.conns.iter().all(|c| c.name != "d")
    })
    .await;
    a.send("relay", 2, b"to:d").await;
    assert_eq!(a.recv().await.payload, b"sent");
    let notice = a.recv().await;
    assert_eq!(notice.payload, b"notice:1002", "the relay was told once");

    let stats = host.stats().await.unwrap();
    let relay = stats.procs.iter().find(|p| p.name == "relay").unwrap();
    assert_eq!(relay.frames_out, 5, "two onward, two answers, one report");
    assert_eq!(
        relay.outbound_returned.get(UndeliverableReason::NoSuchProc),
        1
    );
    assert_eq!(
        relay.outbound_delivered + relay.outbound_returned.total() + relay.outbound_dropped.total(),
        relay.frames_out
    );
}
every_frontend!(a_proc_reaches_the_other_threads_client_and_hears_of_one_gone);

async fn frames_queued_on_both_lanes_come_back_once_when_the_proc_exits(kind: FrontendKind) {
    const EACH: u64 = 5;
    let (host, _serving) = serve(kind, two_threads()).await;
    // Never reads: frames stay in its lanes' inbound rings.
    let sink = LocalProc::new(|mut cx, _rings| async move {
        cx.report_ready();
        cx.stopped().await;
        Ok(())
    });
    host.spawn("sink", sink).await.unwrap();
    let mut a = Client::connect(&host, "a").await;
    let mut b = Client::connect(&host, "b").await;
    for id in 1..=EACH {
        a.send("sink", id, b"x").await;
        b.send("sink", id, b"y").await;
    }
    stats_until(&host, "both lanes to hold the frames", |s| {
        s.procs
            .iter()
            .any(|p| p.name == "sink" && p.frames_in == 2 * EACH)
    })
    .await;
    host.kill_proc("sink").await.unwrap();
    for client in [&mut a, &mut b] {
        let mut ids = Vec::new();
        for _ in 0..EACH {
            let notice = client.recv().await;
            assert_eq!(
                notice.undeliverable().reason,
                UndeliverableReason::ProcExited
            );
            ids.push(notice.message_id);
        }
        ids.sort();
        assert_eq!(ids, (1..=EACH).collect::<Vec<_>>(), "each once");
    }
    let stats = host.stats().await.unwrap();
    let gone = stats.gone_procs.iter().find(|p| p.name == "sink").unwrap();
    assert_eq!(gone.left_in_ring, 2 * EACH);
    assert_eq!(
        gone.returned_for.get(UndeliverableReason::ProcExited),
        2 * EACH
    );
    // Nothing more comes: a probe to a name nobody holds is answered
    // next, not a second notice.
    a.send("nobody", 99, b"").await;
    let next = a.recv().await;
    assert_eq!(
        (next.message_id, next.undeliverable().reason),
        (99, UndeliverableReason::NoSuchProc)
    );
}
every_frontend!(frames_queued_on_both_lanes_come_back_once_when_the_proc_exits);

async fn clients_on_both_threads_reach_a_proc_of_another_two_thread_host(kind: FrontendKind) {
    const EACH: u64 = 20;
    let ports = (crate::support::free_port(), crate::support::free_port());
    let a_addr = Addr::tcp("127.0.0.1", ports.0).unwrap();
    let b_addr = Addr::tcp("127.0.0.1", ports.1).unwrap();
    let peered = |peer: &Addr| HostConfig {
        peers: vec![peer.clone()],
        peer_token: Some("shared-by-peers".to_owned()),
        ..two_threads()
    };
    let serve_at = |addr: Addr, config: HostConfig| async move {
        Host::serve(
            LocalProcManager::new(),
            addr,
            HostConfig {
                frontend: kind,
                ..config
            },
        )
        .await
        .unwrap()
    };
    let (host_a, _serving_a) = serve_at(a_addr.clone(), peered(&b_addr)).await;
    let (host_b, _serving_b) = serve_at(b_addr.clone(), peered(&a_addr)).await;
    host_b.spawn("echo", echo()).await.unwrap();
    let far = host_b.addr().to_string();

    // One client per thread of host A; each thread dials its own link, and
    // the replies come back over links host B dials, accepted on whichever
    // thread of host A: handed to the client's thread where needed.
    let mut first = Client::connect(&host_a, "first").await;
    let mut second = Client::connect(&host_a, "second").await;
    assert_eq!(
        threads_of(&host_a).await,
        [("first".to_owned(), 0), ("second".to_owned(), 1)]
    );
    for id in 1..=EACH {
        for client in [&mut first, &mut second] {
            client.send_to("echo", &far, id, b"far away").await;
            let reply = client.recv().await;
            assert_eq!(
                (reply.kind, reply.message_id),
                (FrameKind::Data, id),
                "{reply:?}"
            );
            assert_eq!(reply.payload, b"far away");
        }
    }
    let stats = host_b.stats().await.unwrap();
    let entry = stats.procs.iter().find(|p| p.name == "echo").unwrap();
    assert_eq!(
        (entry.frames_in, entry.outbound_delivered),
        (2 * EACH, 2 * EACH)
    );
    // Each thread of host A dialled its own link to B: one entry, two dials.
    let links = host_a.stats().await.unwrap().links;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        (links[0].state.as_str(), links[0].dials),
        ("up", 2),
        "{links:?}"
    );
}
every_frontend!(clients_on_both_threads_reach_a_proc_of_another_two_thread_host);

async fn a_unix_socket_frontend_spreads_its_clients_too(kind: FrontendKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frontend.sock");
    let addr: Addr = format!("unix:{}", path.display()).parse().unwrap();
    let (host, _serving) = Host::serve(
        LocalProcManager::new(),
        addr,
        HostConfig {
            frontend: kind,
            ..two_threads()
        },
    )
    .await
    .unwrap();
    host.spawn("echo", echo()).await.unwrap();
    let mut clients = Vec::new();
    for name in ["u0", "u1"] {
        let client = hostmux_host::Client::connect_unix(&path, name, Some("t0ken"), "service")
            .await
            .unwrap();
        clients.push(client);
    }
    assert_eq!(
        threads_of(&host).await,
        [("u0".to_owned(), 0), ("u1".to_owned(), 1)]
    );
    for (id, client) in clients.iter_mut().enumerate() {
        let id = id as u64 + 1;
        client.send("echo", 0, id, b"over unix").await.unwrap();
        let echo = tokio::time::timeout(WAIT, client.recv())
            .await
            .unwrap()
            .unwrap()
            .expect("the echo, not end of stream");
        assert_eq!(
            (echo.message_id, echo.payload.as_slice()),
            (id, &b"over unix"[..])
        );
    }
}
every_frontend!(a_unix_socket_frontend_spreads_its_clients_too);
