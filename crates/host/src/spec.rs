//! How a proc is given its rings: [`ProcSpec`], [`ChildRings`] and the
//! child-side [`ProcEndpoint`].
//!
//! The host creates both rings of a proc, the proc's share of the host
//! doorbell and the proc's own doorbell before the manager starts it, and
//! hands them to the spec, which turns them into the manager's config. For
//! an in-process proc ([`LocalProc`]) the body receives [`ChildRings`]
//! directly; an OS process ([`crate::ProcessProc`]) gets the fds through
//! `hostmux_proc::protocol::child_config` (inherited fds announced in
//! environment variables). Either way the child maps the rings from the
//! memfds, exactly as a separate process would.

use std::time::Duration;

pub use hostmux_proc::protocol::LaneFds;

use hostmux_lifecycle::{LocalProcConfig, LocalProcContext, ProcManager};
use hostmux_ring::{Consumer, Doorbell, Producer, SharedRing, WaitOutcome};
use hostmux_wire::{
    encode_frame, encoded_len, split_frame, FrameHeader, FrameView, Limits, ProcId, ProcName,
};

use crate::HostError;

/// A proc's ends of its rings, as memfds, plus the host's doorbells: one
/// lane ([`LaneFds`]: an inbound ring, an outbound ring and the doorbell of
/// the host I/O thread that owns both) per I/O thread.
#[derive(Debug)]
pub struct ChildRings {
    /// The proc's name.
    pub name: ProcName,
    /// The proc's lanes, lane 0 first. In each, the inbound ring (host
    /// produces, proc consumes), the outbound ring (proc produces, host
    /// consumes) and the host doorbell of the lane's thread: the proc rings
    /// it when it publishes records that thread sleeps on, or releases space
    /// it waits for.
    pub lanes: Vec<LaneFds>,
    /// The proc's own doorbell, shared by every lane: the host's inbound
    /// producers ring it when the proc sleeps on its inbound rings in
    /// doorbell mode, and its outbound consumers when the proc waits for
    /// room in doorbell mode (futex sleepers are woken through the ring's
    /// futex word instead).
    pub proc_doorbell: Doorbell,
    /// The frame limits the host enforces.
    pub limits: Limits,
    /// The proc's id: the host's frontend address and the proc's name.
    pub id: ProcId,
    /// The host's service proc (the only sender the proc's agent obeys).
    pub service_name: ProcName,
}

impl ChildRings {
    /// What `hostmux_proc::boot_from` takes: the same lanes, doorbells,
    /// id and limits, for a proc on `hostmux-proc`'s API in this process
    /// (what [`LocalProc::booted`] does).
    pub fn into_boot_params(self) -> hostmux_proc::protocol::BootParams {
        hostmux_proc::protocol::BootParams {
            id: self.id,
            service_name: self.service_name,
            limits: self.limits,
            lanes: self.lanes,
            proc_doorbell: Some(self.proc_doorbell),
        }
    }

    /// Maps both rings of the proc's one lane and wires the doorbell: the
    /// proc's view of its rings. [`ProcEndpoint`] serves one lane: a host
    /// with several I/O threads (several lanes) gets
    /// [`HostError::EndpointLanes`]; boot such a proc with `hostmux-proc`.
    pub fn attach(self) -> Result<ProcEndpoint, HostError> {
        let ring_error = |source| HostError::Ring {
            name: self.name.clone(),
            source,
        };
        let lanes = self.lanes.len();
        let lane = match <[LaneFds; 1]>::try_from(self.lanes) {
            Ok([lane]) => lane,
            Err(_) => {
                return Err(HostError::EndpointLanes {
                    name: self.name,
                    lanes,
                })
            }
        };
        let mut inbound = SharedRing::attach(lane.inbound)
            .and_then(SharedRing::into_consumer)
            .map_err(ring_error)?;
        let mut outbound = SharedRing::attach(lane.outbound)
            .and_then(SharedRing::into_producer)
            .map_err(ring_error)?;
        inbound.set_producer_doorbell(Some(lane.host_doorbell.try_clone().map_err(ring_error)?));
        outbound.set_consumer_doorbell(Some(lane.host_doorbell));
        Ok(ProcEndpoint {
            name: self.name,
            inbound,
            outbound,
            limits: self.limits,
        })
    }
}

/// A proc's side of its rings, attached. A minimal blocking API for
/// in-process procs and tests; the full child library is `hostmux-proc`.
#[derive(Debug)]
pub struct ProcEndpoint {
    /// The proc's name.
    pub name: ProcName,
    /// Frames from the host.
    pub inbound: Consumer,
    /// Frames to the host.
    pub outbound: Producer,
    /// The limits frames are encoded under.
    pub limits: Limits,
}

