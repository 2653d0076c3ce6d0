//! Sending: [`Outbox`], [`Slot`], [`SendBatch`], one ring writer per lane.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use hostmux_ring::{Doorbell, Producer, ReadPosition, Reservation, RingError, WaitOutcome};
use hostmux_wire::{
    encode_frame_head, encoded_len, Flags, FrameHeader, FrameKind, FrameView, Limits, ProcName,
    Sender, FRAME_ALIGN, HEADER_ROOT_LEN, PREFIX_LEN,
};

use crate::dest::Dest;
use crate::head_cache::HeaderCache;
use crate::lane::{pair_lane, Lanes};
use crate::message::reply_header;
use crate::slot::Slot;
use crate::ProcError;

/// How long a send waits for room in a full outbound ring by default.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of application frames sent (agent replies are not counted).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SentCounters {
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
}

/// The inbound record a frame answers: marked consumed (see
/// [`ReadPosition`]) once the answer is committed, before it is published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    position: &'a ReadPosition,
    read_end: u64,
}

impl<'a> Answer<'a> {
    /// The record ending at `read_end` (if any), on `position` (its lane's
    /// read position).
    fn of(read_end: Option<u64>, position: &'a ReadPosition) -> Option<Self> {
        read_end.map(|read_end| Answer { position, read_end })
    }
}

/// Marks the answered record, if any (after the answer is committed).
pub(crate) fn mark_answered(answer: Option<Answer<'_>>) {
    if let Some(Answer { position, read_end }) = answer {
        position.mark(read_end);
    }
}

/// The ring-writing half of an [`Outbox`] for one lane (its outbound ring),
/// kept apart from the proc's name so a header can borrow the name while a
/// frame is written.
#[derive(Debug)]
pub(crate) struct RingWriter {
    producer: Producer,
    limits: Limits,
    send_timeout: Duration,
    defer_publish: bool,
    spin: Duration,
    pub(crate) doorbell: Option<Doorbell>,
}

impl RingWriter {
    /// Waits until a record of `frame_len` bytes fits (bounded by the send timeout).
    fn wait_for_room(&mut self, frame_len: usize) -> Result<(), ProcError> {
        if self
            .producer
            .is_writable(frame_len)
            .map_err(ProcError::ring("outbound"))?
        {
            return Ok(());
        }
        if frame_len > self.producer.max_payload() {
            return Err(ProcError::Ring {
                ring: "outbound",
                source: RingError::TooLarge {
                    len: frame_len,
                    max: self.producer.max_payload(),
                    capacity: self.producer.capacity(),
                },
            });
        }
        if self.producer.is_consumer_closed() {
            return Err(ProcError::HostClosed);
        }
        // Spin (yielding) before the ring sleeps on its futex.
        self.producer
            .publish()
            .map_err(ProcError::ring("outbound"))?;
        let producer = &mut self.producer;
        if crate::wait::spin_for(self.spin, || {
            producer
                .is_writable(frame_len)
                .map_err(ProcError::ring("outbound"))
        })? {
            return Ok(());
        }
        match self
            .producer
            .wait_writable(frame_len, Some(self.send_timeout))
            .map_err(ProcError::ring("outbound"))?
        {
            WaitOutcome::Ready => Ok(()),
            WaitOutcome::PeerClosed => Err(ProcError::HostClosed),
            WaitOutcome::TimedOut => Err(ProcError::Backpressure {
                len: frame_len,
                timeout: self.send_timeout,
            }),
        }
    }

    /// Async flavour of the wait for room: sleeps on the proc doorbell.
    pub(crate) async fn wait_for_room_async(&mut self, frame_len: usize) -> Result<(), ProcError> {
        let deadline = tokio::time::Instant::now() + self.send_timeout;
        let mut waiter = None;
        loop {
            if self
                .producer
                .is_writable(frame_len)
                .map_err(ProcError::ring("outbound"))?
            {
                return Ok(());
            }
            if self.producer.is_consumer_closed() {
                return Err(ProcError::HostClosed);
            }
            if waiter.is_none() {
                let doorbell = self.doorbell.as_ref().ok_or(ProcError::NoProcDoorbell)?;
                waiter = Some(crate::wait::AsyncDoorbell::new(doorbell)?);
            }
            let Some(doorbell) = waiter.as_ref() else {
                continue;
            };
            if !self
                .producer
                .arm_doorbell(frame_len)
                .map_err(ProcError::ring("outbound"))?
            {
                continue;
            }
            let woke = tokio::time::timeout_at(deadline, doorbell.wait()).await;
            self.producer.disarm();
            self.producer.take_pending();
            match woke {
                Ok(result) => result?,
                Err(_) => {
                    return Err(ProcError::Backpressure {
                        len: frame_len,
                        timeout: self.send_timeout,
                    })
                }
            }
        }
    }

