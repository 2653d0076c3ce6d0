//! The control-plane subcommands: spawn, ps, stop, kill, stats.

use std::process::ExitCode;

use crate::cli::{KillArgs, PsArgs, SpawnArgs, StatsArgs, StopArgs};

fn not_yet() -> anyhow::Result<ExitCode> {
    anyhow::bail!("TODO control client")
}

pub(crate) fn spawn(_args: SpawnArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub(crate) fn ps(_args: PsArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub(crate) fn stop(_args: StopArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub(crate) fn kill(_args: KillArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub(crate) fn stats(_args: StatsArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
