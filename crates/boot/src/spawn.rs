//! The manager's half of handing boot variables and fds to a child.
//!
//! The boot protocol passes text in environment variables and descriptors
//! as inherited fds whose numbers are announced in environment variables.
//! Whoever describes the spawn (`hostmux-lifecycle`'s `ProcessConfig`)
//! implements [`ChildSpawn`]; code that defines what a proc is handed (the
//! ring protocol in `hostmux-proc`) writes against the trait, so it needs no
//! dependency on the manager.

use std::os::fd::OwnedFd;

/// A child's spawn description that the boot protocol can add to.
pub trait ChildSpawn: Sized {
    /// Sets environment variable `var` of the child to `value`.
    fn boot_env(self, var: &'static str, value: &str) -> Self;

    /// Passes `fd` to the child at a number the spawner picks (open, not
    /// close-on-exec, above 2, as
    /// [`adopt_inherited`](crate::adopt_inherited) expects) and announces
    /// that number in environment variable `var` as a decimal string. Each
    /// further fd announced in the same `var` is appended to it after a
    /// comma, in call order (`10,13,16`: the ring protocol's per-lane fds).
    fn boot_fd(self, fd: OwnedFd, var: &'static str) -> Self;
}