    /// Encodes `header` and a `payload_len` payload filled by `fill` into
    /// the ring and commits it; publishes unless deferred.
    fn write(
        &mut self,
        header: &FrameHeader<'_>,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
        answer: Option<Answer<'_>>,
    ) -> Result<(), ProcError> {
        let frame_len = encoded_len(header, payload_len);
        self.wait_for_room(frame_len)?;
        let mut reservation = self
            .producer
            .try_reserve(frame_len)
            .map_err(ProcError::ring("outbound"))?;
        let prefix = encode_frame_head(&mut reservation, header, payload_len, &self.limits)?;
        fill(&mut reservation[prefix.payload_range()]);
        reservation.commit();
        mark_answered(answer);
        if !self.defer_publish {
            self.flush()?;
        }
        Ok(())
    }

    fn reserve<'a>(
        &'a mut self,
        header: &FrameHeader<'_>,
        len: usize,
        sent: &'a mut SentCounters,
        answer: Option<Answer<'a>>,
    ) -> Result<Slot<'a>, ProcError> {
        let frame_len = encoded_len(header, len);
        self.wait_for_room(frame_len)?;
        let limits = self.limits;
        // `wait_for_room` saw room and only this end writes, so this fails
        // only if the ring broke meanwhile.
        let mut reservation = self
            .producer
            .try_reserve(frame_len)
            .map_err(ProcError::ring("outbound"))?;
        let prefix = encode_frame_head(&mut reservation, header, len, &limits)?;
        Ok(Slot {
            reservation: Some(reservation),
            payload: prefix.payload_range(),
            header_len: prefix.header_len(),
            limits,
            sent,
            answer,
        })
    }

    /// Reserves a frame that starts with `head` (prefix, archived header,
    /// padding; validated bytes from the [`HeaderCache`]), copies it in and
    /// patches `message_id` at `id_at`; the payload bytes (from
    /// `head.len()`, `payload_len` of them) are left to the caller, the
    /// padding after them is zeroed. Waits like the encoding path.
    fn reserve_templated(
        &mut self,
        head: &[u8],
        id_at: usize,
        message_id: u64,
        payload_len: usize,
    ) -> Result<Reservation<'_>, ProcError> {
        // `head` came with a prefix that passed the limits for this
        // payload length, so neither addition overflows.
        let frame_len = head.len() + payload_len.next_multiple_of(FRAME_ALIGN);
        // One room check on the common path; the wait only when it fails.
        if !self
            .producer
            .is_writable(frame_len)
            .map_err(ProcError::ring("outbound"))?
        {
            self.wait_for_room(frame_len)?;
        }
        let mut reservation = self
            .producer
            .try_reserve(frame_len)
            .map_err(ProcError::ring("outbound"))?;
        reservation[..head.len()].copy_from_slice(head);
        reservation[id_at..id_at + 8].copy_from_slice(&message_id.to_le_bytes());
        let payload_end = head.len() + payload_len;
        if payload_end < frame_len {
            reservation[payload_end..].fill(0);
        }
        Ok(reservation)
    }

    /// [`write`](Self::write) from a cached frame head.
    fn write_templated(
        &mut self,
        head: &[u8],
        id_at: usize,
        message_id: u64,
        payload: &[u8],
        answer: Option<Answer<'_>>,
    ) -> Result<(), ProcError> {
        let start = head.len();
        let payload_end = start + payload.len();
        let frame_len = start + payload.len().next_multiple_of(FRAME_ALIGN);
        // Reserve first: its own room check is the only one on the common
        // path (the reservation does not leave the loop, so the retry
        // after a wait borrows the producer afresh).
        loop {
            match self.producer.try_reserve(frame_len) {
                Ok(mut reservation) => {
                    reservation[..start].copy_from_slice(head);
                    reservation[id_at..id_at + 8].copy_from_slice(&message_id.to_le_bytes());
                    reservation[start..payload_end].copy_from_slice(payload);
                    if payload_end < frame_len {
                        reservation[payload_end..].fill(0);
                    }
                    reservation.commit();
                    mark_answered(answer);
                    break;
                }
                // Waits as the encoding path does; fails there if the
                // frame can never fit or the host left.
                Err(RingError::Full) => self.wait_for_room(frame_len)?,
                Err(e) => {
                    return Err(ProcError::Ring {
                        ring: "outbound",
                        source: e,
                    })
                }
            }
        }
        if !self.defer_publish {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ProcError> {
        self.producer.publish().map_err(ProcError::ring("outbound"))
    }
}

/// One lane's sending side: its outbound ring's writer and its inbound
/// ring's read position, which the writer's producer publishes before
/// each publication of its own index.
#[derive(Debug)]
pub(crate) struct OutLane {
    writer: RingWriter,
    pub(crate) read_position: ReadPosition,
}

/// The proc's sending side: frames go into the outbound rings, encoded in
/// place (one copy of the payload, or none with [`Outbox::reserve`]).
///
/// # Lanes
///
/// A proc has one outbound ring per lane (see
/// [`protocol`](crate::protocol)). A reply goes out on the lane its message
/// came in on. Any other frame to a destination goes on the lane of the
/// unordered pair {this proc's name, the destination's name}
/// ([`pair_lane`](crate::pair_lane)): the destination computes the same lane
/// for its frames back, so all traffic between two procs, both ways, keeps
/// one lane and its order. Frames on different lanes have no order between
/// them. With one lane everything takes lane 0.
///
/// A send publishes at once unless it happens inside
/// [`Proc::recv_batch`](crate::Proc::recv_batch), which publishes once per
/// batch; [`Outbox::flush`] publishes explicitly (every lane), and a slot is
/// published by the next send, flush or receive. When a ring is full a send
/// waits (spin, then futex sleep per the ring protocol) up to the send
/// timeout for the host to drain it, then fails with
/// [`ProcError::Backpressure`]: nothing is dropped silently.
#[derive(Debug)]
pub struct Outbox {
    /// One per lane (lane 0 held inline: see [`Lanes`]).
    lanes: Lanes<OutLane>,
    headers: HeaderCache,
    /// The lane of the message being handled, the one [`Message`] that
    /// borrows this outbox (set as the proc hands it out; its reply goes
    /// out on it). Kept here rather than in the message, which stays small
    /// enough to be moved without a `memcpy` call.
    ///
    /// [`Message`]: crate::Message
    pub(crate) handled_lane: usize,
    pub(crate) name: ProcName,
    next_message_id: u64,
    pub(crate) sent: SentCounters,
}

impl Outbox {
    /// One `(producer, read position)` per lane: the lane's outbound
    /// producer and its inbound ring's read position, which the producer
    /// publishes before its own index from now on.
    pub(crate) fn new(
        lanes: Vec<(Producer, ReadPosition)>,
        name: ProcName,
        limits: Limits,
        doorbell: Option<&Doorbell>,
    ) -> Result<Self, ProcError> {
        let mut out_lanes = Vec::with_capacity(lanes.len());
        for (mut producer, read_position) in lanes {
            producer.publish_read_position_first(Some(read_position.clone()));
            let writer = RingWriter {
                producer,
                limits,
                send_timeout: DEFAULT_SEND_TIMEOUT,
                defer_publish: false,
                spin: crate::DEFAULT_SPIN,
                doorbell: doorbell
                    .map(Doorbell::try_clone)
                    .transpose()
                    .map_err(ProcError::ring("proc doorbell"))?,
            };
            out_lanes.push(OutLane {
                writer,
                read_position,
            });
        }
        // `boot_from` checked the count; an outbox without lanes cannot send.
        let lanes = Lanes::new(out_lanes).ok_or(ProcError::LaneCount {
            name: "lanes",
            count: 0,
            max: crate::protocol::MAX_LANES,
        })?;
        let headers = HeaderCache::new(limits, lanes.len());
        Ok(Self {
            lanes,
            headers,
            handled_lane: 0,
            name,
            next_message_id: 1,
            sent: SentCounters::default(),
        })
    }

    /// The lane of frames to `dest_name` that answer nothing (see
    /// [`Outbox`]'s lanes).
    fn lane_to(&self, dest_name: &str) -> usize {
        pair_lane(self.name.as_str(), dest_name, self.lanes())
    }

    /// Lane `lane`'s sending side (see [`Lanes::get_mut`]).
    #[inline]
    pub(crate) fn lane(&mut self, lane: usize) -> &mut OutLane {
        self.lanes.get_mut(lane)
    }

    /// The writer of lane `lane` (see [`Lanes::get_mut`]).
    pub(crate) fn writer(&mut self, lane: usize) -> &mut RingWriter {
        &mut self.lanes.get_mut(lane).writer
    }

    /// Every lane's writer, lane 0 first.
    fn writers(&mut self) -> impl Iterator<Item = &mut RingWriter> {
        self.lanes.iter_mut().map(|lane| &mut lane.writer)
    }

    /// The number of lanes.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// How long sends wait for room in a full ring ([`DEFAULT_SEND_TIMEOUT`]).
    pub fn set_send_timeout(&mut self, timeout: Duration) {
        for writer in self.writers() {
            writer.send_timeout = timeout;
        }
    }

    pub(crate) fn set_spin(&mut self, spin: Duration) {
        for writer in self.writers() {
            writer.spin = spin;
        }
    }

    /// This proc's name (the sender of its frames).
    pub fn name(&self) -> &ProcName {
        &self.name
    }

    fn take_message_id(&mut self) -> u64 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        id
    }

    fn count(&mut self, payload_len: usize) {
        self.sent.frames += 1;
        self.sent.bytes += payload_len as u64;
    }

    /// Defers (or stops deferring) publication on every lane; returns
    /// whether it was deferred.
    pub(crate) fn set_defer_publish(&mut self, defer: bool) -> bool {
        let was = self.lanes.first().writer.defer_publish;
        for writer in self.writers() {
            writer.defer_publish = defer;
        }
        was
    }

    /// Sends `payload` to `dest`'s `port` as a data frame (one copy, into
    /// the ring). Returns the frame's message id.
    pub fn send<'d>(
        &mut self,
        dest: impl Into<Dest<'d>>,
        port: u32,
        payload: &[u8],
    ) -> Result<u64, ProcError> {
        let id = self.take_message_id();
        self.write_data(dest.into(), port, id, payload, None)?;
        Ok(id)
    }

    /// Writes a data frame from this proc (through the header cache) and
    /// counts it; `answers`: the end of the inbound record it answers, the
    /// message being handled (the frame then takes that message's lane,
    /// `handled_lane`), else the frame takes the pair's lane.
    pub(crate) fn write_data(
        &mut self,
        dest: Dest<'_>,
        port: u32,
        message_id: u64,
        payload: &[u8],
        answers: Option<u64>,
    ) -> Result<(), ProcError> {
        let Outbox {
            lanes: out_lanes,
            headers,
            name,
            handled_lane,
            ..
        } = self;
        match headers.head(dest, port, name, payload.len())? {
            Some(head) => {
                let lane = data_lane(out_lanes.is_single(), answers, *handled_lane, || head.lane);
                let OutLane {
                    writer,
                    read_position,
                } = out_lanes.get_mut(lane);
                let answer = Answer::of(answers, read_position);
                writer.write_templated(head.bytes, head.id_at, message_id, payload, answer)?
            }
            None => {
                let lanes = out_lanes.len();
                let lane = data_lane(lanes == 1, answers, *handled_lane, || {
                    pair_lane(name.as_str(), dest.name, lanes)
                });
                let OutLane {
                    writer,
                    read_position,
                } = out_lanes.get_mut(lane);
                writer.write(
                    &data_header(dest, port, message_id, name),
                    payload.len(),
                    |out| out.copy_from_slice(payload),
                    Answer::of(answers, read_position),
                )?
            }
        }
        self.count(payload.len());
        Ok(())
    }

    /// Reserves a data frame from this proc (through the header cache);
    /// `answers`: as for [`write_data`](Self::write_data).
    pub(crate) fn reserve_data(
        &mut self,
        dest: Dest<'_>,
        port: u32,
        message_id: u64,
        len: usize,
        answers: Option<u64>,
    ) -> Result<Slot<'_>, ProcError> {
        let Outbox {
            lanes: out_lanes,
            headers,
            name,
            handled_lane,
            sent,
            ..
        } = self;
        let limits = out_lanes.first().writer.limits;
        match headers.head(dest, port, name, len)? {
            Some(head) => {
                let lane = data_lane(out_lanes.is_single(), answers, *handled_lane, || head.lane);
                let OutLane {
                    writer,
                    read_position,
                } = out_lanes.get_mut(lane);
                let answer = Answer::of(answers, read_position);
                let header_len = head.id_at + HEADER_ROOT_LEN - PREFIX_LEN;
                let start = head.bytes.len();
                let reservation =
                    writer.reserve_templated(head.bytes, head.id_at, message_id, len)?;
                Ok(Slot {
                    reservation: Some(reservation),
                    payload: start..start + len,
                    header_len,
                    limits,
                    sent,
                    answer,
                })
            }
            None => {
                let lanes = out_lanes.len();
                let lane = data_lane(lanes == 1, answers, *handled_lane, || {
                    pair_lane(name.as_str(), dest.name, lanes)
                });
                let OutLane {
                    writer,
                    read_position,
                } = out_lanes.get_mut(lane);
                writer.reserve(
                    &data_header(dest, port, message_id, name),
                    len,
                    sent,
                    Answer::of(answers, read_position),
                )
            }
        }
    }

    /// Async [`send`](Outbox::send): waits for room on the proc doorbell
    /// instead of blocking the thread.
    pub async fn send_async<'d>(
        &mut self,
        dest: impl Into<Dest<'d>>,
        port: u32,
        payload: &[u8],
    ) -> Result<u64, ProcError> {
        let id = self.take_message_id();
        let dest = dest.into();
        let frame_len = encoded_len(&data_header(dest, port, id, &self.name), payload.len());
        let lane = self.lane_to(dest.name);
        self.writer(lane).wait_for_room_async(frame_len).await?;
        self.write_data(dest, port, id, payload, None)?;
        Ok(id)
    }

    /// Sends a frame with a header of the caller's choosing (kind, flags,
    /// message id, destination address). The sender should be this proc
    /// (`Sender::Proc { addr: "", name }`) or anonymous: the host refuses
    /// anything else. It takes the lane of this proc and the header's
    /// destination name, as [`send`](Outbox::send) does.
    pub fn send_frame(
        &mut self,
        header: &FrameHeader<'_>,
        payload: &[u8],
    ) -> Result<(), ProcError> {
        let lane = self.lane_to(header.dest_name);
        self.writer(lane).write(
            header,
            payload.len(),
            |out| out.copy_from_slice(payload),
            None,
        )?;
        self.count(payload.len());
        Ok(())
    }

    /// Writes an agent reply to `request`, which came in on `lane`, on that
    /// lane (not counted as application traffic).
    pub(crate) fn send_agent_reply(
        &mut self,
        request: &FrameView<'_>,
        payload: &[u8],
        lane: usize,
    ) -> Result<(), ProcError> {
        let header = reply_header(request, &self.name)?;
        self.lanes.get_mut(lane).writer.write(
            &header,
            payload.len(),
            |out| out.copy_from_slice(payload),
            None,
        )
    }

    /// Reserves a frame to `dest`'s `port` with room for `len` payload
    /// bytes, 16-byte aligned, in the ring itself: serialise into it (e.g.
    /// an rkyv archive) and [`Slot::commit`] it, or [`Slot::commit_len`]
    /// with the length actually written. Waits for room like
    /// [`send`](Outbox::send). Dropping the slot abandons the frame.
    pub fn reserve<'d>(
        &mut self,
        dest: impl Into<Dest<'d>>,
        port: u32,
        len: usize,
    ) -> Result<Slot<'_>, ProcError> {
        let id = self.take_message_id();
        self.reserve_data(dest.into(), port, id, len, None)
    }

    /// Like [`reserve`](Outbox::reserve) with a header of the caller's choosing.
    pub fn reserve_frame(
        &mut self,
        header: &FrameHeader<'_>,
        len: usize,
    ) -> Result<Slot<'_>, ProcError> {
        let lane = self.lane_to(header.dest_name);
        let sent = &mut self.sent;
        self.lanes
            .get_mut(lane)
            .writer
            .reserve(header, len, sent, None)
    }

    /// Publishes every committed frame now, on every lane (waking the host
    /// only where it sleeps on the ring).
    pub fn flush(&mut self) -> Result<(), ProcError> {
        for writer in self.writers() {
            writer.flush()?;
        }
        Ok(())
    }

    /// Starts a batch of sends that are published together: every send,
    /// reserve or reply made through the returned [`SendBatch`] (it
    /// dereferences to this outbox) is committed to the ring but becomes
    /// visible to the host only at [`SendBatch::publish`] (or when the
    /// batch is dropped), with one index store and at most one wake-up per
    /// lane. A batch may span lanes (its destinations' pair lanes, its
    /// replies' arrival lanes): each lane it wrote is published; order
    /// holds within a lane, as for single sends.
    /// A send that finds the ring full still publishes what is committed
    /// before it waits, so a batch larger than the ring cannot deadlock.
    ///
    /// Inside [`Proc::recv_batch`](crate::Proc::recv_batch) sends are
    /// already deferred; a batch there publishes with the receive batch.
    pub fn batch(&mut self) -> SendBatch<'_> {
        let was_deferred = self.set_defer_publish(true);
        SendBatch {
            outbox: self,
            was_deferred,
            ended: false,
        }
    }
}

