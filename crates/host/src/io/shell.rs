//! The I/O thread's handle on the data plane, and the carrying out of the
//! data plane's events.
//!
//! Every task of the I/O thread reaches the [`Dataplane`] through a
//! [`Shared`] handle. Its [`borrow_mut`](Shared::borrow_mut) guard, when it
//! ends, polls every [`Event`] the data plane queued meanwhile and carries
//! each out: a connection's writer or reader is woken, a link is dialled, a
//! control request goes to the control side. So no call site can forget to
//! poll, and the data plane itself holds no runtime object.

use std::cell::{Ref, RefCell, RefMut};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use std::collections::HashMap;

use hostmux_wire::AgentResponse;
use tokio::sync::{oneshot, Notify};

use crate::dataplane::service::ControlJob;
use crate::dataplane::{AgentWaiter, ConnKey, Dataplane, Event, PeerAddr};

/// The wake-ups of one connection's tasks.
#[derive(Clone, Default)]
pub(super) struct ConnWakes {
    /// Its writer: bytes are queued, or it is closing.
    pub(super) writer: Rc<Notify>,
    /// Its reader: it may go on (see [`Event::WakeReader`]).
    pub(super) reader: Rc<Notify>,
}

/// What the shell keeps beside the data plane.
struct Wakers {
    /// Per connection slot: the key it was made for, and its wake-ups.
    conns: Vec<Option<(ConnKey, ConnWakes)>>,
    /// The backend loop: a reply queue that drains waited on has room.
    reply_queue_room: Rc<Notify>,
    /// Links the data plane asked for, and the dial task's wake-up.
    dials: Vec<(ConnKey, PeerAddr)>,
    dial_wake: Rc<Notify>,
    /// Where privileged control requests go, tagged with this thread.
    control: tokio::sync::mpsc::UnboundedSender<ControlJob>,
    /// This I/O thread's index (its lane of every proc).
    io_thread: usize,
    /// The other I/O threads, by index (`None` at this one's).
    others: Vec<Option<super::Control>>,
    /// Who waits for agents' answers, by the token given to the data plane.
    agent_waiters: HashMap<AgentWaiter, oneshot::Sender<AgentResponse>>,
    next_agent_waiter: u64,
}

impl Wakers {
    /// The wake-ups of `key`, made on first use (an event may come before
    /// the connection's tasks ask for them; a `Notify` keeps one permit).
    fn conn(&mut self, key: ConnKey) -> &ConnWakes {
        let index = key.index() as usize;
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        let entry = &mut self.conns[index];
        if !matches!(entry, Some((k, _)) if *k == key) {
            *entry = Some((key, ConnWakes::default()));
        }
        &entry.as_ref().expect("just set").1
    }

    fn carry_out(&mut self, event: Event) {
        match event {
            Event::WakeWriter(key) => self.conn(key).writer.notify_one(),
            Event::WakeReader(key) => self.conn(key).reader.notify_one(),
            Event::ReplyQueueRoom => self.reply_queue_room.notify_one(),
            Event::Dial { link, peer } => {
                self.dials.push((link, peer));
                self.dial_wake.notify_one();
            }
            Event::Control(mut job) => {
                job.io_thread = self.io_thread;
                if self.control.send(job).is_err() {
                    tracing::error!(
                        "control request dropped: the control side is gone (host shutting down)"
                    );
                }
            }
            Event::AgentAnswer { waiter, response } => {
                // No response: dropping the sender tells the waiter.
                if let (Some(reply), Some(response)) =
                    (self.agent_waiters.remove(&waiter), response)
                {
                    let _ = reply.send(response);
                }
            }
            Event::HandOff { thread, frame } => {
                let sent = match self.others.get(thread).and_then(Option::as_ref) {
                    Some(owner) => owner.send(super::Command::HandedFrame(frame)).is_ok(),
                    None => false,
                };
                if !sent {
                    tracing::error!(
                        thread,
                        "frame for another I/O thread's client dropped: that thread is gone (host shutting down)"
                    );
                }
            }
            Event::ConnRemoved(key) => {
                if let Some(entry) = self.conns.get_mut(key.index() as usize) {
                    if matches!(entry, Some((k, _)) if *k == key) {
                        *entry = None;
                    }
                }
            }
        }
    }
}

