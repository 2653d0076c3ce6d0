//! The host's side of procs' agents: requests written straight into a
//! proc's inbound ring (`AgentRequest` on `AGENT_PORT`, from the service
//! proc), and the answers, which come back through the proc's outbound ring
//! as data frames to the service proc on `AGENT_PORT`.

use hostmux_wire::{AgentRequest, AgentResponse, ProcName, AGENT_MESSAGE_MAX_LEN};
use tokio::sync::oneshot;

use super::write::mark_dirty;
use super::{Dataplane, ProcKey, ProcState};

/// An agent request waiting for its answer.
pub(crate) struct PendingAgent {
    key: ProcKey,
    message_id: u64,
    reply: oneshot::Sender<AgentResponse>,
}

impl Dataplane {
    /// Writes `request` into the proc's inbound ring (published at the next
    /// flush). With `reply`, the answer is sent there; dropping the sender
    /// (the proc failed or left first) tells the waiter it never came.
    /// Returns whether the request was written.
    pub(crate) fn agent_request(
        &mut self,
        key: ProcKey,
        request: AgentRequest,
        reply: Option<oneshot::Sender<AgentResponse>>,
    ) -> bool {
        self.next_agent_id = self.next_agent_id.wrapping_add(1);
        let message_id = self.next_agent_id;
        let limits = self.limits;
        let service = self.service_name.clone();
        let Dataplane { procs, dirty, .. } = self;
        let Some(slot) = super::write::slot_of(procs, key) else {
            return false;
        };
        if matches!(request, AgentRequest::Stop) {
            if !slot.agent || slot.stop_sent {
                return false;
            }
            slot.stop_sent = true;
        }
        let Some(ring) = slot.inbound.as_mut() else {
            return false;
        };
        let len = AgentRequest::frame_len(slot.name.as_str(), service.as_str());
        let written = match ring.try_reserve(len) {
            Ok(mut record) => {
                match request.encode_frame(
                    &mut record,
                    slot.name.as_str(),
                    service.as_str(),
                    message_id,
                    &limits,
                ) {
                    Ok(_) => {
                        record.commit();
                        true
                    }
                    Err(_) => false,
                }
            }
            Err(_) => false,
        };
        if !written {
            tracing::warn!(proc = %slot.name, ?request, "could not write an agent request into the proc's inbound ring");
            return false;
        }
        mark_dirty(dirty, key.index, slot);
        if let Some(reply) = reply {
            self.agent_pending.push(PendingAgent {
                key,
                message_id,
                reply,
            });
        }
        self.flush();
        true
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
            self.agent_request(key, AgentRequest::Stop, None);
        }
    }

    /// Forgets requests waiting on `key` (it failed or left).
    pub(super) fn drop_agent_waiters(&mut self, key: ProcKey) {
        self.agent_pending.retain(|p| p.key != key);
    }
}

/// An answer from `key`'s agent (a data frame to the service proc on
/// `AGENT_PORT`): hands it to whoever waits for `message_id`.
pub(super) fn agent_answer(
    pending: &mut Vec<PendingAgent>,
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
        let waiter = pending.swap_remove(at);
        let _ = waiter.reply.send(response);
    }
}
