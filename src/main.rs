//! The `hostmux` command-line interface.
//!
//! `main` is deliberately thin: argument parsing lives in [`cli`], and every
//! error is mapped to an exit code here.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hostmux: error: {error:#}");
            ExitCode::from(1)
        }
    }
}
