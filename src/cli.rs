//! Flag parsing for the `hostmux` binary.

use std::process::ExitCode;

use clap::Parser;

/// hostmux: one host process per machine that makes every child proc
/// reachable through a single frontend address, by name.
///
/// The host, the control plane and the demo are not implemented yet; today
/// this binary only reports its version and the wire limits it would enforce.
#[derive(Debug, Parser)]
#[command(name = "hostmux", version, about, long_about)]
struct Cli {}

/// Parses the command line and runs the chosen subcommand.
pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let _cli = Cli::parse();
    println!(
        "hostmux {}: no subcommands yet; see README.md for what works today",
        env!("CARGO_PKG_VERSION")
    );
    Ok(ExitCode::SUCCESS)
}
