//! What can happen in one simulation step, and how a seed picks it.
//!
//! Events name clients, procs and destinations by small indices that are
//! read modulo what exists when the event runs, so any sub-list of a valid
//! event list is valid too (the shrinker drops events freely), and an event
//! that does not apply (a send from a client that is not connected) does
//! nothing.

use super::rng::Rng;

/// One step of the simulated world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// A client (slot) connects, unless it is connected.
    Connect { client: u8 },
    /// A client writes `count` frames of one shape to one destination.
    Send {
        client: u8,
        dest: u8,
        count: u8,
        shape: Shape,
    },
    /// A client writes bytes that break the framing.
    ClientGarbage { client: u8 },
    /// A client's writer takes its queued bytes (the client reads them).
    ClientRead { client: u8 },
    /// A client shuts down its write side and goes on reading.
    HalfClose { client: u8 },
    /// A client goes away (both directions).
    Disconnect { client: u8 },
    /// A proc is spawned into an empty proc slot (bound, starting).
    Spawn { proc: u8, behaviour: Behaviour },
    /// A starting proc reports ready.
    Ready { proc: u8 },
    /// A proc reads (and answers, as its behaviour says) up to `records`.
    ProcStep { proc: u8, records: u8 },
    /// A proc sends `count` frames of its own (same shape and destination).
    ProcSend {
        proc: u8,
        dest: u8,
        count: u8,
        shape: Shape,
    },
    /// A proc writes a record that is not a frame into its outbound ring.
    ProcGarbage { proc: u8 },
    /// A proc dies at `point` of handling its next record.
    Crash { proc: u8, point: CrashPoint },
    /// A proc is stopped: route unbound, inbound ring closed; it reads what
    /// is left and then exits.
    Stop { proc: u8 },
    /// A stopping proc that has read everything exits.
    Exit { proc: u8 },
    /// A proc name is bound to another proc slot's proc (a table change).
    Rebind { name: u8, to: u8 },
    /// A proc name is unbound.
    Unbind { name: u8 },
    /// The host doorbell fired: drain every proc it lists.
    Doorbell,
    /// The host drains one proc.
    Drain { proc: u8 },
    /// The fake link to the other host: dial/answer, or fail.
    Link { fail: bool },
    /// The clock moves on.
    Advance { millis: u16 },
}

/// What a frame looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// A small data request.
    Request,
    /// A data request with a payload of several KiB (fills rings fast).
    Big,
    /// A data frame marked as a reply (a stray answer).
    StrayReply,
    /// A data request from an anonymous sender.
    Anonymous,
    /// A data request claiming another sender's name.
    ForgedSender,
    /// A frame of kind `Undeliverable` (only the host may originate those).
    ForgedNotice,
    /// A frame of kind `ControlResponse` (only the host may originate those).
    ForgedResponse,
    /// A control request (no privilege in the simulation).
    ControlRequest,
    /// A data request to a proc on the other host (over the link).
    Remote,
    /// A data request to a proc on a host that is not a peer: answered
    /// `NotAPeer` at once, never dialled.
    Stranger,
}

/// Where in handling a record a proc dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(super) enum CrashPoint {
    /// Before reading anything.
    Idle,
    /// After reading (peeking) the next record.
    AfterRead,
    /// After writing its answer, before publishing it.
    MidReply,
    /// After publishing its answer, before releasing the record.
    AfterReply,
    /// After releasing the record (the release may still be unpublished).
    AfterRelease,
}

/// What a simulated proc does with what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Behaviour {
    /// Answers each data request with one reply; nothing else.
    Echo,
    /// Reads and answers nothing.
    Sink,
    /// An echo that mostly does not read (its ring fills).
    Slow,
    /// Answers everything it reads but data replies with a data reply,
    /// notices and responses included (the host must still prevent a loop).
    Buggy,
}

/// `steps` events drawn from `seed`.
pub(super) fn generate(seed: u64, steps: usize) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    (0..steps).map(|_| one(&mut rng)).collect()
}

fn one(rng: &mut Rng) -> Event {
    let client = rng.index();
    let proc = rng.index();
    match rng.below(100) {
        0..=21 => Event::Send {
            client,
            dest: rng.index(),
            count: 1 + rng.below(4) as u8,
            shape: shape(rng),
        },
        22..=39 => Event::ProcStep {
            proc,
            records: 1 + rng.below(8) as u8,
        },
        40..=50 => Event::ClientRead { client },
        51..=60 => Event::Doorbell,
        61..=63 => Event::Drain { proc },
        64..=68 => Event::ProcSend {
            proc,
            dest: rng.index(),
            count: 1 + rng.below(6) as u8,
            shape: shape(rng),
        },
        69..=72 => Event::Advance {
            millis: rng.below(80) as u16,
        },
        73..=75 => Event::Connect { client },
        76..=78 => Event::Spawn {
            proc,
            behaviour: match rng.below(10) {
                0..=4 => Behaviour::Echo,
                5..=6 => Behaviour::Sink,
                7..=8 => Behaviour::Slow,
                _ => Behaviour::Buggy,
            },
        },
        79..=81 => Event::Ready { proc },
        82..=83 => Event::Crash {
            proc,
            point: match rng.below(5) {
                0 => CrashPoint::Idle,
                1 => CrashPoint::AfterRead,
                2 => CrashPoint::MidReply,
                3 => CrashPoint::AfterReply,
                _ => CrashPoint::AfterRelease,
            },
        },
        84 => Event::Stop { proc },
        85..=86 => Event::Exit { proc },
        87 => Event::HalfClose { client },
        88 => Event::Disconnect { client },
        89 => Event::ClientGarbage { client },
        90 => Event::ProcGarbage { proc },
        91 => Event::Rebind {
            name: rng.index(),
            to: proc,
        },
        92 => Event::Unbind { name: rng.index() },
        93..=96 => Event::Link { fail: false },
        97 => Event::Link { fail: true },
        _ => Event::Connect { client },
    }
}

fn shape(rng: &mut Rng) -> Shape {
    match rng.below(100) {
        0..=49 => Shape::Request,
        50..=62 => Shape::Big,
        63..=67 => Shape::StrayReply,
        68..=72 => Shape::Anonymous,
        73..=77 => Shape::ForgedSender,
        78..=82 => Shape::ForgedNotice,
        83..=85 => Shape::ForgedResponse,
        86..=88 => Shape::ControlRequest,
        89..=95 => Shape::Remote,
        _ => Shape::Stranger,
    }
}
