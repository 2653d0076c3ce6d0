//! How a waiting end polls before it sleeps: spin, then spin with yields.
//!
//! A pure spin is the fastest way to notice a peer's store when both ends own
//! a CPU. It is the worst when they do not: the scheduler tends to put a
//! woken task on its waker's CPU, and on a machine with more busy processes
//! than cores (2 vCPUs running host + two procs) a spinning end then keeps
//! the very peer it waits for off that CPU until its spin budget or time
//! slice runs out. So a wait spins with CPU pause hints only for
//! [`PURE_SPIN`] (long enough for a peer on another core to answer), then
//! calls `sched_yield` between checks: on an otherwise idle CPU that returns
//! at once (the check interval grows to one system call), with a runnable
//! peer on the same CPU it lets the peer run. After the budget the caller
//! announces that it sleeps and sleeps (futex or doorbell).

use std::time::{Duration, Instant};

/// How long every wait spins with CPU pause hints before it starts yielding
/// the CPU between checks (see [`spin_for`]).
pub const PURE_SPIN: Duration = Duration::from_micros(2);

/// Poll `ready` for up to `spin`: the first [`PURE_SPIN`] between CPU pause
/// hints, the rest with `std::thread::yield_now()` between checks. Returns
/// `Ok(true)` as soon as `ready` does, `Ok(false)` once `spin` has passed
/// (`ready` is always checked at least once, so a zero `spin` is one check),
/// and the first error `ready` returns.
///
/// The ring's own waits use it; it is public so that code spinning on
/// several conditions (e.g. a proc's receive loop) polls the same way.
///
/// ```
/// let mut polls = 0;
/// let ready = hostmux_ring::spin_for(std::time::Duration::from_secs(5), || {
///     polls += 1;
///     Ok::<_, std::convert::Infallible>(polls == 3)
/// });
/// assert_eq!(ready, Ok(true));
/// assert_eq!(polls, 3);
/// ```
#[inline]
pub fn spin_for<E>(spin: Duration, ready: impl FnMut() -> Result<bool, E>) -> Result<bool, E> {
    spin_for_with(PURE_SPIN, spin, ready)
}

/// [`spin_for`] with the pure-spin part set explicitly: `pure_spin >= spin`
/// never yields (for ends that own a dedicated core), `Duration::ZERO`
/// yields between all checks.
pub fn spin_for_with<E>(
    pure_spin: Duration,
    spin: Duration,
    mut ready: impl FnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    if ready()? {
        return Ok(true);
    }
    if spin.is_zero() {
        return Ok(false);
    }
    let started = Instant::now();
    if !pure_spin.is_zero() {
        // One pause hint (about 25 ns here) between checks, and the clock
        // (about 20 ns) read only every CLOCK_EVERY checks: a peer's store
        // is noticed within tens of nanoseconds.
        let mut checks = 0u32;
        loop {
            std::hint::spin_loop();
            if ready()? {
                return Ok(true);
            }
            checks = checks.wrapping_add(1);
            if checks % CLOCK_EVERY == 0 {
                let elapsed = started.elapsed();
                if elapsed >= spin {
                    return Ok(false);
                }
                if elapsed >= pure_spin {
                    break;
                }
            }
        }
    }
    loop {
        std::thread::yield_now();
        if ready()? {
            return Ok(true);
        }
        if started.elapsed() >= spin {
            return Ok(false);
        }
    }
}

/// Pure-spin checks between two clock reads.
const CLOCK_EVERY: u32 = 16;
