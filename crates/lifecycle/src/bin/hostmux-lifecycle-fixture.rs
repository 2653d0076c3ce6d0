//! Test fixture for hostmux-lifecycle: a tiny proc with scripted behaviour.
//!
//! Usage: `hostmux-lifecycle-fixture <mode> [args...]`. Modes:
//! - `ready`: report ready, exit 0 on SIGTERM (cooperative).
//! - `ready-exit <code>`: report ready, then exit with `code`.
//! - `ready-exit-deaf <code>`: like `ready-exit`, but SIGTERM cannot kill it.
//! - `ignore-term`: catch and disregard SIGTERM, report ready, sleep forever.
//! - `never-ready`: sleep forever without reporting.
//! - `write-fds <fd> <VAR>`: write `fixed` to fd `<fd>` and `env` to the fd
//!   named in env var `<VAR>`, report ready, exit 0.
//! - `bench`: report ready if spawned by a manager, else write one byte to
//!   stdout; then exit 0 (the benchmark's tiny binary).
//! - `exit-before-ready <code>`: exit with `code` without reporting.
//! - `segfault-after-ready`: report ready, then die of SIGSEGV.
//! - `setsid-grandchild <pidfile>`: start a grandchild that calls setsid()
//!   (leaving the process group), write its pid to `pidfile`, report ready.
//! - `double-fork <pidfile>`: daemonise a grandchild the classic way (the
//!   intermediate child calls setsid, starts it and exits; this process reaps
//!   the intermediate); the grandchild writes its pid (as the host sees it)
//!   to `pidfile`; report ready once it is there.
//! - `report-status <outfile>`: write `PDeathSig:\t<signal>` (from
//!   `PR_GET_PDEATHSIG`) to `outfile`, report
//!   ready, exit 0 on SIGTERM.
//! - `host <n> [pidns | cgroup-base <dir>]`: be a host: spawn `n` fixture
//!   procs through `ProcessProcManager` (p1 has a setsid grandchild, p2 a
//!   double-forked daemon, the others ignore SIGTERM or are cooperative);
//!   with `pidns` each runs in its own PID namespace and no cgroups are
//!   used, with `cgroup-base` the manager's cgroups go under `<dir>`.
//!   Prints `pid <pid>` for each proc, `descendant <pid>` for each
//!   grandchild, `guardian <pid>` if the manager has a cgroup guardian,
//!   then `ready`, and blocks.
//! - `sleeper [setsid|report] [pidfile]`: internal: (with `setsid`, leave
//!   the session; with either, write the pid to `pidfile`) sleep forever.
//! - `intermediate <pidfile>`: internal for `double-fork`.

