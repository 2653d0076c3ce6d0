//! The receiving side's rings: one inbound ring per lane, read round robin,
//! and the sleep on all of them at once.
//!
//! # Sleeping on several rings
//!
//! Each inbound ring has its own Dekker pair (the ring protocol): the proc
//! announces in the ring that it sleeps, then checks the ring again; the
//! host publishes, then checks the announcement, and rings the proc's
//! doorbell if it is there. With several lanes the proc announces on every
//! lane that can still get records, and sleeps on the one proc doorbell
//! that every lane's producer rings. No wake-up is lost: for each lane,
//! either the proc's check after its announcement on that lane sees the
//! record, or the host's check after publishing it sees the announcement and
//! rings the doorbell, whose count stays until the proc reads it. A record
//! on any lane published after the proc's last check therefore rings the
//! doorbell. Announcements are withdrawn after the sleep (or as soon as one
//! lane is found readable), so a host thread rings only while the proc
//! really sleeps. Sleeping on futexes (no proc doorbell) serves one ring
//! only: a proc with several lanes needs the doorbell, which `boot_from`
//! checks.

use std::time::{Duration, Instant};

use hostmux_ring::{Consumer, Doorbell, WaitOutcome};
use hostmux_wire::{HeaderMemo, Limits};

use crate::lane::{Lanes, LANE_QUANTUM};
use crate::signals::StopSignals;
use crate::wait::{spin_for, AsyncDoorbell, AsyncSignal};
use crate::{ProcError, SIGNAL_CHECK_INTERVAL};

/// One lane's inbound ring and what the proc remembers about its frames.
#[derive(Debug)]
pub(crate) struct InLane {
    pub(crate) consumer: Consumer,
    /// Application frames from one sender to one port repeat their header
    /// but for the message id: validated once per run, per lane (agent
    /// requests do not go through it, so they do not break a run).
    pub(crate) memo: HeaderMemo,
}

/// The proc's inbound rings and how it waits on them.
#[derive(Debug)]
pub(crate) struct Inbox {
    /// One per lane (lane 0 held inline: see [`Lanes`]).
    pub(crate) lanes: Lanes<InLane>,
    /// The lane a receive looks at first: the lane of the last
    /// application message found at a head (the next one handed out), or
    /// the one after it once that lane gave [`LANE_QUANTUM`] messages in a
    /// row (so a busy lane cannot starve another). Unused with one lane.
    pub(crate) next: usize,
    /// Messages in a row from lane `next` (the current run). Unused with
    /// one lane.
    pub(crate) run: u32,
    /// The proc's `frames_in` at the last multi-lane settle: a settle that
    /// sees it unchanged looks again at a head it already counted.
    pub(crate) frames_in_at_settle: u64,
    /// The lane of the record at the head that was peeked last, and of the
    /// last message handed out.
    pub(crate) head: usize,
    /// The last message handed out still occupies its record (in `head`).
    pub(crate) unreleased: bool,
    pub(crate) limits: Limits,
    pub(crate) doorbell: Option<Doorbell>,
    pub(crate) async_doorbell: Option<AsyncDoorbell>,
    pub(crate) spin: Duration,
    /// The spin of a receive that follows a send (`ANSWERING_SPIN`).
    pub(crate) answering_spin: Duration,
    /// The outbox's sent-frame count at the previous receive wait.
    pub(crate) sent_at_last_wait: u64,
}

fn ring(source: hostmux_ring::RingError) -> ProcError {
    ProcError::Ring {
        ring: "inbound",
        source,
    }
}

