//! `hostmux bench`.

use std::process::ExitCode;

/// Flags of `hostmux bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {}

/// Flags of the hidden worker processes.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {}

pub(crate) fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("TODO bench")
}
pub(crate) fn run_worker(_args: WorkerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("TODO bench")
}
