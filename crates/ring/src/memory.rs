//! [`RingMemory`]: when a ring's pages are allocated.

use crate::error::RingError;

/// When a ring's memory is allocated and mapped: all at creation, or page by
/// page as the producer first writes it.
///
/// A ring is a memfd (shared memory, counted as `Shmem` in
/// `/proc/meminfo`) that both the host and the proc map.
///
/// * [`Populated`](RingMemory::Populated): `MAP_POPULATE` allocates and maps
///   every page at creation, so no access ever page-faults. An idle proc
///   with two 1 MiB rings holds 2 MiB.
/// * [`OnDemand`](RingMemory::OnDemand): only the header page exists at
///   creation; each data page is allocated the first time the producer
///   writes it (a minor page fault in each process that touches it, once
///   per page per process). An idle proc holds two pages. Once a ring has
///   wrapped, every page exists and it costs what a populated one does
///   (pages are never given back while the ring lives).
///
/// The peer that attaches follows the creator's choice (see
/// [`SharedRing::attach`](crate::SharedRing::attach)). Measured costs and
/// how to choose: `docs/operations.md`, "Sizing rings for many procs".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingMemory {
    /// Every page allocated and mapped when the ring is created.
    Populated,
    /// Pages allocated on first write; an idle ring holds its header page only.
    OnDemand,
}

impl RingMemory {
    /// The policy's name as flags and logs spell it (`populated`, `on-demand`).
    pub fn name(self) -> &'static str {
        match self {
            RingMemory::Populated => "populated",
            RingMemory::OnDemand => "on-demand",
        }
    }

    /// What a memfd of `size` bytes with `stat`'s allocated blocks looks
    /// like: `Populated` when every page of it exists.
    pub(crate) fn of_memfd(stat: &rustix::fs::Stat, size: usize) -> RingMemory {
        if allocated_bytes(stat) >= size as u64 {
            RingMemory::Populated
        } else {
            RingMemory::OnDemand
        }
    }
}

impl std::fmt::Display for RingMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RingMemory {
    type Err = RingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "populated" => Ok(RingMemory::Populated),
            "on-demand" => Ok(RingMemory::OnDemand),
            _ => Err(RingError::UnknownRingMemory {
                name: text.to_owned(),
            }),
        }
    }
}

/// Bytes of memory a file holds (`st_blocks` counts 512-byte units).
pub(crate) fn allocated_bytes(stat: &rustix::fs::Stat) -> u64 {
    (stat.st_blocks as u64).saturating_mul(512)
}
