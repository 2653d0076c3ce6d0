//! The test plays the host: it creates the rings and doorbells, hands the
//! proc its ends (in process or through the boot protocol), writes frames
//! into the inbound ring and reads the proc's frames from the outbound ring.

use std::time::{Duration, Instant};

use hostmux_lifecycle::ProcessConfig;
use std::os::fd::AsFd;

use hostmux_proc::protocol::{
    child_config, host_ends, BootParams, ChildFds, ChildLaneFds, HostEnds, HostLaneRings, LaneFds,
    ProcIdentity,
};
use hostmux_ring::{Consumer, Doorbell, Producer, RingError, SharedRing};
use hostmux_wire::{
    decode_frame, encode_frame, encoded_len, AgentRequest, AgentResponse, AgentStats, Flags,
    FrameHeader, FrameKind, Limits, ProcId, ProcName, RoutingHeader, Sender, AGENT_MESSAGE_MAX_LEN,
    AGENT_PORT,
};

/// Generous bound for waits on a loaded, shared 2-core machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

pub(crate) const SERVICE: &str = "service";

pub(crate) fn proc_id(name: &str) -> ProcId {
    format!("unix:@hostmux-proc-test/{name}")
        .parse()
        .expect("valid proc id")
}

/// A frame the proc sent, copied out of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) header: RoutingHeader,
    pub(crate) payload: Vec<u8>,
}

impl Received {
    pub(crate) fn agent_response(&self) -> AgentResponse {
        assert_eq!(self.header.dest_port, AGENT_PORT, "not an agent response");
        // Copy into an aligned buffer: `payload` is a Vec.
        #[repr(C, align(16))]
        struct Aligned([u8; AGENT_MESSAGE_MAX_LEN]);
        let mut buf = Aligned([0; AGENT_MESSAGE_MAX_LEN]);
        buf.0[..self.payload.len()].copy_from_slice(&self.payload);
        AgentResponse::decode(&buf.0[..self.payload.len()]).expect("valid agent response")
    }
}

/// The host's side of one proc.
pub(crate) struct TestHost {
    pub(crate) to_proc: Producer,
    pub(crate) from_proc: Consumer,
    pub(crate) doorbell: Doorbell,
    pub(crate) limits: Limits,
    pub(crate) name: ProcName,
}

/// The identity the test host gives a proc.
struct Named {
    id: ProcId,
    service: ProcName,
    limits: Limits,
}

impl Named {
    fn new(name: &str) -> Named {
        Named {
            id: proc_id(name),
            service: SERVICE.parse().unwrap(),
            limits: Limits::default(),
        }
    }

    /// As `host_ends` and `child_config` pass it to the proc.
    fn identity(&self) -> ProcIdentity<'_> {
        ProcIdentity {
            id: &self.id,
            service_name: &self.service,
            limits: self.limits,
        }
    }

    /// The host's side of this proc, over the host's ends of its rings.
    fn host(&self, to_proc: Producer, from_proc: Consumer, doorbell: Doorbell) -> TestHost {
        TestHost {
            to_proc,
            from_proc,
            doorbell,
            limits: self.limits,
            name: self.id.name().clone(),
        }
    }
}

/// Inbound and outbound rings of `ring_bytes` each, and the host doorbell.
fn fresh_rings(ring_bytes: usize) -> (SharedRing, SharedRing, Doorbell) {
    (
        SharedRing::create(ring_bytes).unwrap(),
        SharedRing::create(ring_bytes).unwrap(),
        Doorbell::new().unwrap(),
    )
}

/// One lane of fresh rings for `host_ends`.
fn one_lane(
    inbound: SharedRing,
    outbound: SharedRing,
    doorbell: &Doorbell,
) -> Vec<HostLaneRings<'_>> {
    vec![HostLaneRings {
        inbound,
        outbound,
        host_doorbell: doorbell,
    }]
}

