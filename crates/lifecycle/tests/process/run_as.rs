//! Procs run as another user: the child switches uid, gid and
//! supplementary groups before exec, sets `PR_SET_NO_NEW_PRIVS`, keeps its
//! death signal, and cannot move itself out of the cgroup the host made.
//!
//! Switching users needs root: without it these tests fail, unless
//! `HOSTMUX_TEST_SKIP` names `root` (then they say loudly that they did not
//! run).

use hostmux_testkit::facility::{proc_status_field, require_root};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::time::Duration;

use hostmux_lifecycle::{ProcHandle, ProcessProcManager, RunAs};

use crate::support::*;

const NOBODY: u32 = 65534;

async fn assert_runs_as_nobody(manager: &ProcessProcManager, proc_name: &str) {
    let nobody = RunAs::resolve("nobody", None).unwrap();
    assert_eq!(nobody.uid(), NOBODY);
    let report = temp_path(proc_name);
    let _ = std::fs::remove_file(&report);
    let proc = spawn_ready(
        manager,
        proc_name,
        fixture_mode("report-status")
            .arg(&report)
            .run_as(nobody.clone()),
    )
    .await;
    let pid = proc.pid().unwrap();
    let ids = |id: u32| format!("{id} {id} {id} {id}");
    assert_eq!(proc_status_field(pid, "Uid"), ids(NOBODY));
    assert_eq!(proc_status_field(pid, "Gid"), ids(nobody.gid()));
    let mut groups: Vec<u32> = proc_status_field(pid, "Groups")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    let mut expected = nobody.groups().to_vec();
    groups.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        groups, expected,
        "supplementary groups as initgroups sets them"
    );
    assert!(!groups.contains(&0), "root's group 0 was dropped");
    assert_eq!(proc_status_field(pid, "NoNewPrivs"), "1");
    // The user's login variables, not the host's.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    let (login, home) = nobody.login().expect("nobody has a passwd entry");
    for var in [
        format!("USER={login}"),
        format!("LOGNAME={login}"),
        format!("HOME={}", home.display()),
    ] {
        assert!(
            vars.contains(&var.as_bytes()),
            "{var} not in the proc's environment"
        );
    }
    // The death signal survives the credential change (set after it).
    let reported = std::fs::read_to_string(&report).unwrap();
    assert_eq!(reported, format!("PDeathSig:\t{}\n", libc::SIGKILL));
    let _ = std::fs::remove_file(&report);
    assert_eq!(
        proc.terminate(Duration::from_secs(30)).await.unwrap(),
        exited(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_run_as_nobody_has_its_ids_groups_no_new_privs_and_death_signal() {
    if !require_root() {
        return;
    }
    assert_runs_as_nobody(&ProcessProcManager::default(), "as-nobody").await;
    // The same where the child enters its cgroup itself (before it drops
    // root: writing `cgroup.procs` needs it).
    let fallback = ProcessProcManager::builder()
        .force_cgroup_procs_fallback()
        .build();
    assert_runs_as_nobody(&fallback, "as-nobody-fallback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_default_user_applies_unless_the_config_names_one() {
    if !require_root() {
        return;
    }
    let manager = ProcessProcManager::builder()
        .default_run_as(Some(RunAs::resolve("nobody", None).unwrap()))
        .build();
    let by_default = spawn_ready(&manager, "default-user", fixture_mode("ready")).await;
    let as_root = spawn_ready(
        &manager,
        "explicit-root",
        fixture_mode("ready").run_as(RunAs::resolve("root", None).unwrap()),
    )
    .await;
    assert_eq!(
        proc_status_field(by_default.pid().unwrap(), "Uid"),
        format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}")
    );
    assert_eq!(proc_status_field(as_root.pid().unwrap(), "Uid"), "0 0 0 0");
    for proc in [by_default, as_root] {
        assert_eq!(
            proc.terminate(Duration::from_secs(30)).await.unwrap(),
            exited(0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprivileged_proc_cannot_leave_its_cgroup() {
    if !require_root() {
        return;
    }
    let manager = ProcessProcManager::default();
    let Some(manager_dir) = cgroup_dir_or_skip(&manager) else {
        return;
    };
    // Every cgroup from the manager's up to the hierarchy's root stays
    // root's, and the proc (nobody) may write none of their `cgroup.procs`.
    let unified = manager_dir
        .ancestors()
        .find(|dir| dir.join("cgroup.controllers").exists() && !dir.join("cgroup.type").exists())
        .expect("the unified hierarchy's root")
        .to_path_buf();
    let targets: Vec<_> = manager_dir
        .ancestors()
        .take_while(|dir| dir.starts_with(&unified))
        .map(|dir| dir.join("cgroup.procs"))
        .collect();
    assert!(targets.len() >= 2, "{targets:?}");
    for target in &targets {
        let meta = std::fs::metadata(target.parent().unwrap()).unwrap();
        assert_eq!(meta.uid(), 0, "{} is not root's", target.display());
    }
    // Exit 0 only if every write failed.
    let script = "for f in \"$@\"; do if echo $$ > \"$f\"; then echo \"moved into $f\" >&2; exit 1; fi; done; exit 0";
    let mut config = shell(script)
        .arg("escape")
        .run_as(RunAs::resolve("nobody", None).unwrap());
    for target in &targets {
        config = config.arg(target);
    }
    let (_, status) = run_to_exit(&manager, "escape", config).await;
    assert_eq!(status, exited(0), "a proc run as nobody moved itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proc_run_as_nobody_can_notify_its_socket_even_from_a_private_runtime_dir() {
    if !require_root() {
        return;
    }
    // Like systemd's RuntimeDirectoryMode=0700: nobody cannot pass through.
    let private = temp_path("private-runtime");
    let _ = std::fs::remove_dir_all(&private);
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let manager = ProcessProcManager::builder().notify_dir(&private).build();
    let script = "exec python3 -c 'import os, socket; \
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
        s.sendto(b\"READY=1\\nSTATUS=as nobody\", os.environ[\"NOTIFY_SOCKET\"]); \
        import time; time.sleep(1000)'";
    let proc = spawn(
        &manager,
        "notify-nobody",
        hostmux_lifecycle::ProcessConfig::new("sh")
            .args(["-c", script])
            .env("PATH", "/usr/bin:/bin")
            .readiness(hostmux_lifecycle::Readiness::Notify)
            .ready_timeout(Duration::from_secs(60))
            .run_as(RunAs::resolve("nobody", None).unwrap()),
    )
    .await;
    let socket = notify_socket_of(proc.pid().unwrap());
    assert_eq!(std::fs::metadata(&socket).unwrap().uid(), NOBODY);
    assert!(
        !socket.starts_with(&private),
        "{} is out of nobody's reach",
        socket.display()
    );
    proc.ready().await.expect("ready through the socket");
    assert_eq!(proc.status_text().as_deref(), Some("as nobody"));
    proc.kill().await.unwrap();
    drop(manager);
    std::fs::remove_dir(&private).expect("the manager left nothing in it");
}
