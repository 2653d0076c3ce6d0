//! `cargo bench -p hostmux-bench --bench e2e`: the end-to-end benchmark,
//! the same code as the `hostmux-bench` binary (it runs that binary, so the
//! load generator and procs are separate processes either way). Arguments
//! after `--` are passed through, e.g. `cargo bench -p hostmux-bench --bench
//! e2e -- --duration 1s`.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // cargo passes `--bench`; everything else goes to `hostmux-bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let status = Command::new(env!("CARGO_BIN_EXE_hostmux-bench"))
        .args(&args)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("e2e bench: hostmux-bench failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("e2e bench: cannot run the hostmux-bench binary: {e}");
            ExitCode::FAILURE
        }
    }
}