/// Sends published together; see [`Outbox::batch`]. Dereferences to the
/// [`Outbox`], so `batch.send(..)`, `batch.reserve(..)` and
/// `batch.send_frame(..)` work as usual, each returning its own result:
/// after an error the frames sent before it are still committed and are
/// published with the batch.
#[derive(Debug)]
#[must_use = "a batch publishes when it is dropped; call `publish` to see errors"]
pub struct SendBatch<'a> {
    outbox: &'a mut Outbox,
    was_deferred: bool,
    ended: bool,
}

impl SendBatch<'_> {
    /// Publishes every frame of the batch now (waking the host only if it
    /// sleeps on this ring) and ends the batch.
    pub fn publish(mut self) -> Result<(), ProcError> {
        self.end()
    }

    fn end(&mut self) -> Result<(), ProcError> {
        if std::mem::replace(&mut self.ended, true) {
            return Ok(());
        }
        self.outbox.set_defer_publish(self.was_deferred);
        if self.was_deferred {
            // An enclosing receive batch publishes.
            return Ok(());
        }
        self.outbox.flush()
    }
}

impl Drop for SendBatch<'_> {
    fn drop(&mut self) {
        // A failed publication leaves the frames committed; the next send,
        // flush or receive publishes them (or reports the broken ring).
        let _ = self.end();
    }
}

