//! In-process procs (`boot_from`): receive, reply, batch, reserve, agent,
//! stop, close and backpressure, with the test as the host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hostmux_proc::{boot_from, BatchRecv, ProcError, Recv};
use hostmux_wire::{AgentRefusal, AgentRequest, AgentResponse, Sender};

use crate::support::{expect_echo, TestHost, PATIENCE};

const RING: usize = 64 * 1024;

fn client(name: &str) -> Sender<'_> {
    Sender::Client { name }
}

#[test]
fn reply_goes_to_the_sender_with_port_and_message_id() {
    let (mut host, params) = TestHost::local("echo", RING, false);
    let mut proc = boot_from(params).unwrap();
    host.deliver_data(client("cli"), 7, 42, b"hello");
    host.deliver_data(
        Sender::Proc {
            addr: "tcp:10.0.0.9:7000",
            name: "far",
        },
        9,
        43,
        b"",
    );
    for _ in 0..2 {
        let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
            panic!("expected a message");
        };
        assert_eq!(message.payload().as_ptr() as usize % 16, 0);
        let payload = message.payload();
        message.reply(payload).unwrap();
    }
    expect_echo(&host.expect_frame(), "cli", 7, 42, b"hello", "echo");
    let far = host.expect_frame();
    expect_echo(&far, "far", 9, 43, b"", "echo");
    assert_eq!(far.header.dest_addr, "tcp:10.0.0.9:7000");
    assert_eq!(
        far.header.sender_addr, "",
        "the host fills in its own address"
    );
}

#[test]
fn anonymous_senders_get_no_reply_but_a_typed_error() {
    let (mut host, params) = TestHost::local("echo", RING, false);
    let mut proc = boot_from(params).unwrap();
    host.deliver_data(Sender::Anonymous, 1, 5, b"x");
    let mut message = proc.recv().unwrap().unwrap();
    assert!(matches!(
        message.reply(b"x"),
        Err(ProcError::NoReplyAddress { message_id: 5 })
    ));
}

#[test]
fn recv_times_out_then_reports_a_closed_ring() {
    let (host, params) = TestHost::local("quiet", RING, false);
    let mut proc = boot_from(params).unwrap();
    assert!(matches!(
        proc.recv_timeout(Duration::from_millis(20)).unwrap(),
        Recv::TimedOut
    ));
    assert!(matches!(proc.try_recv().unwrap(), Recv::TimedOut));
    drop(host);
    assert!(matches!(proc.recv_timeout(PATIENCE).unwrap(), Recv::Closed));
    assert!(proc.recv().unwrap().is_none());
}