struct Inner {
    dataplane: RefCell<Dataplane>,
    wakers: RefCell<Wakers>,
}

/// The I/O thread's shared handle on the data plane (cheap to clone).
#[derive(Clone)]
pub(crate) struct Shared(Rc<Inner>);

impl Shared {
    pub(super) fn new(
        dataplane: Dataplane,
        control: tokio::sync::mpsc::UnboundedSender<ControlJob>,
        io_thread: usize,
        others: Vec<Option<super::Control>>,
    ) -> Self {
        Shared(Rc::new(Inner {
            dataplane: RefCell::new(dataplane),
            wakers: RefCell::new(Wakers {
                conns: Vec::new(),
                reply_queue_room: Rc::new(Notify::new()),
                dials: Vec::new(),
                dial_wake: Rc::new(Notify::new()),
                control,
                io_thread,
                others,
                agent_waiters: HashMap::new(),
                next_agent_waiter: 0,
            }),
        }))
    }

    /// The data plane, for a call that may queue events: they are carried
    /// out when the guard ends.
    pub(super) fn borrow_mut(&self) -> PlaneGuard<'_> {
        PlaneGuard {
            dataplane: self.0.dataplane.borrow_mut(),
            wakers: &self.0.wakers,
        }
    }

    /// The data plane, read-only.
    pub(super) fn borrow(&self) -> Ref<'_, Dataplane> {
        self.0.dataplane.borrow()
    }

    /// The wake-ups of connection `key`.
    pub(super) fn conn_wakes(&self, key: ConnKey) -> ConnWakes {
        self.0.wakers.borrow_mut().conn(key).clone()
    }

    /// Rung when a reply queue that drains waited on has room.
    pub(super) fn reply_queue_room(&self) -> Rc<Notify> {
        self.0.wakers.borrow().reply_queue_room.clone()
    }

    /// Rung when links need dialling.
    pub(super) fn dial_wake(&self) -> Rc<Notify> {
        self.0.wakers.borrow().dial_wake.clone()
    }

    /// A token for an agent request whose answer goes to `reply`.
    pub(super) fn agent_waiter(&self, reply: oneshot::Sender<AgentResponse>) -> AgentWaiter {
        let mut wakers = self.0.wakers.borrow_mut();
        wakers.next_agent_waiter += 1;
        let waiter = AgentWaiter(wakers.next_agent_waiter);
        wakers.agent_waiters.insert(waiter, reply);
        waiter
    }

    /// Links to dial, with their addresses.
    pub(super) fn take_dials(&self, out: &mut Vec<(ConnKey, PeerAddr)>) {
        out.append(&mut self.0.wakers.borrow_mut().dials);
    }
}

/// A borrow of the data plane that carries out its events when it ends.
pub(crate) struct PlaneGuard<'a> {
    dataplane: RefMut<'a, Dataplane>,
    wakers: &'a RefCell<Wakers>,
}

impl Deref for PlaneGuard<'_> {
    type Target = Dataplane;

    fn deref(&self) -> &Dataplane {
        &self.dataplane
    }
}

impl DerefMut for PlaneGuard<'_> {
    fn deref_mut(&mut self) -> &mut Dataplane {
        &mut self.dataplane
    }
}

impl Drop for PlaneGuard<'_> {
    fn drop(&mut self) {
        let mut wakers = self.wakers.borrow_mut();
        while let Some(event) = self.dataplane.poll_event() {
            wakers.carry_out(event);
        }
    }
}