/// What [`ProcEndpoint::recv`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received<T> {
    /// A frame, handed to the closure, which returned this.
    Frame(T),
    /// Nothing arrived in time.
    TimedOut,
    /// The host closed the inbound ring and nothing is left to read.
    Closed,
}

impl ProcEndpoint {
    /// Encodes a frame straight into the outbound ring (waiting up to
    /// `timeout` for room) and publishes it.
    pub fn send(
        &mut self,
        header: &FrameHeader<'_>,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), HostError> {
        let len = encoded_len(header, payload.len());
        let ring_error = |source| HostError::Ring {
            name: self.name.clone(),
            source,
        };
        loop {
            match self.outbound.try_reserve(len) {
                Ok(mut slot) => {
                    encode_frame(&mut slot, header, payload, &self.limits)?;
                    slot.commit();
                    return self.outbound.publish().map_err(ring_error);
                }
                Err(hostmux_ring::RingError::Full) => {
                    match self
                        .outbound
                        .wait_writable(len, Some(timeout))
                        .map_err(ring_error)?
                    {
                        WaitOutcome::Ready => continue,
                        _ => return Err(ring_error(hostmux_ring::RingError::Full)),
                    }
                }
                Err(e) => return Err(ring_error(e)),
            }
        }
    }

    /// Waits up to `timeout` for the next inbound frame and hands it, read
    /// in place, to `f`; releases it afterwards.
    pub fn recv<T>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(FrameView<'_>) -> T,
    ) -> Result<Received<T>, HostError> {
        let name = self.name.clone();
        let ring_error = |source| HostError::Ring { name, source };
        loop {
            if let Some(record) = self.inbound.peek().map_err(ring_error.clone())? {
                let (frame, _) = split_frame(record, &self.limits)?;
                let out = f(frame);
                self.inbound.release().map_err(ring_error)?;
                return Ok(Received::Frame(out));
            }
            match self
                .inbound
                .wait_readable(Some(timeout))
                .map_err(ring_error.clone())?
            {
                WaitOutcome::Ready => continue,
                WaitOutcome::TimedOut => return Ok(Received::TimedOut),
                WaitOutcome::PeerClosed => return Ok(Received::Closed),
            }
        }
    }
}

/// Turns a proc's rings into the config its manager spawns it with.
///
/// The seam between the host and the lifecycle crate: the host never knows
/// whether a proc is a task or a process, only that its spec takes the rings.
pub trait ProcSpec<M: ProcManager>: Send + 'static {
    /// Builds the manager's config, giving the proc `rings`. The host's
    /// spawn-ready timeout governs readiness, so specs should disable any
    /// manager-level ready timeout of their own.
    fn into_config(self, rings: ChildRings) -> Result<M::Config, HostError>;

    /// Whether the host pings the proc's agent (`AgentRequest::Ping` on
    /// `AGENT_PORT`) after the ready record and counts the proc ready only
    /// once it answers. Procs built on `hostmux-proc` have an agent; the
    /// default is `false`.
    fn pings_agent(&self) -> bool {
        false
    }

    /// This proc's inbound and outbound ring sizes in bytes; `None` takes
    /// the host's [`HostConfig`](crate::HostConfig) default.
    fn ring_sizes(&self) -> (Option<usize>, Option<usize>) {
        (None, None)
    }

    /// Whether the proc maps its rings and receives frames (the default).
    /// A proc that does not (an OS proc spawned with a readiness mode other
    /// than the boot protocol) is supervised like any other, but the host
    /// never marks its data-plane slot ready: frames to it are answered
    /// `Undeliverable` with reason `NotReady`, and `spawn` does not wait
    /// for the data plane before it returns.
    fn receives_frames(&self) -> bool {
        true
    }

    /// How the host restarts this proc when it ends (see
    /// [`RestartPolicy`](crate::RestartPolicy)); the default never does.
    /// A spec whose policy restarts must also give
    /// [`ProcSpec::restart_copy`].
    fn restart_policy(&self) -> crate::RestartPolicy {
        crate::RestartPolicy::never()
    }

    /// Another spec for the same proc, for its next start after a restart
    /// (called before this one is used; the copy is kept for every later
    /// restart). `None` (the default): it cannot be restarted, and a spawn
    /// with a restarting policy fails with [`HostError::CannotRestart`].
    fn restart_copy(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// Any closure from rings to the manager's config is a spec: a custom
/// manager needs no spec type of its own.
///
/// ```
/// # fn check<M: hostmux_lifecycle::ProcManager>(config: M::Config) where M::Config: Send + 'static {
/// use hostmux_host::{ChildRings, HostError, ProcSpec};
/// // Hands the rings' memfds to whatever M::Config is built from.
/// let spec = move |_rings: ChildRings| -> Result<M::Config, HostError> { Ok(config) };
/// fn is_spec<M: hostmux_lifecycle::ProcManager>(_: impl ProcSpec<M>) {}
/// is_spec::<M>(spec);
/// # }
/// ```
impl<M, F> ProcSpec<M> for F
where
    M: ProcManager,
    F: FnOnce(ChildRings) -> Result<M::Config, HostError> + Send + 'static,
{
    fn into_config(self, rings: ChildRings) -> Result<M::Config, HostError> {
        self(rings)
    }
}

type LocalBody =
    Box<dyn FnOnce(LocalProcContext, ChildRings) -> hostmux_lifecycle::LocalProcFuture + Send>;

/// An in-process proc for the [`LocalProcManager`](hostmux_lifecycle::LocalProcManager): a body that receives its
/// lifecycle context and its rings ([`LocalProc::new`]), or a
/// `hostmux-proc` [`Proc`](hostmux_proc::Proc) loop on a blocking thread
/// ([`LocalProc::booted`]).
pub struct LocalProc {
    body: LocalBody,
    /// Whether the host pings its agent before it counts as ready.
    pings_agent: bool,
}

impl std::fmt::Debug for LocalProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProc").finish_non_exhaustive()
    }
}

