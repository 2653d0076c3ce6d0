//! `hostmux serve`: run a host until SIGTERM or SIGINT, then terminate every
//! proc with the configured grace and print how each ended (a table: exited
//! N, signal, or SIGKILLed after the grace, and after how long) and the
//! summary.
//!
//! Under systemd (`Type=notify`) it sends `READY=1` once the frontend is
//! bound and `STOPPING=1` when shutdown starts, written straight to
//! `$NOTIFY_SOCKET` as one datagram (the protocol is one line of text; no
//! crate needed).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hostmux_host::{Host, HostConfig, HostError, PlainTcp, TlsConfig};
use hostmux_lifecycle::{
    BulkTerminateMode, ProcHandle as _, ProcManager as _, ProcessProcManager, RunAs,
    TerminalStatus, TerminateSummary,
};
use hostmux_wire::{Addr, AddrKind};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{CliError, ServeArgs};
use crate::format::Table;

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
    let peers = peers(args)?;
    let peer_token = crate::send::read_token(args.peer_token_file.as_deref())?;
    if !peers.is_empty() && peer_token.is_empty() {
        // A link is accepted only from a connection that presented the
        // peer token: without one, no peer could relay to this host.
        return Err(CliError::usage(
            "--peer/--peers-file need a secret shared by the peers (--peer-token-file FILE): \
             a host accepts another host's link only with it",
        )
        .into());
    }
    if !peer_token.is_empty() && peer_token == token {
        return Err(CliError::usage(
            "--peer-token-file must hold a different secret from --token-file: \
             clients hold the token, and a client must not pass for a peer",
        )
        .into());
    }
    Ok(HostConfig {
        token: (!token.is_empty())
            .then(|| String::from_utf8(token))
            .transpose()
            .map_err(|_| CliError::usage("the token file must hold UTF-8 text"))?,
        spawn_ready_timeout: args.spawn_ready_timeout,
        inbound_ring_bytes: args.inbound_ring_bytes,
        outbound_ring_bytes: args.outbound_ring_bytes,
        ring_memory: args.ring_memory,
        frontend: args.frontend_kind.into(),
        io_threads: args
            .io_threads
            .map_or_else(hostmux_host::default_io_threads, usize::from),
        control_socket: Some(args.control_socket.clone()),
        half_close_linger: args.half_close_linger,
        max_hops: args.max_hops,
        conn_memory: args.conn_memory,
        reply_memory: args.reply_memory,
        zero_copy_threshold: args.zero_copy_threshold,
        uring_recv_buffers: args.recv_buffers.0,
        max_connections: args.max_connections as usize,
        hello_eviction_grace: args.hello_eviction_grace,
        frame_timeout: args.frame_timeout,
        link_timeout: args.link_timeout,
        link_window_bytes: args.link_window,
        link_ack_delay: args.link_ack_delay,
        peers,
        advertise: advertise(args)?,
        peer_token: (!peer_token.is_empty())
            .then(|| String::from_utf8(peer_token))
            .transpose()
            .map_err(|_| CliError::usage("the peer token file must hold UTF-8 text"))?,
        tls: tls_config(args)?,
        ..HostConfig::default()
    })
}

/// The TLS settings of `--tls-cert`, `--tls-key`, `--tls-ca` (all three or
/// none) and `--tls-required`; errors name the flag or the file.
fn tls_config(args: &ServeArgs) -> anyhow::Result<Option<TlsConfig>> {
    let files = [
        ("--tls-cert", &args.tls_cert),
        ("--tls-key", &args.tls_key),
        ("--tls-ca", &args.tls_ca),
    ];
    let missing: Vec<&str> = files
        .iter()
        .filter(|(_, file)| file.is_none())
        .map(|(flag, _)| *flag)
        .collect();
    let (Some(cert), Some(key), Some(ca)) = (&args.tls_cert, &args.tls_key, &args.tls_ca) else {
        if missing.len() < files.len() {
            return Err(CliError::usage(format!(
                "TLS needs --tls-cert, --tls-key and --tls-ca together (PEM files); missing {}",
                missing.join(", ")
            ))
            .into());
        }
        if args.tls_required {
            return Err(CliError::usage(
                "--tls-required needs the host's TLS files: --tls-cert, --tls-key and --tls-ca",
            )
            .into());
        }
        return Ok(None);
    };
    let plain_tcp = match (args.tls_required, args.tls_required_loopback) {
        (false, _) => PlainTcp::Allowed,
        (true, false) => PlainTcp::LoopbackOnly,
        (true, true) => PlainTcp::Refused,
    };
    let tls =
        TlsConfig::from_pem_files(cert, key, ca).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(Some(tls.with_plain_tcp(plain_tcp)))
}

