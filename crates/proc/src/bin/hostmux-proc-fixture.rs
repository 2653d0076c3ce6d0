//! `hostmux-proc-fixture MODE [N]`: misbehaving procs for the test suites.
//!
//! * `boot`: boots, then serves like echo (data only); a boot error is printed to stderr
//!   as `boot failed: <error>` and the exit code is 3 (for the boot
//!   parameter tests).
//! * `ignore-term`: ready, then ignores SIGTERM and the agent (never
//!   receives): only SIGKILL ends it.
//! * `crash-after N`: echoes N messages, then aborts (SIGABRT).
//! * `crash-after-batches N`: echoes in receive batches (replies published
//!   once per batch); aborts after the batch in which it echoed its N-th
//!   message.
//! * `gate`: holds every data message from a client; a data message whose
//!   payload is `release` makes it answer all it holds (each with its own
//!   message id and payload, to its sender) in the order received, and
//!   `release:K` only the first K of them.
//! * `never-ready`: maps its rings but never reports ready.
//! * `corrupt-outbound`: echoes; a message with payload `corrupt` makes it
//!   write garbage over its outbound ring's producer index and ring the host
//!   doorbell, then wait to be killed.
//! * `boot-leftovers`: boots, then answers every data message with what
//!   boot left behind, one item a line: `env NAME` for a boot variable
//!   still in its environment, `environ NAME` for one still in
//!   `/proc/self/environ`, and `fd N TARGET` for every open fd.

use std::os::unix::fs::FileExt as _;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hostmux_proc::protocol::BootParams;
use hostmux_proc::{boot, boot_from, BootOptions, ProcError};
use hostmux_wire::{Flags, FrameHeader, FrameKind, Sender};

/// Byte offset of the producer index (`tail`) in a ring's memfd (`docs/ring.md`).
const TAIL_OFFSET: u64 = 128;

