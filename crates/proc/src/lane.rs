//! Which lane a frame between two procs takes: [`pair_lane`]; a proc's
//! per-lane state: [`Lanes`].

/// The lane (below `lanes`) of all frames between the procs (or a proc and
/// a client) named `a` and `b` that answer nothing: a function of the
/// *unordered* pair, so `pair_lane(a, b, n) == pair_lane(b, a, n)` and both
/// sides of a conversation use one lane, in both directions, keeping its
/// order (a host I/O thread forwards what it drains from lane `k` on lane
/// `k`). A reply does not use it: it goes on the lane its message came in
/// on.
///
/// The function is part of the boot protocol, stable across versions:
/// FNV-1a (64 bit) over the smaller name's bytes, a `0xff` byte (never in
/// UTF-8, so no two pairs share an input) and the larger name's bytes
/// (names compared as bytes), modulo `lanes`. With one lane (or none) it is
/// 0 without hashing. Only names count: the destination's host address and
/// namespace (proc or client) do not.
///
/// ```
/// use hostmux_proc::pair_lane;
///
/// assert_eq!(pair_lane("alpha", "beta", 4), pair_lane("beta", "alpha", 4));
/// assert!(pair_lane("alpha", "beta", 4) < 4);
/// assert_eq!(pair_lane("alpha", "beta", 1), 0);
/// ```
#[inline]
pub fn pair_lane(a: &str, b: &str, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let (low, high) = if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in low.bytes().chain([0xff]).chain(high.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // `lanes` fits in u64 and the remainder is below it.
    (hash % lanes as u64) as usize
}

/// Messages a proc with several lanes takes from one lane in a row, while
/// that lane has them, before its next receive looks at the other lanes
/// first. Bounds how long a busy lane can keep the others waiting, and how
/// often a receive looks at empty lanes (about 110 instructions each per
/// look; docs/benchmarks.md, "Empty lanes").
pub const LANE_QUANTUM: u32 = 16;

/// One `T` per lane, lane 0 first, with lane 0 held inline: a one-lane
/// proc (the usual case, one host I/O thread) reaches its only lane with
/// no pointer to follow, no index arithmetic and no bounds check. The
/// count is fixed when the proc boots (at least one lane).
#[derive(Debug)]
pub(crate) struct Lanes<T> {
    first: T,
    /// Lanes 1 and up, in order (empty on a one-lane proc).
    others: Vec<T>,
}

impl<T> Lanes<T> {
    /// The lanes of `all`, lane 0 first; `None` if `all` is empty.
    pub(crate) fn new(all: Vec<T>) -> Option<Self> {
        let mut all = all.into_iter();
        let first = all.next()?;
        Some(Self {
            first,
            others: all.collect(),
        })
    }

    /// The number of lanes (at least 1).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        1 + self.others.len()
    }

    /// Whether there is only lane 0.
    #[inline(always)]
    pub(crate) fn is_single(&self) -> bool {
        self.others.is_empty()
    }

    /// Lane 0.
    #[inline(always)]
    pub(crate) fn first(&self) -> &T {
        &self.first
    }

    /// Lane `lane`; a lane past the last is clamped to it (the callers pass
    /// lanes the proc has: the lane a message came in on, a pair lane
    /// computed for this count). Lane 0 is reached without an index.
    #[inline(always)]
    pub(crate) fn get_mut(&mut self, lane: usize) -> &mut T {
        if lane == 0 {
            return &mut self.first;
        }
        match self.others.len() {
            0 => &mut self.first,
            n => &mut self.others[(lane - 1).min(n - 1)],
        }
    }

    /// Every lane, lane 0 first.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        std::iter::once(&mut self.first).chain(self.others.iter_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_of_a_pair_is_symmetric_and_in_range() {
        let names = [
            "a", "b", "echo", "sink", "service", "x-1", "x-2", "ab", "ba", "",
        ];
        for lanes in [1, 2, 3, 4, 7, 16, 256] {
            for a in names {
                for b in names {
                    let lane = pair_lane(a, b, lanes);
                    assert_eq!(lane, pair_lane(b, a, lanes), "{a} {b} {lanes}");
                    assert!(lane < lanes);
                }
            }
        }
        assert_eq!(pair_lane("echo", "sink", 0), 0);
    }

    #[test]
    fn pairs_spread_over_the_lanes() {
        // Not a quality test of the hash: only that it does not put every
        // pair on one lane (which would serialise a proc's traffic).
        let mut used = [0usize; 4];
        for i in 0..64 {
            used[pair_lane("client", &format!("proc-{i}"), 4)] += 1;
        }
        assert!(used.iter().all(|&n| n > 0), "{used:?}");
    }

    #[test]
    fn the_function_is_stable() {
        // Part of the boot protocol: a host may compute it too. FNV-1a 64
        // over b"alpha\xffbeta" is 0xe74a8011c76f25ae (computed apart).
        assert_eq!(pair_lane("alpha", "beta", 1000), 246);
        assert_eq!(pair_lane("alpha", "beta", 4), 2);
    }
}
