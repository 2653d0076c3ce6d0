//! The host's side of procs' agents: requests written straight into a
//! proc's inbound ring (`AgentRequest` on `AGENT_PORT`, from the service
//! proc), and the answers, which come back through the proc's outbound ring
//! as data frames to the service proc on `AGENT_PORT`.

use hostmux_ring::{Producer, RingError};
use hostmux_wire::{AgentRequest, AgentResponse, Limits, ProcName, AGENT_MESSAGE_MAX_LEN};

use super::write::mark_dirty;
use super::{Dataplane, Event, ProcKey, ProcState};

/// Who waits for an agent's answer: a token the I/O shell chose, handed back
/// in [`Event::AgentAnswer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AgentWaiter(pub(crate) u64);

/// An agent request waiting for its answer.
pub(crate) struct PendingAgent {
    key: ProcKey,
    message_id: u64,
    waiter: AgentWaiter,
}

/// Where a proc's agent `Stop` stands. It is asked for once; while the
/// proc's inbound ring has no room for it, it stays queued and is retried
/// whenever the host wakes (the ring's consumer rings the host doorbell when
/// it frees room: the write arms it) until it is written, the proc is
/// removed (it ended: at the latest when the terminate escalation's SIGKILL
/// at the deadline ends it) or its ring is failed or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AgentStop {
    /// Not asked for yet.
    NotAsked,
    /// Asked for; waiting for room in the inbound ring. A detached proc's
    /// ring stays open until it is written.
    Queued,
    /// In the proc's inbound ring, behind the frames already there.
    Written,
    /// Given up (the proc failed, was removed, or closed its ring).
    Abandoned,
}

impl Dataplane {
    /// Writes `request` into the proc's inbound ring (published at the next
    /// flush). With `waiter`, the answer comes out as an
    /// [`Event::AgentAnswer`] for it, with no response if it never will
    /// (the request was not written, or the proc failed or left first).
    /// Returns whether the request was written. A `Stop` goes through
    /// [`Dataplane::agent_stop`] (queued if the ring is full).
    pub(crate) fn agent_request(
        &mut self,
        key: ProcKey,
        request: AgentRequest,
        waiter: Option<AgentWaiter>,
    ) -> bool {
        let written = self.write_agent_request_now(key, request);
        match waiter {
            Some(waiter) if written => {
                let message_id = self.next_agent_id;
                self.agent_pending.push(PendingAgent {
                    key,
                    message_id,
                    waiter,
                });
            }
            Some(waiter) => self.events.push_back(Event::AgentAnswer {
                waiter,
                response: None,
            }),
            None => {}
        }
        written
    }

    fn write_agent_request_now(&mut self, key: ProcKey, request: AgentRequest) -> bool {
        if matches!(request, AgentRequest::Stop) {
            return self.agent_stop(key);
        }
        self.next_agent_id = self.next_agent_id.wrapping_add(1);
        let message_id = self.next_agent_id;
        let limits = self.limits;
        let service = self.service_name.clone();
        let Dataplane { procs, dirty, .. } = self;
        let Some(slot) = super::write::slot_of(procs, key) else {
            return false;
        };
        let Some(ring) = slot.inbound.as_mut() else {
            return false;
        };
        let written =
            write_agent_request(ring, &request, &slot.name, &service, message_id, &limits)
                == AgentWrite::Written;
        if !written {
            tracing::warn!(proc = %slot.name, ?request, "could not write an agent request into the proc's inbound ring");
            return false;
        }
        mark_dirty(dirty, key.index, slot);
        self.flush();
        true
    }

    /// Asks the proc's agent to stop (once; nothing for a proc without an
    /// agent). Written now if its inbound ring has room, else queued (see
    /// [`AgentStop`]). Returns whether it was written now.
    pub(crate) fn agent_stop(&mut self, key: ProcKey) -> bool {
        let Some(slot) = self.proc_mut(key) else {
            return false;
        };
        if !slot.agent || slot.agent_stop != AgentStop::NotAsked {
            return false;
        }
        slot.agent_stop = AgentStop::Queued;
        self.queued_stops.push(key);
        self.retry_agent_stops();
        self.proc_mut(key)
            .is_some_and(|slot| slot.agent_stop == AgentStop::Written)
    }

    /// Writes every queued agent `Stop` that fits now and publishes it; a
    /// detached proc's inbound ring is closed right behind its `Stop`. Call
    /// after each doorbell poll: one branch when nothing is queued.
    pub(crate) fn retry_agent_stops(&mut self) {
        if self.queued_stops.is_empty() {
            return;
        }
        let mut at = 0;
        let mut written = false;
        while let Some(&key) = self.queued_stops.get(at) {
            match self.try_write_stop(key) {
                StopOutcome::StillQueued => at += 1,
                StopOutcome::Written => {
                    written = true;
                    self.queued_stops.swap_remove(at);
                }
                StopOutcome::Done => {
                    self.queued_stops.swap_remove(at);
                }
            }
        }
        if written {
            self.flush();
        }
    }