use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use hostmux_lifecycle::{
    child, CgroupMode, ProcHandle, ProcManager, ProcessConfig, ProcessProcManager, Readiness,
};
use rustix::process::{getpid, kill_process, Signal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match mode {
        "ready" => {
            let term = term_flag();
            ready();
            while !term.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            ExitCode::SUCCESS
        }
        "ready-exit" => {
            ready();
            ExitCode::from(arg(1).parse::<u8>().unwrap_or(0))
        }
        "ready-exit-deaf" => {
            let _term = term_flag();
            ready();
            ExitCode::from(arg(1).parse::<u8>().unwrap_or(0))
        }
        "ignore-term" => {
            let _term = term_flag();
            ready();
            sleep_forever()
        }
        "never-ready" => sleep_forever(),
        "write-fds" => {
            // Reopen the inherited pipe ends through /proc (safe code) and
            // write a marker into each.
            let env_fd = std::env::var(arg(2)).expect("fd env var");
            for (fd, marker) in [(arg(1), "fixed"), (env_fd, "env")] {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(format!("/proc/self/fd/{fd}"))
                    .and_then(|mut f| f.write_all(marker.as_bytes()))
                    .expect("write to inherited fd");
            }
            ready();
            ExitCode::SUCCESS
        }
        "bench" => {
            if child::proc_name().is_some() {
                ready();
            } else {
                let _ = std::io::stdout().write_all(b"!");
            }
            ExitCode::SUCCESS
        }
        "exit-before-ready" => ExitCode::from(arg(1).parse::<u8>().unwrap_or(1)),
        "segfault-after-ready" => {
            ready();
            // Rust's runtime catches the first SIGSEGV (stack-overflow
            // detection), finds no guard-page fault, restores the default
            // action and returns; the next one is fatal, as a real fault is.
            loop {
                let _ = kill_process(getpid(), Signal::SEGV);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        "setsid-grandchild" => {
            // The grandchild writes its own pid as the host sees it, which
            // differs from what we would see inside a PID namespace.
            let pidfile = std::path::PathBuf::from(arg(1));
            let exe = std::env::current_exe().expect("current_exe");
            let child = Command::new(exe)
                .args(["sleeper", "setsid"])
                .arg(&pidfile)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleeper");
            std::mem::forget(child);
            wait_for_pidfile(&pidfile);
            ready();
            sleep_forever()
        }
        "double-fork" => {
            let pidfile = std::path::PathBuf::from(arg(1));
            let exe = std::env::current_exe().expect("current_exe");
            let status = Command::new(exe)
                .arg("intermediate")
                .arg(&pidfile)
                .stdin(Stdio::null())
                .status()
                .expect("run intermediate");
            assert!(status.success(), "intermediate failed: {status}");
            wait_for_pidfile(&pidfile);
            ready();
            sleep_forever()
        }
        "intermediate" => {
            let _ = rustix::process::setsid();
            let exe = std::env::current_exe().expect("current_exe");
            let child = Command::new(exe)
                .args(["sleeper", "report"])
                .arg(arg(1))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn sleeper");
            std::mem::forget(child);
            ExitCode::SUCCESS
        }
        "report-status" => {
            let pdeathsig = rustix::process::parent_process_death_signal()
                .expect("PR_GET_PDEATHSIG")
                .map_or(0, |s| s.as_raw());
            std::fs::write(arg(1), format!("PDeathSig:\t{pdeathsig}\n")).expect("write status");
            let term = term_flag();
            ready();
            while !term.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            ExitCode::SUCCESS
        }
        "sleeper" => {
            if arg(1) == "setsid" {
                let _ = rustix::process::setsid();
            }
            if arg(1) == "setsid" || arg(1) == "report" {
                // /proc is the host's mount, so /proc/self names our pid in
                // the host's PID namespace.
                let pid = std::fs::read_link("/proc/self").expect("readlink /proc/self");
                let pidfile = std::path::PathBuf::from(arg(2));
                let tmp = pidfile.with_extension("tmp");
                std::fs::write(&tmp, pid.as_os_str().as_encoded_bytes()).expect("write pid");
                std::fs::rename(&tmp, &pidfile).expect("publish pid");
            }
            sleep_forever()
        }
        "host" => host(
            arg(1).parse().unwrap_or(3),
            arg(2) == "pidns",
            (arg(2) == "cgroup-base").then(|| arg(3).into()),
        ),
        _ => {
            eprintln!("unknown fixture mode {mode:?}");
            ExitCode::from(2)
        }
    }
}

fn ready() {
    child::report_ready().expect("report_ready");
}

fn sleep_forever() -> ExitCode {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A flag set by SIGTERM, so the default "die on TERM" does not apply.
fn term_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut term = rt
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        })
        .expect("SIGTERM handler");
    let set = std::sync::Arc::clone(&flag);
    std::thread::spawn(move || {
        rt.block_on(async {
            while term.recv().await.is_some() {
                set.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })
    });
    flag
}

/// Waits (bounded) until a sleeper has published its pid in `pidfile`.
fn wait_for_pidfile(pidfile: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "sleeper never wrote its pid"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn host(n: usize, pid_namespaces: bool, cgroup_base: Option<std::path::PathBuf>) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cgroups = match (pid_namespaces, cgroup_base) {
            (true, _) => CgroupMode::Disabled,
            (false, Some(base)) => CgroupMode::Base(base),
            (false, None) => CgroupMode::Auto,
        };
        let manager = ProcessProcManager::builder().cgroups(cgroups).build();
        let exe = std::env::current_exe().expect("current_exe");
        let dir = std::env::temp_dir();
        let mut handles = Vec::new();
        for i in 0..n {
            let name = hostmux_lifecycle::ProcName::new(&format!("p{i}")).expect("name");
            let pidfile = dir.join(format!("hostmux-fixture-host-{}-{i}", std::process::id()));
            let with_descendant = |mode: &str| ProcessConfig::new(&exe).arg(mode).arg(&pidfile);
            let config = match i {
                1 => with_descendant("setsid-grandchild"),
                2 => with_descendant("double-fork"),
                _ if i % 3 == 0 => ProcessConfig::new(&exe).arg("ignore-term"),
                _ => ProcessConfig::new(&exe).arg("ready"),
            };
            let config = config
                .readiness(Readiness::Protocol)
                .pid_namespace(pid_namespaces);
            let handle = manager.spawn(name, config).await.expect("spawn");
            assert_eq!(
                handle.in_pid_namespace(),
                pid_namespaces,
                "PID namespace not permitted"
            );
            handle.ready().await.expect("ready");
            println!("pid {}", handle.pid().expect("pid"));
            if i == 1 || i == 2 {
                let gc = std::fs::read_to_string(&pidfile).expect("pidfile");
                let _ = std::fs::remove_file(&pidfile);
                println!("descendant {}", gc.trim());
            }
            handles.push(handle);
        }
        if let Some(guardian) = manager.guardian_pid() {
            println!("guardian {guardian}");
        }
        println!("ready");
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
    });
    ExitCode::SUCCESS
}