/// The host's ends of a one-lane proc, and the proc's doorbell.
fn only_lane(ends: HostEnds) -> (hostmux_proc::protocol::HostLane, Doorbell) {
    let HostEnds {
        lanes,
        proc_doorbell,
    } = ends;
    let [lane] = <[_; 1]>::try_from(lanes).expect("one lane");
    (lane, proc_doorbell)
}

impl TestHost {
    /// Rings for an in-process proc; `proc_doorbell` wires one both ways.
    pub(crate) fn local(
        name: &str,
        ring_bytes: usize,
        proc_doorbell: bool,
    ) -> (TestHost, BootParams) {
        let named = Named::new(name);
        let (inbound, outbound, doorbell) = fresh_rings(ring_bytes);
        let inbound_fd = inbound.memfd().try_clone_to_owned().unwrap();
        let outbound_fd = outbound.memfd().try_clone_to_owned().unwrap();
        let (to_proc, from_proc, proc_doorbell) = if proc_doorbell {
            let config = ProcessConfig::new("unused");
            let (_, ends) = host_ends(
                config,
                named.identity(),
                one_lane(inbound, outbound, &doorbell),
            )
            .unwrap();
            let (lane, proc_doorbell) = only_lane(ends);
            (lane.inbound, lane.outbound, Some(proc_doorbell))
        } else {
            (
                inbound.into_producer().unwrap(),
                outbound.into_consumer().unwrap(),
                None,
            )
        };
        let params = BootParams {
            id: named.id.clone(),
            service_name: named.service.clone(),
            limits: named.limits,
            lanes: vec![LaneFds {
                inbound: inbound_fd,
                outbound: outbound_fd,
                host_doorbell: doorbell.try_clone().unwrap(),
            }],
            proc_doorbell,
        };
        (named.host(to_proc, from_proc, doorbell), params)
    }

    /// Rings for an OS proc running `program args`, through the boot protocol.
    pub(crate) fn process(
        name: &str,
        program: &str,
        args: &[&str],
        ring_bytes: usize,
    ) -> (TestHost, ProcessConfig) {
        let named = Named::new(name);
        let (inbound, outbound, doorbell) = fresh_rings(ring_bytes);
        let config = ProcessConfig::new(program)
            .args(args.iter().copied())
            .ready_timeout(PATIENCE);
        let (config, ends) = host_ends(
            config,
            named.identity(),
            one_lane(inbound, outbound, &doorbell),
        )
        .unwrap();
        let (lane, _) = only_lane(ends);
        (named.host(lane.inbound, lane.outbound, doorbell), config)
    }

    /// `lanes` lanes for an in-process proc, wired by `host_ends` (so with
    /// the proc doorbell): one `TestHost` per lane, lane 0 first, each the
    /// host side of its lane's rings with its own host doorbell.
    pub(crate) fn local_lanes(
        name: &str,
        ring_bytes: usize,
        lanes: usize,
    ) -> (Vec<TestHost>, BootParams) {
        let named = Named::new(name);
        let rings: Vec<_> = (0..lanes).map(|_| fresh_rings(ring_bytes)).collect();
        let mut lane_fds = Vec::new();
        let mut doorbells = Vec::new();
        let mut shared = Vec::new();
        for (inbound, outbound, doorbell) in rings {
            lane_fds.push(LaneFds {
                inbound: inbound.memfd().try_clone_to_owned().unwrap(),
                outbound: outbound.memfd().try_clone_to_owned().unwrap(),
                host_doorbell: doorbell.try_clone().unwrap(),
            });
            shared.push((inbound, outbound));
            doorbells.push(doorbell);
        }
        let (_, ends) = host_ends(
            ProcessConfig::new("unused"),
            named.identity(),
            shared
                .into_iter()
                .zip(&doorbells)
                .map(|((inbound, outbound), host_doorbell)| HostLaneRings {
                    inbound,
                    outbound,
                    host_doorbell,
                })
                .collect(),
        )
        .unwrap();
        let params = BootParams {
            id: named.id.clone(),
            service_name: named.service.clone(),
            limits: named.limits,
            lanes: lane_fds,
            proc_doorbell: Some(ends.proc_doorbell.try_clone().unwrap()),
        };
        let hosts = ends
            .lanes
            .into_iter()
            .zip(doorbells)
            .map(|(lane, doorbell)| named.host(lane.inbound, lane.outbound, doorbell))
            .collect();
        (hosts, params)
    }