    /// One attempt at a queued `Stop`.
    fn try_write_stop(&mut self, key: ProcKey) -> StopOutcome {
        self.next_agent_id = self.next_agent_id.wrapping_add(1);
        let message_id = self.next_agent_id;
        let limits = self.limits;
        let service = self.service_name.clone();
        let Dataplane { procs, dirty, .. } = self;
        let Some(slot) = super::write::slot_of(procs, key) else {
            return StopOutcome::Done;
        };
        if slot.agent_stop != AgentStop::Queued {
            return StopOutcome::Done;
        }
        let Some(ring) = slot.inbound.as_mut() else {
            slot.agent_stop = AgentStop::Abandoned;
            return StopOutcome::Done;
        };
        let request = AgentRequest::Stop;
        match write_agent_request(ring, &request, &slot.name, &service, message_id, &limits) {
            AgentWrite::Written => {
                slot.agent_stop = AgentStop::Written;
                if slot.state == ProcState::Detached {
                    // Its route is gone and its ring was only kept open for
                    // this: publish and close.
                    if let Some(mut ring) = slot.inbound.take() {
                        let _ = ring.publish();
                    }
                } else {
                    mark_dirty(dirty, key.index, slot);
                }
                StopOutcome::Written
            }
            AgentWrite::Full => {
                tracing::debug!(proc = %slot.name, "agent stop queued: the proc's inbound ring is full");
                StopOutcome::StillQueued
            }
            AgentWrite::Failed if ring.is_consumer_closed() => {
                // It closed its ring: it is ending already (a SIGTERM that
                // came first, its own exit). Nothing to warn about.
                tracing::debug!(proc = %slot.name, "agent stop not written: the proc closed its inbound ring");
                slot.agent_stop = AgentStop::Abandoned;
                StopOutcome::Done
            }
            AgentWrite::Failed => {
                tracing::warn!(proc = %slot.name, "could not write the agent stop into the proc's inbound ring");
                slot.agent_stop = AgentStop::Abandoned;
                StopOutcome::Done
            }
        }
    }

    /// Gives up a queued `Stop` (the proc failed or is being removed), so
    /// that detaching it closes its ring.
    pub(super) fn abandon_agent_stop(&mut self, key: ProcKey) {
        if let Some(slot) = self.proc_mut(key) {
            if slot.agent_stop == AgentStop::Queued {
                slot.agent_stop = AgentStop::Abandoned;
            }
        }
    }

    /// Asks the live proc called `name` to stop (the polite-stop hook).
    pub(crate) fn agent_stop_by_name(&mut self, name: &ProcName) {
        let key = self.procs.iter().enumerate().find_map(|(index, slot)| {
            let slot = slot.as_ref()?;
            (slot.name == *name && slot.state != ProcState::Detached).then_some(ProcKey {
                index: index as u32,
                generation: slot.generation,
            })
        });
        if let Some(key) = key {
            self.agent_stop(key);
        }
    }

    /// Forgets requests waiting on `key` (it failed or left).
    pub(super) fn drop_agent_waiters(&mut self, key: ProcKey) {
        let events = &mut self.events;
        self.agent_pending.retain(|p| {
            if p.key == key {
                events.push_back(Event::AgentAnswer {
                    waiter: p.waiter,
                    response: None,
                });
            }
            p.key != key
        });
    }
}

/// What a queued `Stop`'s attempt did.
enum StopOutcome {
    Written,
    StillQueued,
    /// Nothing more to do (gone, given up, or not queued).
    Done,
}

/// What writing an agent request into a ring did.
#[derive(Debug, PartialEq, Eq)]
enum AgentWrite {
    Written,
    /// No room now; the ring's doorbell is armed, so the proc's next
    /// release wakes the host.
    Full,
    /// The ring is closed or broken, or the request cannot be encoded.
    Failed,
}

/// Encodes `request` from the service proc to `proc` into `ring` and
/// commits it (published by the caller).
fn write_agent_request(
    ring: &mut Producer,
    request: &AgentRequest,
    proc: &ProcName,
    service: &ProcName,
    message_id: u64,
    limits: &Limits,
) -> AgentWrite {
    if ring.is_consumer_closed() {
        return AgentWrite::Failed;
    }
    let len = AgentRequest::frame_len(proc.as_str(), service.as_str());
    // Twice at most: a ring that filled up may have room by the time the
    // doorbell is armed.
    for _ in 0..2 {
        match ring.try_reserve(len) {
            Ok(mut record) => {
                return match request.encode_frame(
                    &mut record,
                    proc.as_str(),
                    service.as_str(),
                    message_id,
                    limits,
                ) {
                    Ok(_) => {
                        record.commit();
                        AgentWrite::Written
                    }
                    Err(_) => AgentWrite::Failed,
                }
            }
            Err(RingError::Full) => match ring.arm_doorbell(len) {
                Ok(true) => return AgentWrite::Full,
                // It fits after all (the proc released meanwhile).
                Ok(false) if !ring.is_consumer_closed() => continue,
                _ => return AgentWrite::Failed,
            },
            Err(_) => return AgentWrite::Failed,
        }
    }
    AgentWrite::Full
}

/// An answer from `key`'s agent (a data frame to the service proc on
/// `AGENT_PORT`): hands it to whoever waits for `message_id`.
pub(super) fn agent_answer(
    pending: &mut Vec<PendingAgent>,
    events: &mut std::collections::VecDeque<Event>,
    key: ProcKey,
    message_id: u64,
    payload: &[u8],
) {
    #[repr(C, align(16))]
    struct Aligned([u8; AGENT_MESSAGE_MAX_LEN]);
    let mut aligned = Aligned([0; AGENT_MESSAGE_MAX_LEN]);
    let Some(copy) = aligned.0.get_mut(..payload.len()) else {
        return;
    };
    copy.copy_from_slice(payload);
    let Ok(response) = AgentResponse::decode(copy) else {
        // Per frame: trace only, so a proc cannot flood the log with junk.
        tracing::trace!(?key, "undecodable agent answer ignored");
        return;
    };
    if let Some(at) = pending
        .iter()
        .position(|p| p.key == key && p.message_id == message_id)
    {
        let waiter = pending.swap_remove(at).waiter;
        events.push_back(Event::AgentAnswer {
            waiter,
            response: Some(response),
        });
    }
}
