//! Terminal statuses: a signal is reported as a signal, and the status
//! carries the captured output tail (bounded, complete at exit) or none.

use std::time::Duration;

use hostmux_lifecycle::{
    OutputMode, ProcHandle, ProcessConfig, ProcessProcManager, TerminalStatus,
};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segfault_after_ready_is_signaled_sigsegv_not_exit_139() {
    let manager = ProcessProcManager::default();
    let proc = spawn_ready(
        &manager,
        "crasher",
        fixture_mode("segfault-after-ready").stderr(OutputMode::Null),
    )
    .await;
    match proc.wait().await.unwrap() {
        TerminalStatus::Signaled { signal, .. } => assert_eq!(signal, libc::SIGSEGV),
        other => panic!("expected SIGSEGV, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_carries_the_bounded_output_tail_complete_at_exit() {
    let manager = ProcessProcManager::default();
    let (proc, status) = run_to_exit(
        &manager,
        "talker",
        shell("printf 0123456789; printf oops >&2; exit 4")
            .stdout(OutputMode::Capture { max_bytes: 4 })
            .stderr(OutputMode::Capture { max_bytes: 64 }),
    )
    .await;
    let TerminalStatus::Exited {
        code: 4,
        output: Some(tail),
    } = &status
    else {
        panic!("expected exit 4 with a tail, got {status:?}");
    };
    assert_eq!(tail.stdout, b"6789", "only the last max_bytes of stdout");
    assert_eq!(tail.stderr, b"oops");
    assert_eq!(tail.dropped_bytes, 6);
    assert!(tail.complete, "both pipes read to EOF before publishing");
    assert_eq!(
        status.to_string(),
        "exited with code 4 (8 output bytes captured, 6 dropped)"
    );
    assert_eq!(proc.output_tail().as_ref(), Some(&**tail));
    assert_eq!(proc.wait().await.unwrap(), status, "every waiter sees it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_and_failed_statuses_carry_the_output_tail() {
    let manager = ProcessProcManager::default();
    let ignorer = spawn_until_sleeping(
        &manager,
        "loud-ignorer",
        shell("trap '' TERM; echo started; exec sleep 1000")
            .stdout(OutputMode::Capture { max_bytes: 64 }),
    )
    .await;
    let status = ignorer.terminate(Duration::from_millis(50)).await.unwrap();
    match &status {
        TerminalStatus::Signaled {
            signal,
            output: Some(tail),
            ..
        } => {
            assert_eq!(*signal, libc::SIGKILL);
            assert_eq!(tail.stdout, b"started\n");
            assert!(tail.stderr.is_empty(), "stderr was not captured");
            assert!(tail.complete);
        }
        other => panic!("expected SIGKILL with a tail, got {other:?}"),
    }

    // The tail of a proc that never became ready says why. It closes its
    // ready pipe after writing, so the failure comes after the write.
    let silent = spawn(
        &manager,
        "never-ready",
        ProcessConfig::new("sh")
            .args([
                "-c",
                "echo 'config missing' >&2; eval \"exec $HOSTMUX_READY_FD>&-\"; exec sleep 1000",
            ])
            .stderr(OutputMode::Capture { max_bytes: 64 }),
    )
    .await;
    match silent.wait().await.unwrap() {
        TerminalStatus::Failed {
            output: Some(tail), ..
        } => assert_eq!(tail.stderr, b"config missing\n"),
        other => panic!("expected Failed with a tail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncaptured_proc_status_carries_no_output() {
    let manager = ProcessProcManager::default();
    let (proc, status) = run_to_exit(
        &manager,
        "quiet",
        // `|| exit 3`: a write error to the null stream would show.
        shell("echo to-null || exit 3; exit 2").stdout(OutputMode::Null),
    )
    .await;
    assert_eq!(
        status,
        TerminalStatus::Exited {
            code: 2,
            output: None
        }
    );
    assert_eq!(status.output(), None);
    assert_eq!(proc.output_tail(), None);
    assert_eq!(status.to_string(), "exited with code 2");
}
