//! `hostmux-sink`: a proc that counts and discards every message. Its counts
//! are the agent's stats (`frames_in`, `bytes_in`). It answers nothing, so
//! no notice or control response that reaches it is ever answered.
//!
//! Run by a host (boot protocol, see `docs/proc.md`). Exits 0 when stopped
//! (agent `Stop` or SIGTERM) or when the host closes its ring.

use std::process::ExitCode;
use std::time::Duration;

use hostmux_proc::BatchRecv;

fn main() -> ExitCode {
    let result = hostmux_proc::boot().and_then(|mut proc| loop {
        match proc.recv_batch(256, Duration::from_secs(3600), |_message| {})? {
            BatchRecv::Delivered(_) | BatchRecv::TimedOut => {}
            BatchRecv::Stopped | BatchRecv::Closed => return Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostmux-sink: {e}");
            ExitCode::FAILURE
        }
    }
}
