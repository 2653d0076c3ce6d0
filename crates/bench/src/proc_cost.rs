//! `hostmux-bench --proc-cost 0,100,400,1000`: what idle procs cost, under
//! each ring memory policy ([`RingMemory`]), with the host's default rings
//! (1 MiB inbound and outbound).
//!
//! This process is the host (`Host::serve_processes`); it spawns sink
//! procs (this binary, `__proc sink`) that nobody sends to, up to each
//! count in turn, and after each step reads:
//!
//! * the host's `Rss`, `Pss` and `Pss_Shmem` from `/proc/self/smaps_rollup`
//!   (ring pages mapped in the host are counted in `Rss` whole and in `Pss`
//!   split with the proc that maps them too);
//! * the bytes the ring memfds hold: `st_blocks` of every distinct
//!   `memfd:hostmux-ring` the host maps (pages counted once, however many
//!   processes map them);
//! * the machine's `Shmem` from `/proc/meminfo`, against its value before
//!   the host started (other programs on the machine move it too);
//! * the host's open fds (`/proc/self/fd`);
//! * the procs' mean `Rss` and `Pss` (their own memory plus their view of
//!   the rings).
//!
//! Each proc is ready (its rings mapped, its agent answered) before it
//! counts. Prints a table and writes `RESULTS/proc-cost.json`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use hostmux_host::{HostConfig, RingMemory};
use hostmux_lifecycle::{ProcHandle as _, ProcManager as _};
use hostmux_wire::ProcName;
use serde::Serialize;

use super::worker::spawn_idle_procs;
use crate::format::{self, Table};

/// One step: the host with `procs` idle procs under `ring_memory`.
#[derive(Debug, Clone, Serialize)]
struct Step {
    ring_memory: &'static str,
    procs: usize,
    host_rss: u64,
    host_pss: u64,
    host_pss_shmem: u64,
    ring_memfd_bytes: u64,
    machine_shmem_delta: i64,
    host_fds: usize,
    proc_rss_mean: u64,
    proc_pss_mean: u64,
}

pub(crate) fn run(counts: &[usize], results: &Path) -> anyhow::Result<ExitCode> {
    let mut counts = counts.to_vec();
    counts.sort_unstable();
    counts.dedup();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut steps = Vec::new();
    for memory in [RingMemory::Populated, RingMemory::OnDemand] {
        steps.extend(runtime.block_on(measure(memory, &counts))?);
    }
    print!("{}", table(&steps));
    std::fs::create_dir_all(results)
        .with_context(|| format!("creating the results folder {}", results.display()))?;
    let json = results.join("proc-cost.json");
    std::fs::write(&json, serde_json::to_string_pretty(&steps)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("results written to {}", json.display());
    Ok(ExitCode::SUCCESS)
}

async fn measure(memory: RingMemory, counts: &[usize]) -> anyhow::Result<Vec<Step>> {
    let shmem_before = meminfo_kib("Shmem")? * 1024;
    let config = HostConfig {
        ring_memory: memory,
        ..HostConfig::default()
    };
    let (host, serving) = super::start_host(config)
        .await
        .context("starting a hostmux host")?;
    let mut steps = Vec::new();
    let mut spawned = 0;
    for &count in counts {
        eprintln!("{memory}: {count} idle procs");
        spawn_idle_procs(&host, spawned..count).await?;
        spawned = count;
        let rollup = smaps_rollup("self")?;
        let (mut proc_rss, mut proc_pss) = (0, 0);
        for n in 0..count {
            let pid = host
                .manager()
                .get(&ProcName::new(&format!("idle-{n}"))?)
                .and_then(|handle| handle.pid())
                .with_context(|| format!("idle proc {n} has no pid"))?;
            let theirs = smaps_rollup(&pid.to_string())?;
            proc_rss += theirs.rss;
            proc_pss += theirs.pss;
        }
        steps.push(Step {
            ring_memory: memory.name(),
            procs: count,
            host_rss: rollup.rss,
            host_pss: rollup.pss,
            host_pss_shmem: rollup.pss_shmem,
            ring_memfd_bytes: ring_memfd_bytes()?,
            machine_shmem_delta: (meminfo_kib("Shmem")? * 1024) as i64 - shmem_before as i64,
            host_fds: std::fs::read_dir("/proc/self/fd")?.count(),
            proc_rss_mean: proc_rss / count.max(1) as u64,
            proc_pss_mean: proc_pss / count.max(1) as u64,
        });
    }
    host.terminate_children(Duration::from_secs(5), 64).await;
    serving.shutdown();
    Ok(steps)
}

/// The table: each step, then per proc (the difference to the first
/// step, divided by the procs added) and 10,000 procs extrapolated.
fn table(steps: &[Step]) -> String {
    let mut out = String::from(
        "idle procs, 1 MiB inbound + 1 MiB outbound rings each (per proc: growth from the first row / procs added)\n",
    );
    let mut table = Table::new(&[
        "ring memory",
        "procs",
        "host RSS",
        "host PSS",
        "ring memfds",
        "machine Shmem +",
        "host fds",
        "per proc: host RSS",
        "memfds",
        "fds",
        "proc RSS",
        "proc PSS",
        "10,000 procs: memfds",
    ]);
    let bytes = |b: u64| format::bytes(b);
    for step in steps {
        let first = steps
            .iter()
            .find(|s| s.ring_memory == step.ring_memory)
            .expect("the step itself");
        let added = step.procs.saturating_sub(first.procs) as u64;
        let per = |now: u64, then: u64| {
            now.saturating_sub(then)
                .checked_div(added)
                .map_or_else(|| "-".to_owned(), bytes)
        };
        let memfd_per_proc =
            step.ring_memfd_bytes.saturating_sub(first.ring_memfd_bytes) / added.max(1);
        table.row(vec![
            step.ring_memory.to_owned(),
            step.procs.to_string(),
            bytes(step.host_rss),
            bytes(step.host_pss),
            bytes(step.ring_memfd_bytes),
            bytes(step.machine_shmem_delta.max(0) as u64),
            step.host_fds.to_string(),
            per(step.host_rss, first.host_rss),
            per(step.ring_memfd_bytes, first.ring_memfd_bytes),
            if added == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{:.2}",
                    (step.host_fds - first.host_fds) as f64 / added as f64
                )
            },
            bytes(step.proc_rss_mean),
            bytes(step.proc_pss_mean),
            if added == 0 {
                "-".to_owned()
            } else {
                bytes(memfd_per_proc * 10_000)
            },
        ]);
    }
    out.push_str(&table.render());
    out
}

