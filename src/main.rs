//! The `hostmux` command-line interface.
//!
//! `main` is deliberately thin: flag parsing lives in [`cli`], each
//! subcommand in its own module, and every error is mapped to a documented
//! exit code here.
#![forbid(unsafe_code)]

mod cli;
mod client;
mod control;
mod demo;
mod send;
mod serve;

use std::process::ExitCode;

use hostmux::{format, procs};

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hostmux: error: {}", cli::message(&error));
            cli::exit_code(&error)
        }
    }
}