    /// `lanes` lanes for an OS proc running `program`, through the boot
    /// protocol (`host_ends`): one `TestHost` per lane, lane 0 first.
    pub(crate) fn process_lanes(
        name: &str,
        program: &str,
        ring_bytes: usize,
        lanes: usize,
    ) -> (Vec<TestHost>, ProcessConfig) {
        let named = Named::new(name);
        let rings: Vec<_> = (0..lanes).map(|_| fresh_rings(ring_bytes)).collect();
        let mut shared = Vec::new();
        let mut doorbells = Vec::new();
        for (inbound, outbound, doorbell) in rings {
            shared.push((inbound, outbound));
            doorbells.push(doorbell);
        }
        let config = ProcessConfig::new(program).ready_timeout(PATIENCE);
        let (config, ends) = host_ends(
            config,
            named.identity(),
            shared
                .into_iter()
                .zip(&doorbells)
                .map(|((inbound, outbound), host_doorbell)| HostLaneRings {
                    inbound,
                    outbound,
                    host_doorbell,
                })
                .collect(),
        )
        .unwrap();
        let hosts = ends
            .lanes
            .into_iter()
            .zip(doorbells)
            .map(|(lane, doorbell)| named.host(lane.inbound, lane.outbound, doorbell))
            .collect();
        (hosts, config)
    }

    /// Rings for an OS proc through the lower half of the protocol
    /// (`child_config`) without a proc doorbell: the proc waits on futexes.
    pub(crate) fn process_without_proc_doorbell(
        name: &str,
        program: &str,
        ring_bytes: usize,
    ) -> (TestHost, ProcessConfig) {
        let named = Named::new(name);
        let (inbound, outbound, doorbell) = fresh_rings(ring_bytes);
        let fds = ChildFds {
            lanes: vec![ChildLaneFds {
                inbound: inbound.memfd().try_clone_to_owned().unwrap(),
                outbound: outbound.memfd().try_clone_to_owned().unwrap(),
                host_doorbell: doorbell.as_fd().try_clone_to_owned().unwrap(),
            }],
            proc_doorbell: None,
        };
        let config = ProcessConfig::new(program).ready_timeout(PATIENCE);
        let config = child_config(config, named.identity(), fds);
        let to_proc = inbound.into_producer().unwrap();
        let from_proc = outbound.into_consumer().unwrap();
        (named.host(to_proc, from_proc, doorbell), config)
    }

    /// A data frame from `sender` to the proc's `port`.
    pub(crate) fn deliver_data(
        &mut self,
        sender: Sender<'_>,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) {
        let header = FrameHeader {
            dest_port: port,
            sender,
            flags: Flags::RETURN_UNDELIVERABLE,
            ..FrameHeader::data(self.name.as_str(), message_id)
        };
        deliver_into(&mut self.to_proc, &self.limits, &header, payload);
    }

    /// A frame of any `kind` (a notice, a control response, ...) from
    /// `sender` to the proc's `port`, as the host would deliver it.
    pub(crate) fn deliver_kind(
        &mut self,
        kind: FrameKind,
        sender: Sender<'_>,
        port: u32,
        message_id: u64,
        payload: &[u8],
    ) {
        let header = FrameHeader {
            kind,
            dest_port: port,
            sender,
            ..FrameHeader::data(self.name.as_str(), message_id)
        };
        deliver_into(&mut self.to_proc, &self.limits, &header, payload);
    }

