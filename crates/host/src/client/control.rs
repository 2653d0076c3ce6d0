//! The control-plane client: [`ControlClient`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hostmux_wire::{
    ControlRequest, ControlResponse, FrameHeader, FrameKind, ProcInfo, ProcState, Sender,
    SpawnRequest, TerminateSummary,
};

use super::Client;
use crate::HostError;

/// A control-plane client: a [`Client`] connected through the host's
/// control socket (peer credentials checked) or its TCP frontend with the
/// host's token, sending `ControlRequest` frames to the service proc.
#[derive(Debug)]
pub struct ControlClient {
    client: Client,
    service_name: String,
    next_id: u64,
}

fn control_client_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "ctl-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl ControlClient {
    /// Connects to the control socket at `path` (service proc `service`).
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Self, HostError> {
        Self::connect_unix_with(path, "service").await
    }

    /// [`ControlClient::connect_unix`] for a host whose service proc has
    /// another name.
    pub async fn connect_unix_with(
        path: impl AsRef<Path>,
        service_name: &str,
    ) -> Result<Self, HostError> {
        let client = Client::connect_unix(path, &control_client_name(), None, service_name).await?;
        Ok(Self::over(client, service_name))
    }

    /// Connects to a TCP frontend (`host:port`) presenting `token`.
    pub async fn connect_tcp(addr: &str, token: &str) -> Result<Self, HostError> {
        Self::connect_tcp_with(addr, token, "service").await
    }

    /// [`ControlClient::connect_tcp`] for another service proc name.
    pub async fn connect_tcp_with(
        addr: &str,
        token: &str,
        service_name: &str,
    ) -> Result<Self, HostError> {
        let client =
            Client::connect_tcp(addr, &control_client_name(), Some(token), service_name).await?;
        Ok(Self::over(client, service_name))
    }

    /// Uses an already connected client (its privilege decides the answers).
    pub fn over(client: Client, service_name: &str) -> Self {
        Self {
            client,
            service_name: service_name.to_owned(),
            next_id: 0,
        }
    }

    /// Sends one request and waits for its response (frames that are not
    /// the response are skipped). An `Error` response is returned as is;
    /// the typed methods turn it into [`HostError::Control`].
    pub async fn request(
        &mut self,
        request: &ControlRequest,
    ) -> Result<ControlResponse, HostError> {
        self.next_id += 1;
        let id = self.next_id;
        let payload = request.to_bytes()?;
        let name = self.client.name().to_owned();
        let header = FrameHeader {
            kind: FrameKind::ControlRequest,
            sender: Sender::Client { name: &name },
            ..FrameHeader::data(&self.service_name, id)
        };
        self.client.queue_frame(&header, &payload)?;
        self.client.flush().await?;
        loop {
            let Some(frame) = self.client.recv().await? else {
                return Err(HostError::ClosedBeforeAnswer {
                    addr: self.client.peer().to_owned(),
                });
            };
            if frame.message_id != id {
                continue;
            }
            match frame.kind {
                FrameKind::ControlResponse => {
                    return Ok(ControlResponse::decode(&frame.payload)?);
                }
                FrameKind::Undeliverable => {
                    let reason = frame.undeliverable().map(|u| u.reason);
                    return Err(HostError::Unexpected(format!(
                        "the request came back undeliverable ({reason:?})"
                    )));
                }
                _ => continue,
            }
        }
    }

    /// Spawns a proc and waits for it to be ready; returns its pid.
    pub async fn spawn(&mut self, request: SpawnRequest) -> Result<u32, HostError> {
        match self.request(&ControlRequest::Spawn(request)).await? {
            ControlResponse::Spawned { pid, .. } => Ok(pid),
            other => Err(unexpected(other)),
        }
    }

    /// Terminates a proc (polite stop, SIGTERM, SIGKILL after `timeout_ms`).
    pub async fn terminate(&mut self, name: &str, timeout_ms: u64) -> Result<ProcState, HostError> {
        let request = ControlRequest::Terminate {
            name: name.to_owned(),
            timeout_ms,
        };
        match self.request(&request).await? {
            ControlResponse::Stopped { state, .. } => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// Kills a proc now.
    pub async fn kill(&mut self, name: &str) -> Result<ProcState, HostError> {
        let request = ControlRequest::Kill {
            name: name.to_owned(),
        };
        match self.request(&request).await? {
            ControlResponse::Stopped { state, .. } => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// Live procs and recently gone ones.
    pub async fn list(&mut self) -> Result<Vec<ProcInfo>, HostError> {
        match self.request(&ControlRequest::List).await? {
            ControlResponse::Procs(procs) => Ok(procs),
            other => Err(unexpected(other)),
        }
    }

    /// Counters of one proc, or of all.
    pub async fn stats(&mut self, name: Option<&str>) -> Result<Vec<ProcInfo>, HostError> {
        let request = ControlRequest::Stats {
            name: name.map(str::to_owned),
        };
        match self.request(&request).await? {
            ControlResponse::Procs(procs) => Ok(procs),
            other => Err(unexpected(other)),
        }
    }

    /// The host's links to other hosts (state, queued, in flight, round
    /// trip; one entry per configured peer it has exchanged frames with).
    pub async fn links(&mut self) -> Result<Vec<hostmux_wire::LinkInfo>, HostError> {
        match self.request(&ControlRequest::Links).await? {
            ControlResponse::Links(links) => Ok(links),
            other => Err(unexpected(other)),
        }
    }

    /// Terminates every proc, a bounded number at a time, each with
    /// `timeout_ms` of grace before SIGKILL
    /// ([`Host::terminate_children`](crate::Host::terminate_children)).
    pub async fn terminate_all(&mut self, timeout_ms: u64) -> Result<TerminateSummary, HostError> {
        match self
            .request(&ControlRequest::TerminateAll { timeout_ms })
            .await?
        {
            ControlResponse::TerminatedAll(summary) => Ok(summary),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(response: ControlResponse) -> HostError {
    match response {
        ControlResponse::Error { kind, message } => HostError::Control { kind, message },
        other => HostError::Unexpected(format!("{other:?}")),
    }
}
