//! Roles this test executable plays when a test re-executes it: a proc
//! (relay, corrupt-before-ready) or a whole host (for the host-crash test).
//! `roles::role_entry` does nothing unless `HOSTMUX_TEST_ROLE` is set.

use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hostmux_proc::boot_from;
use hostmux_proc::protocol::BootParams;
use hostmux_wire::{Flags, FrameHeader, Sender};

const ROLE_ENV: &str = "HOSTMUX_TEST_ROLE";
/// The relay's target proc.
pub(crate) const RELAY_TARGET_ENV: &str = "HOSTMUX_TEST_RELAY_TARGET";

/// A command that runs this executable in `role`.
pub(crate) fn role_command(role: &str) -> (PathBuf, Vec<String>, (String, String)) {
    let exe = std::env::current_exe().expect("the test executable");
    let args = [
        "roles::role_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ]
    .map(str::to_owned)
    .to_vec();
    (exe, args, (ROLE_ENV.to_owned(), role.to_owned()))
}

/// As a std `Command` (for the host role).
pub(crate) fn role_process(role: &str) -> Command {
    let (exe, args, (key, value)) = role_command(role);
    let mut command = Command::new(exe);
    command.args(args).env(key, value);
    command
}

#[test]
fn role_entry() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let code = match role.as_str() {
        "relay" => relay(),
        "corrupt-before-ready" => corrupt_before_ready(),
        "reads-after-sigterm" => crate::registry::reads_after_sigterm(),
        "host" => crate::crash::run_host_role(),
        other => {
            eprintln!("unknown test role {other:?}");
            2
        }
    };
    std::process::exit(code);
}

/// Forwards each client message to the target proc and the target's reply
/// back to the client, with the client's message id (FIFO: the target
/// answers in order).
fn relay() -> i32 {
    let target = std::env::var(RELAY_TARGET_ENV).expect("relay target");
    let mut proc = hostmux_proc::boot().expect("relay boot");
    let me = proc.name().as_str().to_owned();
    let mut waiting: std::collections::VecDeque<(String, u64, u32)> = Default::default();
    let result = proc.serve(|mut message| {
        match message.sender() {
            Sender::Client { name } => {
                let name = name.to_owned();
                let (id, port) = (message.message_id(), message.port());
                let payload = message.payload();
                message.outbox().send(target.as_str(), port, payload)?;
                waiting.push_back((name, id, port));
            }
            Sender::Proc { name, .. } if name == target => {
                if let Some((client, id, port)) = waiting.pop_front() {
                    // Back to the client: a client's name (`TO_CLIENT`).
                    let header = FrameHeader {
                        dest_port: port,
                        flags: Flags::TO_CLIENT,
                        sender: Sender::Proc {
                            addr: "",
                            name: &me,
                        },
                        ..FrameHeader::data(&client, id)
                    };
                    let payload = message.payload();
                    message.outbox().send_frame(&header, payload)?;
                }
            }
            _ => {}
        }
        Ok(())
    });
    i32::from(result.is_err())
}

/// Maps its rings, breaks its outbound ring's producer index, rings the
/// host and never reports ready.
fn corrupt_before_ready() -> i32 {
    let params = BootParams::from_env().expect("boot parameters");
    let outbound = std::fs::File::from(params.lanes[0].outbound.try_clone().unwrap());
    let doorbell = params.lanes[0].host_doorbell.try_clone().unwrap();
    let _proc = boot_from(params).expect("boot");
    // The producer index (docs/ring.md): far ahead and not a multiple of 16.
    let garbage = 0xdead_beef_u64 * 16 + 8;
    outbound.write_all_at(&garbage.to_le_bytes(), 128).unwrap();
    doorbell.ring().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