/// The peers `--peer` and `--peers-file` name, in that order, each once.
fn peers(args: &ServeArgs) -> anyhow::Result<Vec<Addr>> {
    let mut peers = Vec::new();
    for text in &args.peers {
        let peer =
            parse_peer(text).map_err(|why| CliError::usage(format!("--peer {text:?}: {why}")))?;
        peers.push(peer);
    }
    if let Some(file) = &args.peers_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            CliError::usage(format!(
                "cannot read the peers file {} ({e})",
                file.display()
            ))
        })?;
        peers.extend(parse_peers_file(&text).map_err(|(line, why)| {
            CliError::usage(format!("peers file {}, line {line}: {why}", file.display()))
        })?);
    }
    let mut seen = std::collections::HashSet::new();
    peers.retain(|peer| seen.insert(peer.clone()));
    Ok(peers)
}

/// The addresses `--advertise` names, in order, each once. Checked again
/// against the bound frontend when the host starts.
fn advertise(args: &ServeArgs) -> anyhow::Result<Vec<Addr>> {
    let mut advertised: Vec<Addr> = Vec::new();
    for text in &args.advertise {
        let addr = parse_peer(text.trim())
            .map_err(|why| CliError::usage(format!("--advertise {text:?}: {why}")))?;
        if !advertised.contains(&addr) {
            advertised.push(addr);
        }
    }
    Ok(advertised)
}

/// The addresses in a peers file: one per line, `#` to the end of a line
/// is a comment, blank lines are ignored. `Err((line, why))` for the first
/// bad line (numbered from 1).
fn parse_peers_file(text: &str) -> Result<Vec<Addr>, (usize, String)> {
    let mut peers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        peers.push(parse_peer(entry).map_err(|why| (index + 1, format!("{entry:?}: {why}")))?);
    }
    Ok(peers)
}

/// One peer (or advertised) address: `tcp:HOST:PORT` with a port (links
/// are TCP).
fn parse_peer(text: &str) -> Result<Addr, String> {
    let addr: Addr = text
        .parse()
        .map_err(|e| format!("not a valid address ({e}); use tcp:HOST:PORT"))?;
    match addr.kind() {
        AddrKind::Tcp { port: 0, .. } => {
            Err("port 0 names no listening host; give the peer's frontend port".to_owned())
        }
        AddrKind::Tcp { .. } => Ok(addr),
        _ => Err("not a TCP address; links between hosts are TCP (tcp:HOST:PORT)".to_owned()),
    }
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
    // sd_notify sockets live beside the control socket (the host's runtime
    // directory).
    let mut manager = ProcessProcManager::builder().default_run_as(proc_user);
    if let Some(dir) = args
        .control_socket
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
    {
        manager = manager.notify_dir(dir);
    }
    let (host, serving) = Host::serve_processes(manager, addr.clone(), config)
        .await
        .map_err(|e| start_error(&addr, e))?;
    let metrics = match args.metrics {
        Some(addr) => {
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    %addr,
                    "the metrics endpoint has no authentication: anyone who reaches {addr} reads every proc's name and counters"
                );
            }
            let bound = host.serve_metrics(addr).await.map_err(|e| {
                CliError::usage(format!(
                    "{e}; pick another --metrics address (port 0 picks a free one)"
                ))
            })?;
            format!(", metrics on http://{bound}/metrics")
        }
        None => String::new(),
    };
    let advertised: Vec<&str> = host.advertised().iter().map(Addr::as_str).collect();
    println!(
        "hostmux serving on {} ({} frontend), advertised as {}, control socket {}{metrics}; stop with SIGTERM or Ctrl-C",
        host.addr(),
        serving.frontend(),
        advertised.join(", "),
        args.control_socket.display()
    );
    notify_systemd("READY=1");

    let which = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    notify_systemd("STOPPING=1");
    let summary = shut_down(&host, which, args.shutdown_grace).await;
    serving.shutdown();
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::cli::exit::FAILURE)
    })
}