/// Echoes a data message; ignores every other kind (never answers a notice
/// or a control response).
fn echo(message: &mut hostmux_proc::Message<'_>) -> Result<(), ProcError> {
    if message.kind() != FrameKind::Data {
        return Ok(());
    }
    let payload = message.payload();
    match message.reply(payload) {
        Err(ProcError::NoReplyAddress { .. }) => Ok(()),
        other => other,
    }
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn run(mode: &str, count: Option<u64>) -> Result<(), ProcError> {
    match mode {
        "boot" => {
            let mut proc = boot().inspect_err(|e| eprintln!("boot failed: {e}"))?;
            proc.serve(|mut m| echo(&mut m))
        }
        "ignore-term" => {
            // A handler that does nothing, installed before readiness is
            // reported: from then on SIGTERM never terminates us.
            signal_hook::flag::register(
                signal_hook::consts::SIGTERM,
                Arc::new(AtomicBool::new(false)),
            )
            .map_err(|source| ProcError::Io {
                what: "ignoring SIGTERM",
                source,
            })?;
            let options = BootOptions {
                handle_signals: false,
                ..BootOptions::default()
            };
            let _proc = hostmux_proc::boot_with(options)?;
            park_forever()
        }
        "crash-after" => {
            let limit = count.unwrap_or(1);
            let mut proc = boot()?;
            let mut seen = 0;
            proc.serve(|mut m| {
                echo(&mut m)?;
                seen += 1;
                if seen >= limit {
                    m.outbox().flush()?;
                    std::process::abort();
                }
                Ok(())
            })
        }
        "crash-after-batches" => {
            let limit = count.unwrap_or(1);
            let mut proc = boot()?;
            let mut seen = 0;
            let mut failed = None;
            while seen < limit {
                match proc.recv_batch(64, std::time::Duration::from_secs(3600), |mut m| {
                    if let Err(e) = echo(&mut m) {
                        failed.get_or_insert(e);
                    }
                    seen += 1;
                })? {
                    hostmux_proc::BatchRecv::Stopped | hostmux_proc::BatchRecv::Closed => {
                        return Ok(())
                    }
                    _ => {}
                }
                if let Some(e) = failed.take() {
                    return Err(e);
                }
            }
            std::process::abort();
        }
        "gate" => {
            let mut proc = boot()?;
            let own = proc.name().clone();
            let mut held: Vec<(String, u64, Vec<u8>)> = Vec::new();
            proc.serve(|mut m| {
                if m.kind() != FrameKind::Data {
                    return Ok(());
                }
                let Sender::Client { name } = m.sender() else {
                    return Ok(());
                };
                let Some(release) = m.payload().strip_prefix(b"release") else {
                    held.push((name.to_owned(), m.message_id(), m.payload().to_vec()));
                    return Ok(());
                };
                let count = std::str::from_utf8(release)
                    .ok()
                    .and_then(|r| r.strip_prefix(':'))
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(held.len())
                    .min(held.len());
                for (client, message_id, payload) in held.drain(..count) {
                    // A reply to a client: its name is in the client
                    // namespace (`TO_CLIENT`).
                    let header = FrameHeader {
                        flags: Flags::TO_CLIENT,
                        sender: Sender::Proc {
                            addr: "",
                            name: own.as_str(),
                        },
                        ..FrameHeader::data(&client, message_id)
                    };
                    m.outbox().send_frame(&header, &payload)?;
                }
                m.outbox().flush()
            })
        }
        "never-ready" => {
            let _proc = boot_from(BootParams::from_env()?)?;
            park_forever()
        }
        "corrupt-outbound" => {
            let params = BootParams::from_env()?;
            // Lane 0's outbound ring: the one a one-lane host drains.
            let lane = params.lanes.first().ok_or(ProcError::LaneCount {
                name: "lanes",
                count: 0,
                max: hostmux_proc::protocol::MAX_LANES,
            })?;
            let outbound =
                std::fs::File::from(lane.outbound.try_clone().map_err(|source| ProcError::Io {
                    what: "duplicating the outbound memfd",
                    source,
                })?);
            let host_doorbell =
                lane.host_doorbell
                    .try_clone()
                    .map_err(|source| ProcError::Ring {
                        ring: "host doorbell",
                        source,
                    })?;
            let mut proc = boot_from(params)?;
            hostmux_boot::report_ready().map_err(ProcError::Ready)?;
            proc.serve(|mut m| {
                if m.payload() == b"corrupt" {
                    // An index that is not a multiple of 16 and far ahead.
                    let garbage = 0xdead_beef_u64 * 16 + 8;
                    outbound
                        .write_all_at(&garbage.to_le_bytes(), TAIL_OFFSET)
                        .map_err(|source| ProcError::Io {
                            what: "corrupting the outbound ring",
                            source,
                        })?;
                    host_doorbell.ring().map_err(|source| ProcError::Ring {
                        ring: "host doorbell",
                        source,
                    })?;
                    park_forever()
                }
                echo(&mut m)
            })
        }
        "boot-leftovers" => {
            let mut proc = boot()?;
            proc.serve(|mut m| {
                if m.kind() != FrameKind::Data {
                    return Ok(());
                }
                let report = boot_leftovers();
                m.reply(report.as_bytes())
            })
        }
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2)
        }
    }
}

/// What this process still holds of its boot: see `boot-leftovers`.
fn boot_leftovers() -> String {
    let mut report = String::new();
    let environ = std::fs::read("/proc/self/environ").unwrap_or_default();
    for var in hostmux_boot::env::ALL {
        if std::env::var_os(var).is_some() {
            report += &format!("env {var}\n");
        }
        let prefix = format!("{var}=");
        if environ
            .split(|&b| b == 0)
            .any(|entry| entry.starts_with(prefix.as_bytes()))
        {
            report += &format!("environ {var}\n");
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        for entry in fds.flatten() {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            report += &format!(
                "fd {} {}\n",
                entry.file_name().to_string_lossy(),
                target.display()
            );
        }
    }
    report
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let count = args.next().and_then(|n| n.parse().ok());
    match run(&mode, count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostmux-proc-fixture {mode}: {e}");
            ExitCode::from(3)
        }
    }
}
