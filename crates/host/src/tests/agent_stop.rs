//! The agent `Stop` is never lost to a full inbound ring: it is queued,
//! the ring of a detached proc stays open for it, and it is written (and
//! the ring closed behind it) as soon as the proc has made room.

use hostmux_ring::SharedRing;
use hostmux_wire::{decode_frame, AgentRequest, Limits, ProcName, AGENT_PORT};

use crate::config::HostConfig;
use crate::dataplane::rig::{Rig, RigProc};
use crate::dataplane::Route;

/// A ready proc with an agent and a 64 KiB inbound ring.
fn agent_proc(rig: &mut Rig) -> RigProc {
    let inbound = SharedRing::create(64 * 1024).expect("memfd");
    let memfd = inbound.memfd().try_clone_to_owned().expect("dup");
    let (host_in, proc_in) = inbound.split().expect("split");
    let (proc_out, host_out) = SharedRing::create(64 * 1024)
        .expect("memfd")
        .split()
        .expect("split");
    let name = ProcName::new("full").expect("valid name");
    let key = rig.dp.add_proc(name.clone(), host_in, memfd, host_out);
    rig.dp.mark_ready(key, true);
    rig.table.insert(name, Route::Proc(key)).expect("free name");
    RigProc {
        key,
        inbound: proc_in,
        outbound: proc_out,
    }
}

/// Fills the proc's inbound ring with agent pings (each the size of a
/// `Stop`) until one no longer fits; returns how many went in.
fn fill_with_pings(rig: &mut Rig, proc: &RigProc) -> usize {
    let mut written = 0;
    while rig
        .dp
        .agent_request(proc.key, AgentRequest::Ping { nonce: 1 }, None)
    {
        written += 1;
        assert!(written < 100_000, "the ring never filled");
    }
    written
}

/// Reads every record in the proc's inbound ring; returns the agent
/// requests among them, in order.
fn read_all(proc: &mut RigProc) -> Vec<AgentRequest> {
    let limits = Limits::default();
    let mut requests = Vec::new();
    while let Some(record) = proc.inbound.peek().expect("a sound ring") {
        let frame = decode_frame(record, &limits).expect("a valid frame");
        assert_eq!(frame.dest_port(), AGENT_PORT);
        requests.push(AgentRequest::decode(frame.payload()).expect("an agent request"));
        proc.inbound.release().expect("release");
    }
    proc.inbound.publish_released().expect("publish");
    requests
}

#[test]
fn a_stop_for_a_full_ring_is_queued_and_written_once_the_proc_made_room() {
    let mut rig = Rig::new(HostConfig::default());
    let mut proc = agent_proc(&mut rig);
    let pings = fill_with_pings(&mut rig, &proc);
    assert!(pings > 0);

    // Terminate starts: the stop does not fit, the proc is detached.
    assert!(!rig.dp.agent_stop(proc.key), "no room: queued, not written");
    rig.dp.detach_proc(proc.key);
    assert!(
        !proc.inbound.is_producer_closed(),
        "a detached proc's ring stays open while its stop is queued"
    );
    // Nothing changes until the proc reads.
    rig.dp.retry_agent_stops();
    let first = read_all(&mut proc);
    assert_eq!(first.len(), pings);
    assert!(first.iter().all(|r| matches!(r, AgentRequest::Ping { .. })));

    // The proc made room: the retry writes the stop and closes the ring.
    rig.dp.retry_agent_stops();
    assert_eq!(read_all(&mut proc), vec![AgentRequest::Stop]);
    assert!(proc.inbound.is_producer_closed());

    // Asked once: a second request writes nothing.
    assert!(!rig.dp.agent_stop(proc.key));
}

#[test]
fn a_stop_that_fits_is_written_at_once_and_only_once() {
    let mut rig = Rig::new(HostConfig::default());
    let mut proc = agent_proc(&mut rig);
    assert!(rig.dp.agent_stop(proc.key));
    assert!(!rig.dp.agent_stop(proc.key));
    rig.dp.detach_proc(proc.key);
    assert_eq!(read_all(&mut proc), vec![AgentRequest::Stop]);
    assert!(proc.inbound.is_producer_closed());
}

#[test]
fn a_queued_stop_is_given_up_when_the_proc_is_removed() {
    let mut rig = Rig::new(HostConfig::default());
    let mut proc = agent_proc(&mut rig);
    let pings = fill_with_pings(&mut rig, &proc);
    assert!(!rig.dp.agent_stop(proc.key));
    rig.dp.detach_proc(proc.key);
    // The proc ended without reading: removal closes its ring anyway and
    // the retry finds nothing to do.
    rig.dp.remove_proc(proc.key, std::time::Instant::now());
    assert!(proc.inbound.is_producer_closed());
    rig.dp.retry_agent_stops();
    assert_eq!(read_all(&mut proc).len(), pings);
}