/// Stops every proc (one overall deadline of `grace`) and prints how each
/// ended and after how long, then the summary line.
async fn shut_down(
    host: &Host<ProcessProcManager>,
    signal: &str,
    grace: Duration,
) -> TerminateSummary {
    let names = host.procs();
    println!(
        "{signal}: terminating {} procs (grace {} ms before SIGKILL)",
        names.len(),
        grace.as_millis()
    );
    // Watch each proc before the terminate starts, so that each one's end
    // is timed from the same instant.
    let started = Instant::now();
    let watchers: Vec<_> = names
        .into_iter()
        .filter_map(|name| {
            let handle = host.manager().get(&name)?;
            Some(tokio::spawn(async move {
                let ended = handle.wait().await;
                (name, ended, started.elapsed())
            }))
        })
        .collect();
    let summary = host
        .terminate_children_with(grace, BulkTerminateMode::OverallDeadline)
        .await;
    let mut ended = Vec::new();
    for watcher in watchers {
        match watcher.await {
            Ok((name, status, after)) => ended.push(ShutdownRow {
                name: name.to_string(),
                ended: match status {
                    Ok(status) => how_it_ended(&status, after, grace),
                    Err(e) => format!("unknown ({e})"),
                },
                after,
            }),
            Err(e) => tracing::warn!(error = %e, "a shutdown watcher failed"),
        }
    }
    if !ended.is_empty() {
        print!("{}", shutdown_table(ended));
    }
    println!("terminate summary: {summary}");
    summary
}

/// One proc in the shutdown table.
struct ShutdownRow {
    name: String,
    ended: String,
    after: Duration,
}

/// The shutdown table, first ended first: `PROC  ENDED  AFTER`.
fn shutdown_table(mut rows: Vec<ShutdownRow>) -> String {
    rows.sort_by(|a, b| a.after.cmp(&b.after).then_with(|| a.name.cmp(&b.name)));
    let mut table = Table::new(&["PROC", "ENDED", "AFTER"]);
    for row in rows {
        table.row(vec![
            row.name,
            row.ended,
            format!("{} ms", row.after.as_millis()),
        ]);
    }
    table.render()
}

/// How a proc ended at shutdown, in a few words: `exited 0`, `signal
/// SIGTERM`, `SIGKILLed after the grace` (it outlived the polite stop).
fn how_it_ended(status: &TerminalStatus, after: Duration, grace: Duration) -> String {
    match status {
        TerminalStatus::Exited { code, .. } => format!("exited {code}"),
        TerminalStatus::Signaled {
            signal: libc::SIGKILL,
            ..
        } if after >= grace => "SIGKILLed after the grace".to_owned(),
        TerminalStatus::Signaled {
            signal,
            core_dumped,
            ..
        } => format!(
            "signal {}{}",
            crate::control::signal_name(*signal),
            if *core_dumped { " (core dumped)" } else { "" }
        ),
        TerminalStatus::Failed { reason, .. } => format!("failed: {reason}"),
    }
}

/// What `serve` says when the host cannot start: what is wrong and what to
/// do, with exit code 2 for an address or path it cannot take.
fn start_error(addr: &Addr, error: HostError) -> anyhow::Error {
    match error {
        HostError::InsecureBind { .. } => CliError::usage(format!(
            "refusing to bind the non-loopback frontend {addr} without a token; pass --token-file FILE or bind 127.0.0.1"
        ))
        .into(),
        HostError::Bind { source, .. } => CliError::usage(bind_error(addr, &source)).into(),
        HostError::ControlSocket { path, reason } => {
            CliError::usage(control_socket_error(&path, &reason)).into()
        }
        e @ HostError::InvalidAdvertise { .. } => {
            CliError::usage(format!("--advertise: {e}")).into()
        }
        e @ HostError::InvalidAddr { .. } => {
            CliError::usage(format!("{e}; pass another --frontend")).into()
        }
        other => anyhow::Error::new(other).context(format!("cannot serve on {addr}")),
    }
}

