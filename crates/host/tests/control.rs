//! The control plane: the Unix control socket (mode 0600, peer uid checked)
//! and the TCP frontend with and without the host's token.

use std::os::unix::fs::PermissionsExt as _;

use hostmux_host::{ControlClient, HostConfig, HostError};
use hostmux_wire::{ControlErrorKind, ProcState, SpawnRequest};

use crate::bins::proc_bin;
use crate::process::{is_dead, run_os, serve_os, try_serve_os};

fn spawn_request(name: &str, program: &str, args: &[&str]) -> SpawnRequest {
    SpawnRequest {
        name: name.to_owned(),
        program: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: Vec::new(),
        inbound_ring_bytes: 1 << 16,
        outbound_ring_bytes: 0,
        ready_timeout_ms: 10_000,
        user: None,
        group: None,
        restart: Default::default(),
        ready: String::new(),
        watchdog_ms: 0,
    }
}

fn echo_request(name: &str) -> SpawnRequest {
    spawn_request(name, proc_bin("hostmux-echo").to_str().unwrap(), &[])
}

#[test]
fn control_socket_is_private_and_serves_spawn_list_stop_kill_and_terminate_all() {
    run_os(|| async {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("control.sock");
        let config = HostConfig {
            control_socket: Some(socket.clone()),
            ..HostConfig::default()
        };
        let (host, serving) = serve_os(config).await;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "control socket mode {mode:o}");

        let mut control = ControlClient::connect_unix(&socket).await.unwrap();
        let pid = control.spawn(echo_request("a")).await.unwrap();
        assert!(pid > 0);
        control.spawn(echo_request("doomed")).await.unwrap();
        // A duplicate name is refused with its kind.
        let dup = control.spawn(echo_request("a")).await.unwrap_err();
        assert!(
            matches!(
                dup,
                HostError::Control {
                    kind: ControlErrorKind::DuplicateName,
                    ..
                }
            ),
            "{dup:?}"
        );
        let listed = control.list().await.unwrap();
        let a = listed.iter().find(|p| p.name == "a").unwrap();
        assert_eq!((a.pid, &a.state), (pid, &ProcState::Ready));
        assert_eq!(a.counters.inbound_capacity, 1 << 16);
        let stats = control.stats(Some("a")).await.unwrap();
        assert_eq!(stats.len(), 1);

        // Stop: polite, exit 0.
        let state = control.terminate("a", 5_000).await.unwrap();
        assert_eq!(state, ProcState::Exited { code: 0 });
        assert!(is_dead(pid));
        // Kill: SIGKILL at once.
        let state = control.kill("doomed").await.unwrap();
        assert_eq!(
            state,
            ProcState::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
        let missing = control.kill("doomed").await.unwrap_err();
        assert!(
            matches!(
                missing,
                HostError::Control {
                    kind: ControlErrorKind::NoSuchProc,
                    ..
                }
            ),
            "{missing:?}"
        );
        // Terminate-all under one deadline.
        control.spawn(echo_request("b")).await.unwrap();
        control.spawn(echo_request("c")).await.unwrap();
        let summary = control.terminate_all(2_000).await.unwrap();
        assert_eq!((summary.attempted, summary.ok, summary.failed), (2, 2, 0));
        assert!(host.procs().is_empty());
        // Gone procs keep their terminal status in the list.
        let listed = control.list().await.unwrap();
        assert!(listed
            .iter()
            .any(|p| p.name == "b" && p.state == ProcState::Exited { code: 0 }));

        // The socket file goes with the host.
        drop(control);
        serving.shutdown();
        assert!(!socket.exists());
    });
}

#[test]
fn tcp_control_requests_need_the_hosts_token() {
    run_os(|| async {
        // No token: a frontend client is refused, and nothing is spawned.
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
        let client = hostmux_host::Client::connect_tcp(&addr, "nosy", None, "service")
            .await
            .unwrap();
        let mut control = ControlClient::over(client, "service");
        let refused = control.spawn(echo_request("x")).await.unwrap_err();
        assert!(
            matches!(
                refused,
                HostError::Control {
                    kind: ControlErrorKind::Unauthorized,
                    ..
                }
            ),
            "{refused:?}"
        );
        let refused = control.list().await.unwrap_err();
        assert!(
            matches!(
                refused,
                HostError::Control {
                    kind: ControlErrorKind::Unauthorized,
                    ..
                }
            ),
            "{refused:?}"
        );
        assert!(host.procs().is_empty());

        // With a token: a wrong one cannot even connect, the right one may
        // spawn and list.
        let config = HostConfig {
            token: Some("t0ken".to_owned()),
            ..HostConfig::default()
        };
        let (host, _serving) = serve_os(config).await;
        let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
        let wrong = ControlClient::connect_tcp(&addr, "guess").await;
        assert!(
            matches!(wrong, Err(HostError::HelloRefused { .. })),
            "{wrong:?}"
        );
        let mut control = ControlClient::connect_tcp(&addr, "t0ken").await.unwrap();
        control.spawn(echo_request("x")).await.unwrap();
        assert!(control.list().await.unwrap().iter().any(|p| p.name == "x"));
        let state = control.terminate("x", 5_000).await.unwrap();
        assert_eq!(state, ProcState::Exited { code: 0 });
    });
}

#[test]
fn control_socket_replaces_only_a_stale_socket() {
    run_os(|| async {
        let dir = tempfile::tempdir().unwrap();
        // A regular file is never replaced.
        let file = dir.path().join("file");
        std::fs::write(&file, b"precious").unwrap();
        let config = HostConfig {
            control_socket: Some(file.clone()),
            ..HostConfig::default()
        };
        let err = try_serve_os(config).await.unwrap_err();
        assert!(matches!(err, HostError::ControlSocket { .. }), "{err:?}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");

        // A live socket is not replaced; a stale one is.
        let path = dir.path().join("sock");
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let config = HostConfig {
            control_socket: Some(path.clone()),
            ..HostConfig::default()
        };
        let err = try_serve_os(config.clone()).await.unwrap_err();
        assert!(err.to_string().contains("listening"), "{err}");
        drop(live);
        // Another test's fork may hold a copy of the listener until its exec
        // (close-on-exec closes it only then): wait until nobody listens.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&path).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the socket stays live"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (_host, _serving) = try_serve_os(config).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut control = ControlClient::connect_unix(&path).await.unwrap();
        assert!(control.list().await.unwrap().is_empty());
    });
}