/// Whether any lane has a record.
fn any_readable(lanes: &mut Lanes<InLane>) -> Result<bool, ProcError> {
    for lane in lanes.iter_mut() {
        if lane.consumer.is_readable().map_err(ring)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Announces the sleep on every lane that can still get records (see the
/// module docs). `true`: announced on at least one lane and none is
/// readable, so sleep on the doorbell. `false`: a lane is readable, or no
/// lane can get records any more; nothing stays announced; look again.
fn arm_all(lanes: &mut Lanes<InLane>) -> Result<bool, ProcError> {
    let mut armed_any = false;
    for k in 0..lanes.len() {
        let consumer = &mut lanes.get_mut(k).consumer;
        if consumer.arm_doorbell().map_err(ring)? {
            armed_any = true;
            continue;
        }
        // Not armed: readable, or the host closed the ring (then only its
        // remaining records count, and none will follow).
        if consumer.is_producer_closed() && !consumer.is_readable().map_err(ring)? {
            continue;
        }
        disarm_all(lanes.iter_mut().take(k));
        return Ok(false);
    }
    if !armed_any {
        return Ok(false);
    }
    Ok(true)
}

/// Withdraws the sleep announcements and clears the host's "rang" flags.
fn disarm_all<'a>(lanes: impl Iterator<Item = &'a mut InLane>) {
    for lane in lanes {
        lane.consumer.disarm();
        lane.consumer.take_pending();
    }
}

impl Inbox {
    /// Counts the application message found at the head of `lane` in the
    /// current run of messages from one lane (`continues`: the receive
    /// started at `lane`; `handed_out`: the message counted last was taken
    /// since, so this one is new). The next receive starts at `lane` again
    /// until it gave [`LANE_QUANTUM`] in a row, then at the lane after it.
    /// Only for several lanes.
    pub(crate) fn count_run(&mut self, lane: usize, continues: bool, handed_out: bool) {
        self.run = if !continues {
            1
        } else if handed_out {
            self.run + 1
        } else {
            self.run.max(1)
        };
        if self.run >= LANE_QUANTUM {
            self.next = lane + 1;
            self.run = 0;
        } else {
            self.next = lane;
        }
    }

    /// Releases the record of the last message handed out, if it still
    /// holds one; it is on `lane` (`head`; a one-lane proc passes the
    /// constant 0 and so reads nothing to find it).
    #[inline(always)]
    pub(crate) fn release_handed_out(&mut self, lane: usize) -> Result<(), ProcError> {
        if std::mem::take(&mut self.unreleased) {
            self.lanes.get_mut(lane).consumer.release().map_err(ring)?;
        }
        Ok(())
    }

    /// Whether the host closed every lane and none has a record left.
    pub(crate) fn closed_and_empty(&mut self) -> Result<bool, ProcError> {
        for lane in self.lanes.iter_mut() {
            if !lane.consumer.is_producer_closed() || lane.consumer.is_readable().map_err(ring)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Waits until a lane is readable, the host closed one, or a stop
    /// signal arrived (`true`), or until `deadline` (`false`). `sent` is
    /// the outbox's sent-frame count (a proc that sent since its last wait
    /// spins longer); `signals` the stop-signal pipe, if any.
    pub(crate) fn wait(
        &mut self,
        deadline: Option<Instant>,
        sent: u64,
        signals: Option<&StopSignals>,
    ) -> Result<bool, ProcError> {
        let left = |deadline: Option<Instant>| {
            deadline.map(|d| d.saturating_duration_since(Instant::now()))
        };
        if left(deadline).is_some_and(|l| l.is_zero()) {
            return Ok(false);
        }
        // Spin first (the ring's own waits are set not to spin: see `spin_for`),
        // longer if this proc sent something since its last wait.
        let spin = if sent == self.sent_at_last_wait {
            self.spin
        } else {
            self.answering_spin
        };
        self.sent_at_last_wait = sent;
        let lanes = &mut self.lanes;
        if spin_for(spin, || any_readable(lanes))? {
            return Ok(true);
        }
        let Some(doorbell) = self.doorbell.as_ref() else {
            // Futex mode (one lane: `boot_from` checks): sliced if a signal
            // must be noticed.
            let mut timeout = left(deadline);
            if signals.is_some() {
                timeout =
                    Some(timeout.map_or(SIGNAL_CHECK_INTERVAL, |t| t.min(SIGNAL_CHECK_INTERVAL)));
            }
            let outcome = self
                .lanes
                .get_mut(0)
                .consumer
                .wait_readable(timeout)
                .map_err(ring)?;
            return Ok(
                outcome != WaitOutcome::TimedOut || !left(deadline).is_some_and(|l| l.is_zero())
            );
        };
        // Doorbell mode: announce on every lane, sleep on the doorbell and
        // the stop-signal pipe together.
        if !arm_all(&mut self.lanes)? {
            return Ok(true);
        }
        let timeout = left(deadline).map(|t| {
            rustix::time::Timespec::try_from(t).unwrap_or(rustix::time::Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let signal_fd = signals.map(StopSignals::fd);
        let polled = {
            use rustix::event::{poll, PollFd, PollFlags};
            let mut set = [
                PollFd::new(doorbell, PollFlags::IN),
                PollFd::new(doorbell, PollFlags::IN),
            ];
            if let Some(fd) = signal_fd {
                set[1] = PollFd::new(&fd, PollFlags::IN);
                poll(&mut set, timeout.as_ref())
            } else {
                poll(&mut set[..1], timeout.as_ref())
            }
        };
        disarm_all(self.lanes.iter_mut());
        doorbell.drain().map_err(ProcError::ring("proc doorbell"))?;
        match polled {
            Ok(0) => Ok(!left(deadline).is_some_and(|l| l.is_zero())),
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(true),
            Err(e) => Err(ProcError::Io {
                what: "waiting on the proc doorbell",
                source: e.into(),
            }),
        }
    }

    /// Async [`wait`](Inbox::wait) without a deadline: sleeps on the proc
    /// doorbell (and `signal`, the stop-signal pipe) through tokio.
    pub(crate) async fn wait_async(
        &mut self,
        signal: Option<&AsyncSignal>,
    ) -> Result<(), ProcError> {
        if self.async_doorbell.is_none() {
            let doorbell = self.doorbell.as_ref().ok_or(ProcError::NoProcDoorbell)?;
            self.async_doorbell = Some(AsyncDoorbell::new(doorbell)?);
        }
        if !arm_all(&mut self.lanes)? {
            return Ok(());
        }
        let Some(doorbell) = &self.async_doorbell else {
            return Ok(());
        };
        let woke = match signal {
            Some(signal) => tokio::select! {
                r = doorbell.wait() => r,
                r = signal.wait() => r,
            },
            None => doorbell.wait().await,
        };
        disarm_all(self.lanes.iter_mut());
        woke
    }
}