/// Why the frontend address could not be bound, and what to do.
fn bind_error(addr: &Addr, source: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match (addr.kind(), source.kind()) {
        (AddrKind::Tcp { port, .. }, ErrorKind::AddrInUse) => format!(
            "frontend address {addr} is in use: another process listens there \
             (find it with `ss -ltnp 'sport = :{port}'`); stop it or pass another --frontend"
        ),
        (AddrKind::UnixPath(path), ErrorKind::AddrInUse) => format!(
            "frontend socket {path} already exists: another process listens there, or a host \
             that stopped left it (find a listener with `ss -lxp | grep {path}`; if there is \
             none, remove the file); or pass another --frontend"
        ),
        (AddrKind::UnixAbstract(name), ErrorKind::AddrInUse) => format!(
            "frontend address {addr} is in use: another process listens on @{name} \
             (find it with `ss -lxp | grep @{name}`); stop it or pass another --frontend"
        ),
        (AddrKind::Tcp { port, .. }, ErrorKind::PermissionDenied) if port < 1024 => format!(
            "cannot bind the frontend address {addr}: ports below 1024 need root or \
             CAP_NET_BIND_SERVICE; pass a port from 1024 up, or grant the capability"
        ),
        (_, ErrorKind::PermissionDenied) => format!(
            "cannot bind the frontend address {addr}: permission denied; pass a --frontend \
             this user may bind (a Unix path in a directory it may write)"
        ),
        (_, ErrorKind::AddrNotAvailable) => format!(
            "cannot bind the frontend address {addr}: no interface of this machine has that \
             address; pass one of its addresses, 127.0.0.1, or 0.0.0.0 (with --token-file)"
        ),
        _ => format!("cannot bind the frontend address {addr} ({source}); pass another --frontend"),
    }
}