/// The fields of `/proc/PID/smaps_rollup` this uses, in bytes.
struct Rollup {
    rss: u64,
    pss: u64,
    pss_shmem: u64,
}

fn smaps_rollup(pid: &str) -> anyhow::Result<Rollup> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| kib_field(&text, name).map(|kib| kib * 1024);
    Ok(Rollup {
        rss: field("Rss").context("no Rss in smaps_rollup")?,
        pss: field("Pss").context("no Pss in smaps_rollup")?,
        pss_shmem: field("Pss_Shmem").unwrap_or(0),
    })
}

fn meminfo_kib(name: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    kib_field(&text, name).with_context(|| format!("no {name} in /proc/meminfo"))
}

/// `NAME:   123 kB` in `text`, as 123.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Bytes held by the distinct ring memfds this process maps (the host
/// maps both rings of every proc; it closes the outbound ring's fd once
/// mapped, so its fds alone would miss half of them): each mapping of
/// `/memfd:hostmux-ring` in `/proc/self/maps`, stat'ed through
/// `/proc/self/map_files`, counted once per inode.
fn ring_memfd_bytes() -> anyhow::Result<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
    let mut seen = HashSet::new();
    let mut total = 0;
    for line in maps.lines().filter(|l| l.contains("/memfd:hostmux-ring")) {
        let Some(range) = line.split_whitespace().next() else {
            continue;
        };
        let path = format!("/proc/self/map_files/{range}");
        let meta = std::fs::metadata(&path).with_context(|| format!("stat {path}"))?;
        if seen.insert(meta.ino()) {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_parse_from_proc_text() {
        let text = "Rss:                1720 kB\nPss:                 272 kB\nPss_Shmem:             8 kB\n";
        assert_eq!(kib_field(text, "Rss"), Some(1720));
        assert_eq!(kib_field(text, "Pss"), Some(272));
        assert_eq!(kib_field(text, "Pss_Shmem"), Some(8));
        assert_eq!(kib_field(text, "Shmem"), None);
    }

    #[test]
    fn this_process_has_an_rss() {
        let rollup = smaps_rollup("self").unwrap();
        assert!(rollup.rss > 0 && rollup.pss > 0);
    }
}
