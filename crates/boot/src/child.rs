//! The child side of the readiness protocol: read the ready channel from
//! the environment, then report ready once.
//!
//! Reading and reporting are separate steps ([`ReadyChannel::from_env`],
//! then [`ReadyChannel::report`]) so a child can read its boot variables
//! first (which takes them out of its environment, see
//! [`crate::env::received`]) and report later, when it can serve.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::RawFd;

use crate::env::{PROC_NAME_ENV, READY_FD_ENV, READY_NONCE_ENV};
use crate::readiness::{is_nonce, ready_record, NONCE_HEX_LEN};
use crate::BootError;

/// The readiness channel a manager handed this process: the ready pipe's fd
/// number and the nonce, parsed and checked but not yet adopted.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadyChannel {
    fd: RawFd,
    nonce: String,
}

impl ReadyChannel {
    /// Reads the channel from the boot variables this process was started
    /// with ([`crate::env::received`]: the first read removes them all from
    /// the environment), checked as [`ReadyChannel::parse`] does.
    pub fn from_env() -> Result<Option<Self>, BootError> {
        Self::parse(crate::env::received)
    }

    /// Reads the channel through `lookup` (the environment, or a map in
    /// tests). `Ok(None)` when [`READY_FD_ENV`] is not set: no manager that
    /// speaks the protocol started this process. Once it is set, the fd
    /// number must be a decimal above 2 and [`READY_NONCE_ENV`] must hold
    /// [`NONCE_HEX_LEN`] hex digits; errors name the variable.
    pub fn parse(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Option<Self>, BootError> {
        let Some(fd_text) = lookup(READY_FD_ENV) else {
            return Ok(None);
        };
        let fd_text = fd_text
            .into_string()
            .map_err(|_| BootError::invalid(READY_FD_ENV, "not UTF-8"))?;
        let fd: RawFd = fd_text.parse().map_err(|_| {
            BootError::invalid(
                READY_FD_ENV,
                format!("{fd_text:?} is not a decimal fd number"),
            )
        })?;
        if fd <= 2 {
            return Err(BootError::invalid(
                READY_FD_ENV,
                format!("fd {fd} is stdin, stdout or stderr or negative"),
            ));
        }
        let nonce = lookup(READY_NONCE_ENV)
            .ok_or(BootError::Missing {
                var: READY_NONCE_ENV,
            })?
            .into_string()
            .map_err(|_| BootError::invalid(READY_NONCE_ENV, "not UTF-8"))?;
        if !is_nonce(&nonce) {
            return Err(BootError::invalid(
                READY_NONCE_ENV,
                format!("not {NONCE_HEX_LEN} hex digits"),
            ));
        }
        Ok(Some(ReadyChannel { fd, nonce }))
    }

    /// The inherited fd number of the ready pipe's write end.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The nonce the record echoes.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Tells the manager this proc is ready: adopts the pipe
    /// ([`adopt_inherited`](crate::adopt_inherited)), writes the ready
    /// record in one `write(2)` and closes the pipe. Works once per process:
    /// a second report finds the fd adopted or closed and fails with
    /// [`BootError::Invalid`] for [`READY_FD_ENV`].
    pub fn report(self) -> Result<(), BootError> {
        let pipe = crate::adopt_inherited(self.fd).map_err(|e| {
            BootError::invalid(
                READY_FD_ENV,
                format!(
                    "fd {} is not an open inherited fd, or readiness was already reported: {e}",
                    self.fd
                ),
            )
        })?;
        std::fs::File::from(pipe)
            .write_all(&ready_record(&self.nonce))
            .map_err(|source| BootError::Io {
                what: "writing the ready record",
                source,
            })
    }
}

/// Tells the manager this proc is ready, from the environment: the one call
/// a child makes ([`ReadyChannel::from_env`] then [`ReadyChannel::report`]).
/// Fails with [`BootError::Missing`] if no ready channel was handed over.
pub fn report_ready() -> Result<(), BootError> {
    ReadyChannel::from_env()?
        .ok_or(BootError::Missing { var: READY_FD_ENV })?
        .report()
}

/// The proc's name as given by its manager, if it was spawned by one (and
/// the name is UTF-8). Like every boot variable it is read once
/// ([`crate::env::received`]) and then gone from the environment.
pub fn proc_name() -> Option<String> {
    crate::env::received(PROC_NAME_ENV)?.into_string().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Read as _;
    use std::os::fd::IntoRawFd as _;

    use super::*;
    use crate::readiness::{check_record, RecordCheck};

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    fn parse(vars: &[(&'static str, &str)]) -> Result<Option<ReadyChannel>, BootError> {
        let map: HashMap<&str, OsString> = vars.iter().map(|(k, v)| (*k, (*v).into())).collect();
        ReadyChannel::parse(|var| map.get(var).cloned())
    }

    fn invalid_var(vars: &[(&'static str, &str)]) -> &'static str {
        match parse(vars).unwrap_err() {
            BootError::Invalid { var, .. } | BootError::Missing { var } => var,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn no_ready_fd_means_no_channel() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&[(READY_NONCE_ENV, NONCE)]).unwrap(), None);
    }

    #[test]
    fn a_valid_channel_parses() {
        let channel = parse(&[(READY_FD_ENV, "7"), (READY_NONCE_ENV, NONCE)])
            .unwrap()
            .unwrap();
        assert_eq!((channel.fd(), channel.nonce()), (7, NONCE));
    }

    #[test]
    fn each_bad_variable_is_named() {
        for fd in ["seven", "2", "-1", ""] {
            assert_eq!(
                invalid_var(&[(READY_FD_ENV, fd), (READY_NONCE_ENV, NONCE)]),
                READY_FD_ENV,
                "{fd:?}"
            );
        }
        assert!(matches!(
            parse(&[(READY_FD_ENV, "7")]).unwrap_err(),
            BootError::Missing {
                var: READY_NONCE_ENV
            }
        ));
        for nonce in ["", "abc", &NONCE.replace('0', "x"), &format!("{NONCE}0")] {
            assert_eq!(
                invalid_var(&[(READY_FD_ENV, "7"), (READY_NONCE_ENV, nonce)]),
                READY_NONCE_ENV,
                "{nonce:?}"
            );
        }
    }

    #[test]
    fn report_writes_the_record_and_closes_the_pipe() {
        let (read, write) = rustix::pipe::pipe().unwrap();
        rustix::io::fcntl_setfd(&write, rustix::io::FdFlags::empty()).unwrap();
        let number = write.into_raw_fd();
        let channel = ReadyChannel {
            fd: number,
            nonce: NONCE.to_owned(),
        };
        channel.report().unwrap();
        let mut received = Vec::new();
        // EOF after the record: the write end was closed by `report`.
        std::fs::File::from(read)
            .read_to_end(&mut received)
            .unwrap();
        assert_eq!(check_record(&received, NONCE), RecordCheck::Complete);
    }
}