    /// An agent request from `sender` (the service proc unless testing refusals).
    pub(crate) fn deliver_agent(
        &mut self,
        sender: Sender<'_>,
        message_id: u64,
        request: AgentRequest,
    ) {
        #[repr(C, align(16))]
        struct Aligned([u8; AGENT_MESSAGE_MAX_LEN]);
        let mut buf = Aligned([0; AGENT_MESSAGE_MAX_LEN]);
        let len = request.encode(&mut buf.0).unwrap();
        self.deliver_data(sender, AGENT_PORT, message_id, &buf.0[..len]);
    }

    pub(crate) fn service() -> Sender<'static> {
        Sender::Proc {
            addr: "",
            name: SERVICE,
        }
    }

    /// Asks the agent and returns its answer (waits for it). The request
    /// frame is built the way a host builds it, `AgentRequest::encode_frame`
    /// straight into the ring.
    pub(crate) fn ask_agent(&mut self, message_id: u64, request: AgentRequest) -> AgentResponse {
        let len = AgentRequest::frame_len(self.name.as_str(), SERVICE);
        let mut slot = self
            .to_proc
            .try_reserve(len)
            .expect("room for an agent request");
        let written = request
            .encode_frame(
                &mut slot,
                self.name.as_str(),
                SERVICE,
                message_id,
                &self.limits,
            )
            .unwrap();
        assert_eq!(written, len);
        slot.commit();
        self.to_proc.publish().unwrap();
        let reply = self.expect_frame();
        assert_eq!(reply.header.message_id, message_id);
        assert_eq!(reply.header.dest_name, SERVICE);
        reply.agent_response()
    }

    /// Asks the agent for the proc's counters (waits for them).
    pub(crate) fn ask_stats(&mut self, message_id: u64) -> AgentStats {
        match self.ask_agent(message_id, AgentRequest::Stats) {
            AgentResponse::Stats(stats) => stats,
            other => panic!("expected stats, got {other:?}"),
        }
    }

    /// The proc's next frame, waiting up to `timeout` the way the real host
    /// does: drain, arm the ring on the host doorbell, sleep on the doorbell.
    pub(crate) fn next_frame(&mut self, timeout: Duration) -> Result<Option<Received>, RingError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(record) = self.from_proc.peek()? {
                let frame = decode_frame(record, &self.limits).expect("proc wrote a valid frame");
                let received = Received {
                    header: frame.fields().into(),
                    payload: frame.payload().to_vec(),
                };
                self.from_proc.release()?;
                return Ok(Some(received));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if self.from_proc.arm_doorbell()? {
                self.doorbell.wait(Some(left))?;
                self.doorbell.drain()?;
                self.from_proc.take_pending();
                self.from_proc.disarm();
            }
        }
    }

    pub(crate) fn expect_frame(&mut self) -> Received {
        self.next_frame(PATIENCE)
            .expect("outbound ring intact")
            .expect("the proc answered in time")
    }
}

/// Writes one frame into `ring` and publishes it (no allocation).
fn deliver_into(ring: &mut Producer, limits: &Limits, header: &FrameHeader<'_>, payload: &[u8]) {
    let len = encoded_len(header, payload.len());
    let deadline = Instant::now() + PATIENCE;
    loop {
        match ring.try_reserve(len) {
            Ok(mut slot) => {
                encode_frame(&mut slot, header, payload, limits).unwrap();
                slot.commit();
                ring.publish().unwrap();
                return;
            }
            Err(RingError::Full) => {
                assert!(Instant::now() < deadline, "inbound ring stayed full");
                let _ = ring
                    .wait_writable(len, Some(Duration::from_millis(50)))
                    .unwrap();
            }
            Err(e) => panic!("deliver: {e}"),
        }
    }
}

/// The reply a data frame from `sender` should get from an echo proc.
pub(crate) fn expect_echo(
    reply: &Received,
    to: &str,
    port: u32,
    id: u64,
    payload: &[u8],
    from: &str,
) {
    assert_eq!(reply.header.kind, FrameKind::Data);
    assert_eq!(reply.header.dest_name, to);
    assert_eq!(reply.header.dest_port, port);
    assert_eq!(reply.header.message_id, id);
    assert_eq!(reply.header.sender_name, from);
    assert_eq!(reply.payload, payload);
}
