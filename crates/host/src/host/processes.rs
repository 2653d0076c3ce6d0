//! Serving OS-process procs: the host side of the polite-stop hook.

use std::sync::{Arc, OnceLock};

use hostmux_lifecycle::{PoliteStopHook, ProcessProcManager, ProcessProcManagerBuilder};
use hostmux_wire::{Addr, ProcName};

use crate::io::{Command, Controls};
use crate::{Host, HostConfig, HostError, ServeHandle};

impl Host<ProcessProcManager> {
    /// Serves OS-process procs: builds the manager from `builder` with a
    /// polite-stop hook that asks a proc's agent to stop (an
    /// `AgentRequest::Stop` written into its inbound ring, behind the frames
    /// already there) whenever the lifecycle escalation starts, then
    /// [`Host::serve`]s. [`Host::terminate_proc`] also sends that stop
    /// itself; [`Host::terminate_children`] relies on the hook, so that no
    /// proc leaves before the manager has counted it.
    pub async fn serve_processes(
        builder: ProcessProcManagerBuilder,
        addr: Addr,
        config: HostConfig,
    ) -> Result<(Self, ServeHandle), HostError> {
        let slot: Arc<OnceLock<Controls>> = Arc::new(OnceLock::new());
        let hook_slot = slot.clone();
        let hook: PoliteStopHook = Arc::new(move |name: &ProcName| {
            if let Some(control) = hook_slot.get() {
                let _ = control.send(Command::AgentStopName(name.clone()));
            }
            Box::pin(async {})
        });
        let manager = builder.polite_stop(hook).build();
        let (host, serving) = Self::serve(manager, addr, config).await?;
        let _ = slot.set(host.inner.control.try_clone()?);
        Ok((host, serving))
    }
}