impl Deref for SendBatch<'_> {
    type Target = Outbox;
    fn deref(&self) -> &Outbox {
        self.outbox
    }
}

impl DerefMut for SendBatch<'_> {
    fn deref_mut(&mut self) -> &mut Outbox {
        self.outbox
    }
}

pub(crate) fn data_header<'a>(
    dest: Dest<'a>,
    port: u32,
    message_id: u64,
    name: &'a ProcName,
) -> FrameHeader<'a> {
    FrameHeader {
        kind: FrameKind::Data,
        flags: if dest.to_client {
            Flags::TO_CLIENT
        } else {
            Flags::NONE
        },
        message_id,
        dest_name: dest.name,
        dest_port: port,
        dest_addr: dest.addr,
        sender: Sender::Proc {
            addr: "",
            name: name.as_str(),
        },
    }
}

/// The lane a data frame takes: the only one on a one-lane proc (no lane
/// choice at all); the lane of the message being handled for a reply
/// (`answers`); else its pair's lane (`pair`, computed only then).
#[inline(always)]
fn data_lane(
    single: bool,
    answers: Option<u64>,
    handled_lane: usize,
    pair: impl FnOnce() -> usize,
) -> usize {
    if single {
        0
    } else if answers.is_some() {
        handled_lane
    } else {
        pair()
    }
}
