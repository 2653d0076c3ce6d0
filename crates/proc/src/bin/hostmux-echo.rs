//! `hostmux-echo`: a proc that replies to every data message with its
//! payload and ignores every other kind (notices, control responses).
//!
//! Run by a host (boot protocol, see `docs/proc.md`). Exits 0 when stopped
//! (agent `Stop` or SIGTERM) or when the host closes its ring.

use std::process::ExitCode;

use hostmux_wire::FrameKind;

fn main() -> ExitCode {
    let result = hostmux_proc::boot().and_then(|mut proc| {
        proc.serve(|mut message| {
            // Only data is answered: a notice or a control response that
            // reaches the proc is dropped (answering it could loop).
            if message.kind() != FrameKind::Data {
                return Ok(());
            }
            let payload = message.payload();
            match message.reply(payload) {
                // An anonymous sender has no address to reply to.
                Err(hostmux_proc::ProcError::NoReplyAddress { .. }) => Ok(()),
                other => other,
            }
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostmux-echo: {e}");
            ExitCode::FAILURE
        }
    }
}
