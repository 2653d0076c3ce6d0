//! `hostmux serve --io-threads 2`: an OS proc booted with two lanes answers
//! clients on both I/O threads, and `ps --json` / `stats --json` show the
//! host's totals over both threads.

use crate::serve::{echo_json, run, stdout, Served};

#[test]
fn serve_with_two_io_threads_answers_on_both_and_reports_host_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let served = Served::start_with(&socket, &token_file, &["--io-threads", "2"]);
    let exe = env!("CARGO_BIN_EXE_hostmux");
    stdout(&run(
        &socket,
        &["spawn", "echo", "--", exe, "__proc", "echo"],
    ));
    let before = echo_json(&socket, &["stats", "--json"]);
    let accepted_before = before["accepted"].as_u64().expect("accepted");
    let delivered_before = before["delivered"].as_u64().expect("delivered");

    // Each `send` is a new frontend connection: they alternate between
    // the two threads, so two of these arrive on lane 0 and two on lane 1.
    let token = token_file.to_str().unwrap();
    for i in 0..4 {
        let payload = format!("hello {i}");
        let reply = stdout(&run(
            &socket,
            &[
                "send",
                "echo",
                &payload,
                "--frontend",
                &served.frontend,
                "--token-file",
                token,
            ],
        ));
        assert_eq!(reply.trim(), payload);
    }
    for args in [&["stats", "--json"][..], &["ps", "--json"]] {
        let json = echo_json(&socket, args);
        assert_eq!(json["accepted"], accepted_before + 4, "{args:?}: {json}");
        assert_eq!(json["delivered"], delivered_before + 4, "{args:?}: {json}");
        assert_eq!(json["returned"], 0, "{args:?}: {json}");
    }
}
