//! hostmux-boot: the boot and readiness protocol between a manager that
//! spawns a proc and the proc itself, in one small crate both sides use.
//!
//! Its one job is the hand-over at start-up: which environment variables a
//! child is given ([`env`](mod@env)), the ready record it writes back and how the
//! manager checks it ([`readiness`]), the child's side of reporting ready
//! ([`ReadyChannel`], [`report_ready`]), the manager's side of handing
//! variables and fds over ([`ChildSpawn`]), and the two fd operations every
//! side needs: adopting an inherited fd number ([`adopt_inherited`]) and,
//! with the `tokio` feature, registering an fd with tokio's reactor
//! ([`reactor`]). A spawner also uses [`close_on_exec_except`] between
//! `clone` and `execve`, so a child inherits only the fds meant for it.
//!
//! # Relation to its siblings
//!
//! It depends on no other hostmux crate. `hostmux-lifecycle` (the manager)
//! generates nonces, sets the readiness variables and checks records with
//! it, and implements [`ChildSpawn`] for its `ProcessConfig`;
//! `hostmux-proc` (the child library) reads the ring variables, adopts the
//! ring fds and reports ready with it, so the child library does not depend
//! on the manager. `hostmux-host` registers its doorbell through
//! [`reactor`].
//!
//! # Invariants
//!
//! - An inherited fd is adopted at most once per process: [`adopt_inherited`]
//!   accepts only an open, non-close-on-exec number above 2 and marks it
//!   close-on-exec as it takes it, so no two `OwnedFd`s for one descriptor
//!   exist and the proc's own children do not inherit it.
//! - Reading the environment is separate from acting on it
//!   ([`ReadyChannel::parse`] takes a lookup function and adopts nothing), so
//!   tests need no process environment.
//! - A child reads its boot variables once ([`env::received`]): the first
//!   read removes every variable in [`env::ALL`] from the environment and
//!   wipes it from `/proc/self/environ`, so the proc's own children never
//!   see fd numbers that are not theirs.
//! - A child inherits only the fds its spawner placed for it: the spawner
//!   marks every other fd close-on-exec ([`close_on_exec_except`]).
//! - The record check allocates nothing and decides as bytes arrive: a
//!   prefix of the expected record, the whole record, or bytes that never
//!   can be.
//!
//! # Key design decision: the flag is the claim
//!
//! A descriptor that crossed `execve` is never close-on-exec, while
//! everything Rust code opens is. Adoption tests that flag and sets it,
//! under one lock, which makes "adopted once" a property of the descriptor
//! rather than of per-caller bookkeeping: the proc library and the readiness
//! reporter share no state yet cannot adopt one number twice. The only
//! `unsafe` of the crate is in its private `sys` module.
//!
//! # Example
//!
//! ```
//! use hostmux_boot::env::{READY_FD_ENV, READY_NONCE_ENV};
//! use hostmux_boot::readiness::{check_record, new_nonce, ready_record, RecordCheck};
//! use hostmux_boot::ReadyChannel;
//!
//! // The manager makes a nonce and hands it over with the pipe's fd number.
//! let nonce = new_nonce();
//! let vars = [(READY_FD_ENV, "9".to_owned()), (READY_NONCE_ENV, nonce.clone())];
//! let lookup = |var: &str| vars.iter().find(|(k, _)| *k == var).map(|(_, v)| v.into());
//!
//! // The child reads its channel (adopting nothing yet)...
//! let channel = ReadyChannel::parse(lookup).unwrap().expect("spawned by a manager");
//! assert_eq!(channel.fd(), 9);
//!
//! // ...and the record it would write is what the manager accepts.
//! let record = ready_record(channel.nonce());
//! assert_eq!(check_record(&record[..5], &nonce), RecordCheck::Partial);
//! assert_eq!(check_record(&record, &nonce), RecordCheck::Complete);
//! assert_eq!(check_record(b"hostmux-ready nope\n", &nonce), RecordCheck::Mismatch);
//! ```
#![deny(missing_docs)]
// All unsafe code lives in `sys`; everything else is checked safe.
#![deny(unsafe_code)]

mod child;
pub mod env;
mod error;
#[cfg(feature = "tokio")]
pub mod reactor;
pub mod readiness;
mod spawn;
#[allow(unsafe_code)]
mod sys;

pub use child::{proc_name, report_ready, ReadyChannel};
pub use error::BootError;
pub use spawn::ChildSpawn;
pub use sys::{adopt_inherited, close_on_exec_except};