impl LocalProc {
    /// A proc running `body`. It should attach its rings, call
    /// [`LocalProcContext::report_ready`], and return when its inbound ring
    /// closes or [`LocalProcContext::stopped`] resolves.
    pub fn new<F, Fut>(body: F) -> Self
    where
        F: FnOnce(LocalProcContext, ChildRings) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            body: Box::new(move |cx, rings| Box::pin(body(cx, rings))),
            pings_agent: false,
        }
    }

    /// An in-process proc in one call, written like an OS proc on
    /// `hostmux-proc`: its [`Proc`](hostmux_proc::Proc) is booted from the
    /// rings ([`ChildRings::into_boot_params`]) and handed to `body`, which
    /// runs on a blocking thread (receive, send and reply block). The host
    /// counts it ready once its agent answers, i.e. once `body` receives.
    ///
    /// It ends when `body` returns: `Ok` is exit code 0, an error a failed
    /// status naming it. A terminate (e.g. [`Host::terminate_proc`](crate::Host::terminate_proc))
    /// asks it to stop through a [`StopHandle`](hostmux_proc::StopHandle),
    /// as SIGTERM asks an OS proc: its receive calls then report
    /// [`Recv::Stopped`](hostmux_proc::Recv::Stopped) and a
    /// [`Proc::serve`](hostmux_proc::Proc::serve) loop returns. A body that
    /// does not return is reported killed at the grace's end, but its thread
    /// runs on until it returns (threads cannot be killed).
    ///
    /// ```no_run
    /// # async fn demo(host: hostmux_host::Host<hostmux_lifecycle::LocalProcManager>) -> Result<(), hostmux_host::HostError> {
    /// use hostmux_host::LocalProc;
    ///
    /// let echo = LocalProc::booted(|mut proc| {
    ///     proc.serve(|mut message| {
    ///         let payload = message.payload();
    ///         message.reply(payload)
    ///     })
    /// });
    /// host.spawn("echo", echo).await?;
    /// # Ok(()) }
    /// ```
    pub fn booted<F>(body: F) -> Self
    where
        F: FnOnce(hostmux_proc::Proc) -> Result<(), hostmux_proc::ProcError> + Send + 'static,
    {
        let mut spec = Self::new(move |mut cx, rings| async move {
            let name = rings.name.clone();
            let mut proc = hostmux_proc::boot_from(rings.into_boot_params())
                .map_err(|e| format!("booting in-process proc '{name}': {e}"))?;
            let stop = proc
                .stop_handle()
                .map_err(|e| format!("in-process proc '{name}': {e}"))?;
            cx.report_ready();
            let mut worker = tokio::task::spawn_blocking(move || body(proc));
            let joined = tokio::select! {
                joined = &mut worker => joined,
                () = cx.stopped() => {
                    stop.stop();
                    worker.await
                }
            };
            match joined {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("in-process proc '{name}': {e}")),
                Err(e) => Err(format!("in-process proc '{name}' panicked: {e}")),
            }
        });
        spec.pings_agent = true;
        spec
    }
}

/// For the [`LocalProcManager`](hostmux_lifecycle::LocalProcManager), and any manager built on it (whose config
/// is a [`LocalProcConfig`]).
impl<M: ProcManager<Config = LocalProcConfig>> ProcSpec<M> for LocalProc {
    fn into_config(self, rings: ChildRings) -> Result<LocalProcConfig, HostError> {
        let body = self.body;
        Ok(LocalProcConfig::new(move |cx| body(cx, rings)).ready_timeout(Duration::ZERO))
    }

    fn pings_agent(&self) -> bool {
        self.pings_agent
    }
}
