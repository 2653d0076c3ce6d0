//! The boot protocol: how a host hands an OS proc its identity, rings and
//! doorbells, defined once for both sides.
//!
//! The host side calls [`host_ends`] (or, if it already split its rings,
//! [`child_config`]); the proc side calls [`BootParams::from_env`] (through
//! [`crate::boot`]). Descriptors travel as inherited fds whose numbers the
//! manager announces in environment variables; the rest travels as
//! environment text. The host side is written against
//! [`hostmux_boot::ChildSpawn`], which the lifecycle manager's
//! `ProcessConfig` implements, so this crate needs no manager; the variable
//! names are [`hostmux_boot::env`]'s, the one list of boot variables.
//!
//! | variable | required | value |
//! |---|---|---|
//! | [`PROC_ID_ENV`] `HOSTMUX_PROC_ID` | yes | the proc id `ADDR/NAME`: the host's frontend address and the proc's name |
//! | [`SERVICE_NAME_ENV`] `HOSTMUX_SERVICE_NAME` | yes | the host's service proc: the only sender whose agent requests are honoured |
//! | [`INBOUND_FD_ENV`] `HOSTMUX_INBOUND_FD` | yes | fd of the inbound ring's memfd (host → proc; the proc consumes) |
//! | [`OUTBOUND_FD_ENV`] `HOSTMUX_OUTBOUND_FD` | yes | fd of the outbound ring's memfd (proc → host; the proc produces) |
//! | [`HOST_DOORBELL_FD_ENV`] `HOSTMUX_HOST_DOORBELL_FD` | yes | fd of the host's doorbell eventfd: the proc rings it when the host sleeps on one of its rings |
//! | [`PROC_DOORBELL_FD_ENV`] `HOSTMUX_PROC_DOORBELL_FD` | no | fd of this proc's own eventfd: the host rings it when the proc sleeps in doorbell mode (needed for async waits and for waking on SIGTERM without polling) |
//! | [`LIMITS_ENV`] `HOSTMUX_LIMITS` | no | `max_frame_len,max_header_len,max_name_len` in decimal; default [`Limits::DEFAULT`] |
//! | `HOSTMUX_READY_FD`, `HOSTMUX_READY_NONCE`, `HOSTMUX_PROC_NAME` | (lifecycle) | the readiness pipe and nonce, and the name; set by `hostmux-lifecycle`, read with `hostmux-boot` |
//!
//! Ring sizes are not passed: each memfd carries its capacity in its header,
//! which [`SharedRing::attach`] validates.

use std::ffi::OsString;
use std::os::fd::{AsFd as _, OwnedFd, RawFd};

use hostmux_boot::env::PROC_NAME_ENV;
use hostmux_boot::ChildSpawn;
use hostmux_ring::{Consumer, Doorbell, Producer, SharedRing};
use hostmux_wire::{Limits, ProcId, ProcName};

use crate::ProcError;

pub use hostmux_boot::env::{
    HOST_DOORBELL_FD_ENV, INBOUND_FD_ENV, LIMITS_ENV, OUTBOUND_FD_ENV, PROC_DOORBELL_FD_ENV,
    PROC_ID_ENV, SERVICE_NAME_ENV,
};

/// What a host tells a proc about itself.
#[derive(Debug, Clone, Copy)]
pub struct ProcIdentity<'a> {
    /// The proc's id: the host's frontend address and the proc's name.
    pub id: &'a ProcId,
    /// The host's service proc, whose agent requests the proc obeys.
    pub service_name: &'a ProcName,
    /// The frame limits the host enforces.
    pub limits: Limits,
}

/// The descriptors a proc inherits. Close-on-exec copies are fine: the
/// lifecycle manager places them in the child.
#[derive(Debug)]
pub struct ChildFds {
    /// The inbound ring's memfd.
    pub inbound: OwnedFd,
    /// The outbound ring's memfd.
    pub outbound: OwnedFd,
    /// The host doorbell's eventfd.
    pub host_doorbell: OwnedFd,
    /// The proc doorbell's eventfd, if the host gives the proc one. The host
    /// must then make its inbound producer ring it
    /// ([`Producer::set_consumer_doorbell`]) and its outbound consumer ring
    /// it ([`Consumer::set_producer_doorbell`]); [`host_ends`] does both.
    pub proc_doorbell: Option<OwnedFd>,
}

