//! `hostmux serve`: run a host until SIGTERM or SIGINT, then terminate every
//! proc with the configured grace and print the summary.
//!
//! Under systemd (`Type=notify`) it sends `READY=1` once the frontend is
//! bound and `STOPPING=1` when shutdown starts, written straight to
//! `$NOTIFY_SOCKET` as one datagram (the protocol is one line of text; no
//! crate needed).

use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;

use anyhow::Context as _;
use hostmux_host::{Host, HostConfig, HostError};
use hostmux_lifecycle::{BulkTerminateMode, ProcessProcManager, RunAs};
use hostmux_wire::Addr;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{CliError, ServeArgs};

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(args))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOSTMUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The host configuration `serve` flags describe.
pub(crate) fn host_config(args: &ServeArgs) -> anyhow::Result<HostConfig> {
    let token = crate::send::read_token(args.token_file.as_deref())?;
    Ok(HostConfig {
        token: (!token.is_empty())
            .then(|| String::from_utf8(token))
            .transpose()
            .map_err(|_| CliError::usage("the token file must hold UTF-8 text"))?,
        spawn_ready_timeout: args.spawn_ready_timeout,
        inbound_ring_bytes: args.inbound_ring_bytes,
        outbound_ring_bytes: args.outbound_ring_bytes,
        frontend: args.frontend_kind.into(),
        control_socket: Some(args.control_socket.clone()),
        half_close_linger: args.half_close_linger,
        max_hops: args.max_hops,
        conn_memory: args.conn_memory,
        max_connections: args.max_connections as usize,
        frame_timeout: args.frame_timeout,
        ..HostConfig::default()
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let addr: Addr = args.frontend.parse().map_err(|e| {
        CliError::usage(format!(
            "frontend address {:?} is not valid ({e}); use tcp:HOST:PORT, unix:/PATH or unix:@NAME",
            args.frontend
        ))
    })?;
    let config = host_config(&args)?;
    if config.conn_memory < config.limits.max_frame_len {
        tracing::warn!(
            conn_memory = config.conn_memory,
            max_frame_len = config.limits.max_frame_len,
            "--conn-memory is below the largest frame: connections sending frames larger than it will be closed"
        );
    }
    if let Some(dir) = args.control_socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError::usage(format!(
                "cannot create {} for the control socket ({e}); pass --control-socket PATH in a writable directory",
                dir.display()
            ))
        })?;
    }
    // Listen for signals before anything is spawned, so an early SIGTERM
    // still stops the procs.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let proc_user = proc_user(args.proc_user.as_deref())?;
    let manager = ProcessProcManager::builder().default_run_as(proc_user);
    let (host, serving) = Host::serve_processes(manager, addr.clone(), config)
        .await
        .map_err(|e| match e {
            HostError::InsecureBind { .. } => anyhow::Error::new(CliError::usage(format!(
                "refusing to bind the non-loopback frontend {addr} without a token; pass --token-file FILE or bind 127.0.0.1"
            ))),
            e @ HostError::ControlSocket { .. } => anyhow::Error::new(CliError::usage(format!(
                "{e}; stop the other host or pass another --control-socket"
            ))),
            other => anyhow::Error::new(other).context(format!(
                "cannot serve on {addr}; is another host already bound there? pass another --frontend"
            )),
        })?;
    println!(
        "hostmux serving on {} ({:?} frontend), control socket {}; stop with SIGTERM or Ctrl-C",
        host.addr(),
        serving.frontend(),
        args.control_socket.display()
    );
    notify_systemd("READY=1");

    let which = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    notify_systemd("STOPPING=1");
    println!(
        "{which}: terminating {} procs (grace {} ms)",
        host.procs().len(),
        args.shutdown_grace.as_millis()
    );
    let summary = host
        .terminate_children_with(args.shutdown_grace, BulkTerminateMode::OverallDeadline)
        .await;
    println!("terminate summary: {summary}");
    serving.shutdown();
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::cli::exit::FAILURE)
    })
}

/// Resolves `--proc-user USER[:GROUP]` and checks, before anything is
/// served, that this process may switch procs to it.
fn proc_user(spec: Option<&str>) -> anyhow::Result<Option<RunAs>> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let run_as = RunAs::resolve_spec(spec)
        .and_then(|run_as| run_as.check_permitted().map(|()| run_as))
        .map_err(|e| CliError::usage(format!("--proc-user {spec}: {e}")))?;
    tracing::info!(
        user = spec,
        uid = run_as.uid(),
        gid = run_as.gid(),
        "procs run as this user unless spawned with --user"
    );
    Ok(Some(run_as))
}

/// Sends `state` to systemd if `$NOTIFY_SOCKET` is set (a path or an
/// abstract name starting with `@`). Failures are logged, never fatal.
fn notify_systemd(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_notify(&target, state) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

fn send_notify(target: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::net::SocketAddr;

    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(target))?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_writes_one_datagram_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send_notify(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