/// Why the control socket could not be created at `path`, and what to do,
/// by what is at the path now.
fn control_socket_error(path: &Path, reason: &str) -> String {
    use std::os::unix::fs::FileTypeExt as _;
    let shown = path.display();
    match std::fs::symlink_metadata(path).map(|meta| meta.file_type()) {
        Ok(kind) if kind.is_socket() => format!(
            "control socket {shown}: {reason}; another host uses this path: stop it (its pid: \
             `ss -lxp | grep {shown}`) or pass another --control-socket"
        ),
        Ok(kind) => {
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_symlink() {
                "a symbolic link"
            } else if kind.is_file() {
                "a regular file"
            } else {
                "a special file"
            };
            format!(
                "control socket path {shown} is {what}, not a socket, so no host made it and \
                 serve will not replace it: remove it if nothing needs it, or pass another \
                 --control-socket"
            )
        }
        Err(_) => format!(
            "cannot create the control socket {shown} ({reason}); pass --control-socket PATH in \
             a directory this user may write"
        ),
    }
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
    fn a_peers_file_skips_comments_and_blank_lines() {
        let text = "# the rack\n\ntcp:10.0.0.2:7000\n  tcp:[::1]:7001  # local\n\t\n";
        let peers = parse_peers_file(text).unwrap();
        let peers: Vec<&str> = peers.iter().map(Addr::as_str).collect();
        assert_eq!(peers, ["tcp:10.0.0.2:7000", "tcp:[::1]:7001"]);
    }

    #[test]
    fn a_bad_peer_line_is_named_by_its_number() {
        for (text, line, says) in [
            (
                "tcp:10.0.0.2:7000\n# ok\ntcp:host\n",
                3,
                "not a valid address",
            ),
            ("unix:/run/peer.sock\n", 1, "not a TCP address"),
            ("\ntcp:10.0.0.2:0\n", 2, "port 0"),
        ] {
            let (got_line, why) = parse_peers_file(text).unwrap_err();
            assert_eq!(got_line, line, "{text:?}");
            assert!(why.contains(says), "{text:?}: {why}");
        }
    }

    #[test]
    fn peer_flags_and_file_make_one_list_without_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("peers");
        std::fs::write(&file, "tcp:10.0.0.3:7000\ntcp:10.0.0.2:7000\n").unwrap();
        let token = dir.path().join("peer-token");
        std::fs::write(&token, "shared\n").unwrap();
        let args = |peers: &[&str], peers_file| {
            let mut argv = vec!["serve"];
            for peer in peers {
                argv.extend(["--peer", peer]);
            }
            let mut args = serve_args(&argv);
            args.peers_file = peers_file;
            args.peer_token_file = Some(token.clone());
            args
        };
        let config = host_config(&args(&["tcp:10.0.0.2:7000"], Some(file.clone()))).unwrap();
        // Peers without a peer token: refused, saying why; and a peer token
        // equal to the client token.
        let mut tokenless = args(&["tcp:10.0.0.2:7000"], None);
        tokenless.peer_token_file = None;
        let refused = host_config(&tokenless).unwrap_err().to_string();
        assert!(refused.contains("--peer-token-file"), "{refused}");
        let mut same = args(&["tcp:10.0.0.2:7000"], None);
        same.token_file = Some(token.clone());
        let refused = host_config(&same).unwrap_err().to_string();
        assert!(refused.contains("different secret"), "{refused}");
        let peers: Vec<&str> = config.peers.iter().map(Addr::as_str).collect();
        assert_eq!(peers, ["tcp:10.0.0.2:7000", "tcp:10.0.0.3:7000"]);
        assert!(host_config(&args(&[], None)).unwrap().peers.is_empty());

        let bad = host_config(&args(&["unix:/x"], None))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("--peer \"unix:/x\""), "{bad}");
        std::fs::write(&file, "tcp:10.0.0.3:7000\nnonsense\n").unwrap();
        let bad = host_config(&args(&[], Some(file.clone())))
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains(&format!("{}, line 2", file.display())),
            "{bad}"
        );
        let missing = dir.path().join("absent");
        let bad = host_config(&args(&[], Some(missing.clone())))
            .unwrap_err()
            .to_string();
        assert!(bad.contains(&missing.display().to_string()), "{bad}");
    }

    #[test]
    fn advertise_takes_repeats_and_comma_lists_in_order() {
        let args = serve_args(&[
            "serve",
            "--advertise",
            "tcp:node1.example:7000,tcp:10.0.0.2:7000",
            "--advertise",
            "tcp:10.0.0.2:7000",
            "--advertise",
            "tcp:[fd00::2]:7000",
        ]);
        let config = host_config(&args).unwrap();
        let advertised: Vec<&str> = config.advertise.iter().map(Addr::as_str).collect();
        assert_eq!(
            advertised,
            [
                "tcp:node1.example:7000",
                "tcp:10.0.0.2:7000",
                "tcp:[fd00::2]:7000"
            ]
        );
        assert!(host_config(&serve_args(&["serve"]))
            .unwrap()
            .advertise
            .is_empty());
        for (bad, says) in [
            ("unix:/run/h.sock", "not a TCP address"),
            ("tcp:10.0.0.2:0", "port 0"),
            ("10.0.0.2:7000", "not a valid address"),
        ] {
            let refused = host_config(&serve_args(&["serve", "--advertise", bad]))
                .unwrap_err()
                .to_string();
            assert!(
                refused.contains("--advertise") && refused.contains(says),
                "{refused}"
            );
        }
    }

    #[test]
    fn tls_flags_come_all_three_or_none_and_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let partial = host_config(&serve_args(&["serve", "--tls-cert", &path("c.pem")]))
            .unwrap_err()
            .to_string();
        assert!(partial.contains("missing --tls-key, --tls-ca"), "{partial}");
        let required = host_config(&serve_args(&["serve", "--tls-required"]))
            .unwrap_err()
            .to_string();
        assert!(required.contains("--tls-required needs"), "{required}");
        let all = [
            "serve",
            "--tls-cert",
            &path("c.pem"),
            "--tls-key",
            &path("k.pem"),
            "--tls-ca",
            &path("ca.pem"),
        ];
        let unreadable = host_config(&serve_args(&all)).unwrap_err().to_string();
        assert!(
            unreadable.contains(&path("c.pem")) && unreadable.contains("cannot read"),
            "{unreadable}"
        );
        assert!(host_config(&serve_args(&["serve"])).unwrap().tls.is_none());
        // --tls-required-loopback only with --tls-required.
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        assert!(Serve::try_parse_from(["serve", "--tls-required-loopback"]).is_err());
    }

    /// `ServeArgs` as clap makes them from `argv` (`serve ...`).
    fn serve_args(argv: &[&str]) -> ServeArgs {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        Serve::try_parse_from(argv).unwrap().args
    }

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