/// Adds the boot protocol to `config` (the manager's spawn description,
/// e.g. `hostmux_lifecycle::ProcessConfig`): the environment and the fds,
/// each fd announced in its variable. The lower-level half of [`host_ends`].
pub fn child_config<C: ChildSpawn>(config: C, who: ProcIdentity<'_>, fds: ChildFds) -> C {
    let limits = who.limits;
    let mut config = config
        .boot_env(PROC_ID_ENV, &who.id.to_string())
        .boot_env(SERVICE_NAME_ENV, who.service_name.as_str())
        .boot_env(
            LIMITS_ENV,
            &format!(
                "{},{},{}",
                limits.max_frame_len, limits.max_header_len, limits.max_name_len
            ),
        )
        .boot_fd(fds.inbound, INBOUND_FD_ENV)
        .boot_fd(fds.outbound, OUTBOUND_FD_ENV)
        .boot_fd(fds.host_doorbell, HOST_DOORBELL_FD_ENV);
    if let Some(fd) = fds.proc_doorbell {
        config = config.boot_fd(fd, PROC_DOORBELL_FD_ENV);
    }
    config
}

/// The host's ends of a proc's rings, wired to the proc's doorbell.
#[derive(Debug)]
pub struct HostEnds {
    /// The host writes frames for the proc here; it rings the proc doorbell
    /// when the proc sleeps on it.
    pub inbound: Producer,
    /// The host reads the proc's frames here; it rings the proc doorbell
    /// when the proc waits for space.
    pub outbound: Consumer,
    /// The proc's doorbell (the host keeps a handle, e.g. to wake the proc).
    pub proc_doorbell: Doorbell,
}

/// The one call a host makes to start an OS proc on its rings: creates the
/// proc's doorbell, adds the boot protocol to `config` ([`child_config`]),
/// and returns the host's ring ends with the doorbells wired both ways.
///
/// `inbound` and `outbound` are fresh rings the host created with
/// [`SharedRing::create`]; `host_doorbell` is the eventfd the host waits on
/// (the proc gets a copy and rings it as the outbound ring's consumer
/// doorbell and the inbound ring's producer doorbell).
pub fn host_ends<C: ChildSpawn>(
    config: C,
    who: ProcIdentity<'_>,
    inbound: SharedRing,
    outbound: SharedRing,
    host_doorbell: &Doorbell,
) -> Result<(C, HostEnds), ProcError> {
    let dup = |what: &'static str, fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map_err(|source| ProcError::Io { what, source })
    };
    let proc_doorbell = Doorbell::new().map_err(ProcError::ring("proc doorbell"))?;
    let fds = ChildFds {
        inbound: dup("duplicating the inbound memfd", inbound.memfd())?,
        outbound: dup("duplicating the outbound memfd", outbound.memfd())?,
        host_doorbell: dup("duplicating the host doorbell", host_doorbell.as_fd())?,
        proc_doorbell: Some(dup("duplicating the proc doorbell", proc_doorbell.as_fd())?),
    };
    let config = child_config(config, who, fds);
    let mut producer = inbound
        .into_producer()
        .map_err(ProcError::ring("inbound"))?;
    let mut consumer = outbound
        .into_consumer()
        .map_err(ProcError::ring("outbound"))?;
    let clone = || {
        proc_doorbell
            .try_clone()
            .map_err(ProcError::ring("proc doorbell"))
    };
    producer.set_consumer_doorbell(Some(clone()?));
    consumer.set_producer_doorbell(Some(clone()?));
    Ok((
        config,
        HostEnds {
            inbound: producer,
            outbound: consumer,
            proc_doorbell,
        },
    ))
}

