//! Names and kinds from the outside (issue 12): a client holding a name does
//! not stop `hostmux spawn` of a proc with that name, and the CLI's frames
//! for that name reach the proc.

use std::time::Duration;

use hostmux_host::BlockingClient;
use hostmux_wire::Addr;

use crate::serve::{run, stdout, Served};

#[test]
fn spawn_later_succeeds_while_a_client_holds_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let served = Served::start(&socket, &token_file);
    let exe = env!("CARGO_BIN_EXE_hostmux");
    let token = token_file.to_str().unwrap();

    let addr: Addr = served.frontend.parse().expect("the frontend address");
    let mut holder = BlockingClient::connect(
        &addr,
        "later",
        b"s3cret",
        "service",
        Duration::from_secs(10),
    )
    .expect("the client `later` says hello");

    let spawned = stdout(&run(
        &socket,
        &["spawn", "later", "--", exe, "__proc", "echo"],
    ));
    assert!(spawned.contains("spawned later"), "{spawned}");

    let reply = stdout(&run(
        &socket,
        &[
            "send",
            "later",
            "for the proc",
            "--frontend",
            &served.frontend,
            "--token-file",
            token,
        ],
    ));
    assert_eq!(reply.trim(), "for the proc", "the proc `later` echoed it");

    // The client `later` received none of that: its first frame is the
    // proc's reply to its own request, addressed to it as a client.
    holder
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    holder.send("later", 0, 42, b"mine").expect("send");
    let own = holder.recv().expect("receive").expect("a frame");
    assert_eq!(
        (own.message_id, own.sender.as_str(), own.payload.as_slice()),
        (42, "later", &b"mine"[..])
    );
}