#[test]
fn closed_ring_still_hands_out_what_is_in_it() {
    let (mut host, params) = TestHost::local("drain", RING, true);
    let mut proc = boot_from(params).unwrap();
    for id in 0..3 {
        host.deliver_data(client("cli"), 1, id, b"left over");
    }
    drop(host);
    let mut seen = 0;
    while let Some(message) = proc.recv().unwrap() {
        assert_eq!(message.message_id(), seen);
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn agent_answers_ping_and_stats_and_refuses_strangers() {
    for proc_doorbell in [false, true] {
        let (mut host, params) = TestHost::local("agent", RING, proc_doorbell);
        let mut proc = boot_from(params).unwrap();
        let worker = std::thread::spawn(move || {
            let mut handled = 0;
            while let Some(mut message) = proc.recv().unwrap() {
                let payload = message.payload();
                message.reply(payload).unwrap();
                handled += 1;
            }
            handled
        });
        assert_eq!(
            host.ask_agent(1, AgentRequest::Ping { nonce: 77 }),
            AgentResponse::Pong { nonce: 77 }
        );
        host.deliver_data(client("cli"), 3, 10, &[1; 100]);
        host.deliver_data(client("cli"), 3, 11, &[2; 50]);
        host.expect_frame();
        host.expect_frame();
        let stats = host.ask_stats(2);
        assert_eq!((stats.frames_in, stats.bytes_in), (2, 150));
        assert_eq!((stats.frames_out, stats.bytes_out), (2, 150));
        assert_eq!(stats.agent_requests, 2);

        // A client cannot stop the proc, nor can a proc with another name.
        host.deliver_agent(client("intruder"), 3, AgentRequest::Stop);
        let refused = host.expect_frame();
        assert_eq!(refused.header.dest_name, "intruder");
        assert_eq!(
            refused.agent_response(),
            AgentResponse::Refused(AgentRefusal::NotFromHost)
        );
        host.deliver_agent(
            Sender::Proc {
                addr: "tcp:10.0.0.1:1",
                name: "service",
            },
            4,
            AgentRequest::Stop,
        );
        assert_eq!(
            host.expect_frame().agent_response(),
            AgentResponse::Refused(AgentRefusal::NotFromHost),
            "a service proc on another host is not this proc's host"
        );
        // Garbage from the host is answered, not obeyed.
        host.deliver_data(
            TestHost::service(),
            hostmux_wire::AGENT_PORT,
            5,
            &[0xff; 16],
        );
        assert_eq!(
            host.expect_frame().agent_response(),
            AgentResponse::Refused(AgentRefusal::Malformed)
        );
        assert_eq!(
            host.ask_agent(6, AgentRequest::Stop),
            AgentResponse::Stopping
        );
        assert_eq!(worker.join().unwrap(), 2, "doorbell {proc_doorbell}");
    }
}

#[test]
fn stop_runs_the_hook_once_and_drains_frames_received_before_it() {
    let (mut host, params) = TestHost::local("stopper", RING, true);
    let mut proc = boot_from(params).unwrap();
    let hook_runs = Arc::new(AtomicUsize::new(0));
    let counter = hook_runs.clone();
    proc.on_stop(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    for id in 0..5 {
        host.deliver_data(client("cli"), 1, id, b"work");
    }
    host.deliver_agent(TestHost::service(), 100, AgentRequest::Stop);
    host.deliver_data(client("cli"), 1, 5, b"after stop");
    host.deliver_agent(TestHost::service(), 101, AgentRequest::Stop);
    let mut handled = Vec::new();
    while let Some(message) = proc.recv().unwrap() {
        handled.push(message.message_id());
    }
    assert_eq!(hook_runs.load(Ordering::SeqCst), 1);
    // Everything in the ring when the stop arrived (and just behind it) was handled.
    assert_eq!(handled, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(
        host.expect_frame().agent_response(),
        AgentResponse::Stopping
    );
    assert_eq!(
        host.expect_frame().agent_response(),
        AgentResponse::Stopping
    );
    assert!(matches!(
        proc.recv_timeout(PATIENCE).unwrap(),
        Recv::Stopped
    ));
}

#[test]
fn batch_receive_hands_out_many_and_publishes_replies_once() {
    let (mut host, params) = TestHost::local("batch", RING, false);
    let mut proc = boot_from(params).unwrap();
    for id in 0..40 {
        host.deliver_data(client("cli"), 2, id, &id.to_le_bytes());
    }
    host.deliver_agent(TestHost::service(), 1000, AgentRequest::Ping { nonce: 1 });
    let mut ids = Vec::new();
    let mut total = 0;
    while total < 40 {
        match proc
            .recv_batch(16, PATIENCE, |mut message| {
                ids.push(message.message_id());
                let payload = message.payload();
                message.reply(payload).unwrap();
            })
            .unwrap()
        {
            BatchRecv::Delivered(n) => {
                assert!((1..=16).contains(&n));
                total += n;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ids, (0..40).collect::<Vec<u64>>());
    let mut pong = false;
    for id in 0..40u64 {
        let mut reply = host.expect_frame();
        if reply.header.dest_port == hostmux_wire::AGENT_PORT {
            assert_eq!(reply.agent_response(), AgentResponse::Pong { nonce: 1 });
            pong = true;
            reply = host.expect_frame();
        }
        expect_echo(&reply, "cli", 2, id, &id.to_le_bytes(), "batch");
    }
    if !pong {
        assert_eq!(
            host.expect_frame().agent_response(),
            AgentResponse::Pong { nonce: 1 }
        );
    }
    assert!(matches!(
        proc.recv_batch(16, Duration::from_millis(10), |_| {})
            .unwrap(),
        BatchRecv::TimedOut
    ));
}

#[test]
fn reserve_serialises_an_rkyv_value_in_place_and_the_host_reads_it_in_place() {
    use hostmux_wire::rkyv;

    #[derive(rkyv::Archive, rkyv::Serialize, Debug, PartialEq)]
    #[rkyv(crate = rkyv)]
    struct Reading {
        sensor: u32,
        values: [u64; 4],
    }

    let (mut host, params) = TestHost::local("writer", RING, false);
    let mut proc = boot_from(params).unwrap();
    let value = Reading {
        sensor: 9,
        values: [1, 2, 3, 4],
    };
    let mut slot = proc.outbox().reserve("reader", 12, 256).unwrap();
    assert_eq!(slot.as_ptr() as usize % 16, 0);
    let written = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(
        &value,
        rkyv::ser::writer::Buffer::from(&mut *slot),
    )
    .unwrap()
    .len();
    slot.commit_len(written);
    proc.outbox().flush().unwrap();

    let frame = host.expect_frame();
    assert_eq!(
        (frame.header.dest_name.as_str(), frame.header.dest_port),
        ("reader", 12)
    );
    assert_eq!(frame.payload.len(), written);
    // Read in place from the ring, as a proc would read its inbound frames.
    host.deliver_data(client("cli"), 1, 1, &frame.payload);
    let message = proc.recv().unwrap().unwrap();
    let archived = rkyv::access::<ArchivedReading, rkyv::rancor::Error>(message.payload()).unwrap();
    assert_eq!(archived.sensor, 9);
    assert_eq!(archived.values[3], 4);
    let stats = proc.stats();
    assert_eq!((stats.frames_out, stats.bytes_out), (1, written as u64));
}

#[test]
fn a_full_outbound_ring_blocks_the_sender_until_the_host_drains_and_loses_nothing() {
    let (mut host, params) = TestHost::local("flood", RING, false);
    let mut proc = boot_from(params).unwrap();
    proc.outbox().set_send_timeout(Duration::from_millis(50));
    let payload = [7u8; 1000];
    let mut sent = 0u64;
    let err = loop {
        match proc.outbox().send("sinkhole", 1, &payload) {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ProcError::Backpressure { .. }), "{err}");
    assert!(
        sent > 10 && sent < 70,
        "a 64 KiB ring holds about 60 such frames, sent {sent}"
    );

    // Now with the host draining concurrently every send gets through.
    proc.outbox().set_send_timeout(PATIENCE);
    let extra = 500u64;
    let drainer = std::thread::spawn(move || {
        let mut got = 0;
        while got < sent + extra {
            let frame = host.expect_frame();
            assert_eq!(frame.payload.len(), 1000);
            got += 1;
        }
        host
    });
    for _ in 0..extra {
        proc.outbox().send("sinkhole", 1, &payload).unwrap();
    }
    let host = drainer.join().unwrap();
    drop(host);
    // The host closed the outbound ring: sends fail instead of blocking.
    let mut result = Ok(0);
    for _ in 0..100 {
        result = proc.outbox().send("sinkhole", 1, &payload);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(ProcError::HostClosed)), "{result:?}");
}

#[test]
fn async_receive_and_reply_sleep_on_the_proc_doorbell() {
    let (mut host, params) = TestHost::local("async", RING, true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let worker = std::thread::spawn(move || {
        rt.block_on(async move {
            let mut proc = boot_from(params).unwrap();
            let mut handled = 0;
            while let Some(mut message) = proc.recv_async().await.unwrap() {
                let payload = message.payload();
                message.reply_async(payload).await.unwrap();
                handled += 1;
            }
            proc.outbox().send_async("cli", 99, b"bye").await.unwrap();
            handled
        })
    });
    for id in 0..20u64 {
        // One at a time, so the proc goes to sleep between frames.
        host.deliver_data(client("cli"), 4, id, &id.to_be_bytes());
        expect_echo(
            &host.expect_frame(),
            "cli",
            4,
            id,
            &id.to_be_bytes(),
            "async",
        );
    }
    assert_eq!(
        host.ask_agent(1, AgentRequest::Stop),
        AgentResponse::Stopping
    );
    assert_eq!(worker.join().unwrap(), 20);
    assert_eq!(host.expect_frame().payload, b"bye");
}

#[test]
fn async_receive_without_a_proc_doorbell_is_a_typed_error() {
    let (_host, params) = TestHost::local("nodoorbell", RING, false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut proc = boot_from(params).unwrap();
    let result = rt.block_on(async { proc.recv_async().await.map(|m| m.is_some()) });
    assert!(
        matches!(result, Err(ProcError::NoProcDoorbell)),
        "{result:?}"
    );
}

/// A stop requested from another thread through a `StopHandle` wakes a
/// proc asleep in a receive (on its doorbell, or in futex mode without
/// one), runs the stop hook once, and still hands out what was in the ring.
fn stop_handle_wakes_a_sleeping_receive(proc_doorbell: bool) {
    let (mut host, params) = TestHost::local("stopped-from-afar", RING, proc_doorbell);
    let mut proc = boot_from(params).unwrap();
    let hook_runs = Arc::new(AtomicUsize::new(0));
    let counter = hook_runs.clone();
    proc.on_stop(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let stop = proc.stop_handle().unwrap();
    host.deliver_data(client("cli"), 1, 7, b"before the stop");
    let Recv::Message(message) = proc.recv_timeout(PATIENCE).unwrap() else {
        panic!("the frame delivered before the stop");
    };
    assert_eq!(message.message_id(), 7);

    // The ring is empty: the receive below sleeps until the stop wakes it
    // (a stop that lands before it sleeps is seen at once). A receive that
    // waited out PATIENCE instead would return `TimedOut`.
    let stopper = std::thread::spawn(move || {
        stop.stop();
        stop.stop(); // idempotent
    });
    assert!(matches!(
        proc.recv_timeout(PATIENCE).unwrap(),
        Recv::Stopped
    ));
    stopper.join().unwrap();
    assert_eq!(hook_runs.load(Ordering::SeqCst), 1);
    assert!(matches!(proc.try_recv().unwrap(), Recv::Stopped));
}

#[test]
fn stop_handle_wakes_a_receive_sleeping_on_the_proc_doorbell() {
    stop_handle_wakes_a_sleeping_receive(true);
}

#[test]
fn stop_handle_wakes_a_receive_sleeping_on_the_ring_futex() {
    stop_handle_wakes_a_sleeping_receive(false);
}