/// Everything a proc needs to start: identity, limits, ring memfds and
/// doorbells. [`BootParams::from_env`] reads it from the boot protocol; an
/// in-process proc builds it directly and calls [`crate::boot_from`].
#[derive(Debug)]
pub struct BootParams {
    /// The proc's id.
    pub id: ProcId,
    /// The host's service proc, whose agent requests the proc obeys.
    pub service_name: ProcName,
    /// The frame limits.
    pub limits: Limits,
    /// The inbound ring's memfd (the proc consumes).
    pub inbound: OwnedFd,
    /// The outbound ring's memfd (the proc produces).
    pub outbound: OwnedFd,
    /// The host's doorbell.
    pub host_doorbell: Doorbell,
    /// The proc's own doorbell, if the host rings one.
    pub proc_doorbell: Option<Doorbell>,
}

/// The boot parameters as text, parsed and checked, before any fd is adopted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BootEnv {
    pub(crate) id: ProcId,
    pub(crate) service_name: ProcName,
    pub(crate) limits: Limits,
    pub(crate) inbound: RawFd,
    pub(crate) outbound: RawFd,
    pub(crate) host_doorbell: RawFd,
    pub(crate) proc_doorbell: Option<RawFd>,
}

fn text(
    lookup: &impl Fn(&str) -> Option<OsString>,
    name: &'static str,
) -> Result<Option<String>, ProcError> {
    match lookup(name) {
        None => Ok(None),
        Some(value) => value
            .into_string()
            .map(Some)
            .map_err(|_| ProcError::invalid(name, "not UTF-8")),
    }
}

fn required(
    lookup: &impl Fn(&str) -> Option<OsString>,
    name: &'static str,
) -> Result<String, ProcError> {
    text(lookup, name)?.ok_or(ProcError::MissingParameter { name })
}

fn fd_number(name: &'static str, value: &str) -> Result<RawFd, ProcError> {
    let fd: RawFd = value
        .parse()
        .map_err(|_| ProcError::invalid(name, format!("{value:?} is not a decimal fd number")))?;
    if fd <= 2 {
        return Err(ProcError::invalid(
            name,
            format!("fd {fd} is stdin, stdout or stderr or negative"),
        ));
    }
    Ok(fd)
}

fn parse_limits(value: &str) -> Result<Limits, ProcError> {
    let bad = || {
        ProcError::invalid(
            LIMITS_ENV,
            format!(
                "{value:?} is not three decimal numbers max_frame_len,max_header_len,max_name_len"
            ),
        )
    };
    let mut parts = value
        .split(',')
        .map(|p| p.parse::<usize>().map_err(|_| bad()));
    let limits = Limits {
        max_frame_len: parts.next().ok_or_else(bad)??,
        max_header_len: parts.next().ok_or_else(bad)??,
        max_name_len: parts.next().ok_or_else(bad)??,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    if limits.max_frame_len == 0 || limits.max_header_len == 0 || limits.max_name_len == 0 {
        return Err(ProcError::invalid(LIMITS_ENV, "a limit is zero"));
    }
    Ok(limits)
}

impl BootEnv {
    /// Parses and checks the boot parameters from `lookup` (the environment
    /// in production, a map in tests). Adopts nothing.
    pub(crate) fn parse(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, ProcError> {
        let limits = match text(&lookup, LIMITS_ENV)? {
            Some(value) => parse_limits(&value)?,
            None => Limits::DEFAULT,
        };
        let id_text = required(&lookup, PROC_ID_ENV)?;
        let id: ProcId = id_text
            .parse()
            .map_err(|e| ProcError::invalid(PROC_ID_ENV, format!("{id_text:?}: {e}")))?;
        ProcName::with_max_len(id.name().as_str(), limits.max_name_len)
            .map_err(|e| ProcError::invalid(PROC_ID_ENV, e.to_string()))?;
        if let Some(given) = text(&lookup, PROC_NAME_ENV)? {
            if given != id.name().as_str() {
                return Err(ProcError::invalid(
                    PROC_ID_ENV,
                    format!("names proc {} but {PROC_NAME_ENV} is {given}", id.name()),
                ));
            }
        }
        let service_text = required(&lookup, SERVICE_NAME_ENV)?;
        let service_name = ProcName::with_max_len(&service_text, limits.max_name_len)
            .map_err(|e| ProcError::invalid(SERVICE_NAME_ENV, format!("{service_text:?}: {e}")))?;
        let inbound = fd_number(INBOUND_FD_ENV, &required(&lookup, INBOUND_FD_ENV)?)?;
        let outbound = fd_number(OUTBOUND_FD_ENV, &required(&lookup, OUTBOUND_FD_ENV)?)?;
        let host_doorbell = fd_number(
            HOST_DOORBELL_FD_ENV,
            &required(&lookup, HOST_DOORBELL_FD_ENV)?,
        )?;
        let proc_doorbell = text(&lookup, PROC_DOORBELL_FD_ENV)?
            .map(|v| fd_number(PROC_DOORBELL_FD_ENV, &v))
            .transpose()?;
        let env = BootEnv {
            id,
            service_name,
            limits,
            inbound,
            outbound,
            host_doorbell,
            proc_doorbell,
        };
        // Adopting one number twice would close it twice.
        let named = env.fds();
        for (i, (name, fd)) in named.iter().enumerate() {
            if let Some((other, _)) = named[..i].iter().find(|(_, f)| f == fd) {
                return Err(ProcError::invalid(
                    name,
                    format!("fd {fd} is also given as {other}"),
                ));
            }
        }
        Ok(env)
    }

    fn fds(&self) -> Vec<(&'static str, RawFd)> {
        let mut fds = vec![
            (INBOUND_FD_ENV, self.inbound),
            (OUTBOUND_FD_ENV, self.outbound),
            (HOST_DOORBELL_FD_ENV, self.host_doorbell),
        ];
        if let Some(fd) = self.proc_doorbell {
            fds.push((PROC_DOORBELL_FD_ENV, fd));
        }
        fds
    }
}

static BOOT_CLAIMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Adopts inherited fd `fd` (announced in `name`), which also makes it
/// close-on-exec ([`hostmux_boot::adopt_inherited`]).
fn adopt(name: &'static str, fd: RawFd) -> Result<OwnedFd, ProcError> {
    hostmux_boot::adopt_inherited(fd).map_err(|e| {
        let reason = if e.raw_os_error() == Some(libc::EBUSY) {
            format!("fd {fd} is close-on-exec: not inherited across exec, or adopted already")
        } else {
            format!("fd {fd} is not open: {e}")
        };
        ProcError::invalid(name, reason)
    })
}

fn adopt_eventfd(name: &'static str, fd: RawFd) -> Result<Doorbell, ProcError> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    if link.as_deref() != Some(std::path::Path::new("anon_inode:[eventfd]")) {
        return Err(ProcError::invalid(
            name,
            format!("fd {fd} is not an eventfd ({link:?})"),
        ));
    }
    Doorbell::from_fd(adopt(name, fd)?)
        .map_err(|e| ProcError::invalid(name, format!("fd {fd}: {e}")))
}

impl BootParams {
    /// Reads the boot protocol from this process's environment and adopts
    /// the inherited fds (close-on-exec, so the proc's own children do not
    /// inherit them). Only one call per process can succeed.
    ///
    /// The variables are read through [`hostmux_boot::env::received`]: the
    /// first read removes every boot variable from the environment (and from
    /// `/proc/self/environ`), so the proc's own children never see fd
    /// numbers that are not theirs. Call it before starting threads that
    /// read the environment.
    ///
    /// Errors name the parameter: [`ProcError::MissingParameter`] or
    /// [`ProcError::InvalidParameter`] (not a number, not open, not an
    /// eventfd, the same fd twice, a bad proc id, ...). A memfd that is not
    /// a valid ring is reported when it is mapped, also naming its variable.
    pub fn from_env() -> Result<Self, ProcError> {
        let env = BootEnv::parse(hostmux_boot::env::received)?;
        if BOOT_CLAIMED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(ProcError::AlreadyBooted);
        }
        Ok(BootParams {
            inbound: adopt(INBOUND_FD_ENV, env.inbound)?,
            outbound: adopt(OUTBOUND_FD_ENV, env.outbound)?,
            host_doorbell: adopt_eventfd(HOST_DOORBELL_FD_ENV, env.host_doorbell)?,
            proc_doorbell: env
                .proc_doorbell
                .map(|fd| adopt_eventfd(PROC_DOORBELL_FD_ENV, fd))
                .transpose()?,
            id: env.id,
            service_name: env.service_name,
            limits: env.limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn good() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            (PROC_ID_ENV, "tcp:127.0.0.1:7000/echo"),
            (SERVICE_NAME_ENV, "service"),
            (INBOUND_FD_ENV, "10"),
            (OUTBOUND_FD_ENV, "11"),
            (HOST_DOORBELL_FD_ENV, "12"),
        ])
    }

    fn parse(env: &HashMap<&'static str, &'static str>) -> Result<BootEnv, ProcError> {
        BootEnv::parse(|name| env.get(name).map(OsString::from))
    }

    fn failing_parameter(env: &HashMap<&'static str, &'static str>) -> (&'static str, bool) {
        match parse(env).unwrap_err() {
            ProcError::MissingParameter { name } => (name, true),
            ProcError::InvalidParameter { name, .. } => (name, false),
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn parses_the_protocol_with_defaults() {
        let env = parse(&good()).unwrap();
        assert_eq!(env.id.to_string(), "tcp:127.0.0.1:7000/echo");
        assert_eq!(env.service_name.as_str(), "service");
        assert_eq!((env.inbound, env.outbound, env.host_doorbell), (10, 11, 12));
        assert_eq!(env.proc_doorbell, None);
        assert_eq!(env.limits, Limits::DEFAULT);

        let mut with_optional = good();
        with_optional.insert(PROC_DOORBELL_FD_ENV, "13");
        with_optional.insert(LIMITS_ENV, "65536,256,32");
        let env = parse(&with_optional).unwrap();
        assert_eq!(env.proc_doorbell, Some(13));
        assert_eq!(
            env.limits,
            Limits {
                max_frame_len: 65536,
                max_header_len: 256,
                max_name_len: 32
            }
        );
    }

    #[test]
    fn each_missing_parameter_is_named() {
        for name in [
            PROC_ID_ENV,
            SERVICE_NAME_ENV,
            INBOUND_FD_ENV,
            OUTBOUND_FD_ENV,
            HOST_DOORBELL_FD_ENV,
        ] {
            let mut env = good();
            env.remove(name);
            assert_eq!(failing_parameter(&env), (name, true));
        }
    }

    #[test]
    fn each_invalid_parameter_is_named() {
        let cases = [
            (PROC_ID_ENV, "echo"),
            (PROC_ID_ENV, "tcp:127.0.0.1:7000/bad name"),
            (SERVICE_NAME_ENV, ".hidden"),
            (INBOUND_FD_ENV, "ten"),
            (OUTBOUND_FD_ENV, "2"),
            (HOST_DOORBELL_FD_ENV, "-1"),
            (PROC_DOORBELL_FD_ENV, "x"),
            (PROC_DOORBELL_FD_ENV, "10"),
            (LIMITS_ENV, "1,2"),
            (LIMITS_ENV, "1,2,3,4"),
            (LIMITS_ENV, "0,512,64"),
            (PROC_NAME_ENV, "other"),
        ];
        for (name, value) in cases {
            let mut env = good();
            env.insert(name, value);
            let expected = if name == PROC_NAME_ENV {
                PROC_ID_ENV
            } else {
                name
            };
            assert_eq!(failing_parameter(&env), (expected, false), "{name}={value}");
        }
    }

    #[test]
    fn the_same_fd_twice_is_refused() {
        let mut env = good();
        env.insert(OUTBOUND_FD_ENV, "10");
        assert_eq!(failing_parameter(&env), (OUTBOUND_FD_ENV, false));
    }
}
