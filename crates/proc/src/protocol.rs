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
//! # Lanes
//!
//! A proc talks to its host over one or more *lanes* ([`LaneFds`]): lane `k`
//! is an inbound ring, an outbound ring and the host doorbell of the host
//! I/O thread `k` that owns both rings. Each ring keeps exactly one producer
//! and one consumer. The proc's own doorbell is shared by every lane: any
//! host thread that writes any lane rings it.
//!
//! The three per-lane fd variables hold one decimal fd number per lane,
//! comma-separated, lane 0 first (`HOSTMUX_INBOUND_FD=10,13,16`); with one
//! lane each holds a single number, which is exactly the single-lane
//! protocol of earlier versions, so a proc built against it still boots on
//! a one-lane host. With more than one lane the host also sets
//! [`LANES_ENV`] `HOSTMUX_LANES` to the count, which every list must match.
//! A proc built before lanes existed cannot misread a many-lane boot: it
//! parses `HOSTMUX_INBOUND_FD` as one number, so `10,13,16` fails its boot
//! with `boot parameter HOSTMUX_INBOUND_FD is invalid` instead of serving
//! lane 0 alone while frames wait unread on the others.
//!
//! | variable | required | value |
//! |---|---|---|
//! | [`PROC_ID_ENV`] `HOSTMUX_PROC_ID` | yes | the proc id `ADDR/NAME`: the host's frontend address and the proc's name |
//! | [`SERVICE_NAME_ENV`] `HOSTMUX_SERVICE_NAME` | yes | the host's service proc: the only sender whose agent requests are honoured |
//! | [`INBOUND_FD_ENV`] `HOSTMUX_INBOUND_FD` | yes | per lane, fd of the inbound ring's memfd (host → proc; the proc consumes) |
//! | [`OUTBOUND_FD_ENV`] `HOSTMUX_OUTBOUND_FD` | yes | per lane, fd of the outbound ring's memfd (proc → host; the proc produces) |
//! | [`HOST_DOORBELL_FD_ENV`] `HOSTMUX_HOST_DOORBELL_FD` | yes | per lane, fd of the lane's host doorbell eventfd: the proc rings it when the host thread sleeps on one of the lane's rings |
//! | [`LANES_ENV`] `HOSTMUX_LANES` | no | the number of lanes, 1 to [`MAX_LANES`]; default 1 |
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
    HOST_DOORBELL_FD_ENV, INBOUND_FD_ENV, LANES_ENV, LIMITS_ENV, OUTBOUND_FD_ENV,
    PROC_DOORBELL_FD_ENV, PROC_ID_ENV, SERVICE_NAME_ENV,
};

/// The most lanes a proc accepts (a host has at most this many I/O
/// threads). A process manager may allow fewer: each lane is three
/// inherited fds.
pub const MAX_LANES: usize = 256;

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

/// The descriptors of one lane a proc inherits.
#[derive(Debug)]
pub struct ChildLaneFds {
    /// The lane's inbound ring's memfd.
    pub inbound: OwnedFd,
    /// The lane's outbound ring's memfd.
    pub outbound: OwnedFd,
    /// The eventfd of the host doorbell of the thread that owns the lane.
    pub host_doorbell: OwnedFd,
}

/// The descriptors a proc inherits. Close-on-exec copies are fine: the
/// lifecycle manager places them in the child.
#[derive(Debug)]
pub struct ChildFds {
    /// One entry per lane, lane 0 first: 1 to [`MAX_LANES`] of them (the
    /// proc refuses any other count when it boots).
    pub lanes: Vec<ChildLaneFds>,
    /// The proc doorbell's eventfd, if the host gives the proc one. The host
    /// must then make every lane's inbound producer ring it
    /// ([`Producer::set_consumer_doorbell`]) and every outbound consumer
    /// ring it ([`Consumer::set_producer_doorbell`]); [`host_ends`] does
    /// both.
    pub proc_doorbell: Option<OwnedFd>,
}

/// Adds the boot protocol to `config` (the manager's spawn description,
/// e.g. `hostmux_lifecycle::ProcessConfig`): the environment and the fds,
/// each fd announced in its variable (a lane's fds in the lists of
/// [`INBOUND_FD_ENV`], [`OUTBOUND_FD_ENV`] and [`HOST_DOORBELL_FD_ENV`], in
/// lane order; see the module docs). The lower-level half of [`host_ends`].
///
/// With one lane the environment is exactly the single-lane protocol's.
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
        );
    if fds.lanes.len() != 1 {
        config = config.boot_env(LANES_ENV, &fds.lanes.len().to_string());
    }
    for lane in fds.lanes {
        config = config
            .boot_fd(lane.inbound, INBOUND_FD_ENV)
            .boot_fd(lane.outbound, OUTBOUND_FD_ENV)
            .boot_fd(lane.host_doorbell, HOST_DOORBELL_FD_ENV);
    }
    if let Some(fd) = fds.proc_doorbell {
        config = config.boot_fd(fd, PROC_DOORBELL_FD_ENV);
    }
    config
}

/// The host's ends of one lane of a proc.
#[derive(Debug)]
pub struct HostLane {
    /// The host writes frames for the proc here; it rings the proc doorbell
    /// when the proc sleeps on it.
    pub inbound: Producer,
    /// The host reads the proc's frames here; it rings the proc doorbell
    /// when the proc waits for space.
    pub outbound: Consumer,
}

/// The host's ends of a proc's rings, wired to the proc's doorbell.
#[derive(Debug)]
pub struct HostEnds {
    /// One per lane, in the order given to [`host_ends`].
    pub lanes: Vec<HostLane>,
    /// The proc's doorbell, shared by every lane (the host keeps a handle,
    /// e.g. to wake the proc).
    pub proc_doorbell: Doorbell,
}

/// What a host gives [`host_ends`] for one lane: two fresh rings (made with
/// [`SharedRing::create`]) and the doorbell of the host thread that will own
/// them. The proc gets a copy of the doorbell and rings it as the lane's
/// outbound consumer doorbell and inbound producer doorbell.
#[derive(Debug)]
pub struct HostLaneRings<'a> {
    /// The lane's inbound ring (host → proc).
    pub inbound: SharedRing,
    /// The lane's outbound ring (proc → host).
    pub outbound: SharedRing,
    /// The doorbell the owning host thread waits on.
    pub host_doorbell: &'a Doorbell,
}

/// Checks a lane count against the protocol's bounds (1 to [`MAX_LANES`]).
fn check_lane_count(name: &'static str, count: usize) -> Result<(), ProcError> {
    if count == 0 || count > MAX_LANES {
        return Err(ProcError::LaneCount {
            name,
            count,
            max: MAX_LANES,
        });
    }
    Ok(())
}

/// The one call a host makes to start an OS proc on its rings: creates the
/// proc's doorbell, adds the boot protocol to `config` ([`child_config`]),
/// and returns the host's ring ends with the doorbells wired both ways, one
/// [`HostLane`] per entry of `lanes` (1 to [`MAX_LANES`] of them,
/// [`ProcError::LaneCount`] otherwise).
pub fn host_ends<C: ChildSpawn>(
    config: C,
    who: ProcIdentity<'_>,
    lanes: Vec<HostLaneRings<'_>>,
) -> Result<(C, HostEnds), ProcError> {
    check_lane_count("lanes", lanes.len())?;
    let dup = |what: &'static str, fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map_err(|source| ProcError::Io { what, source })
    };
    let proc_doorbell = Doorbell::new().map_err(ProcError::ring("proc doorbell"))?;
    let clone = || {
        proc_doorbell
            .try_clone()
            .map_err(ProcError::ring("proc doorbell"))
    };
    let mut child_lanes = Vec::with_capacity(lanes.len());
    let mut host_lanes = Vec::with_capacity(lanes.len());
    for lane in lanes {
        child_lanes.push(ChildLaneFds {
            inbound: dup("duplicating an inbound memfd", lane.inbound.memfd())?,
            outbound: dup("duplicating an outbound memfd", lane.outbound.memfd())?,
            host_doorbell: dup("duplicating a host doorbell", lane.host_doorbell.as_fd())?,
        });
        let mut producer = lane
            .inbound
            .into_producer()
            .map_err(ProcError::ring("inbound"))?;
        let mut consumer = lane
            .outbound
            .into_consumer()
            .map_err(ProcError::ring("outbound"))?;
        producer.set_consumer_doorbell(Some(clone()?));
        consumer.set_producer_doorbell(Some(clone()?));
        host_lanes.push(HostLane {
            inbound: producer,
            outbound: consumer,
        });
    }
    let fds = ChildFds {
        lanes: child_lanes,
        proc_doorbell: Some(dup("duplicating the proc doorbell", proc_doorbell.as_fd())?),
    };
    let config = child_config(config, who, fds);
    Ok((
        config,
        HostEnds {
            lanes: host_lanes,
            proc_doorbell,
        },
    ))
}

/// One lane of a proc as it boots: the memfds of its two rings and the
/// doorbell of the host thread that owns them.
#[derive(Debug)]
pub struct LaneFds {
    /// The inbound ring's memfd (the proc consumes).
    pub inbound: OwnedFd,
    /// The outbound ring's memfd (the proc produces).
    pub outbound: OwnedFd,
    /// The doorbell of the host thread that owns the lane.
    pub host_doorbell: Doorbell,
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
    /// The proc's lanes, lane 0 first: 1 to [`MAX_LANES`] of them
    /// ([`crate::boot_from`] refuses any other count with
    /// [`ProcError::LaneCount`]).
    pub lanes: Vec<LaneFds>,
    /// The proc's own doorbell, if the host rings one (shared by all lanes).
    pub proc_doorbell: Option<Doorbell>,
}

impl BootParams {
    /// Checks the lane count (1 to [`MAX_LANES`]).
    pub(crate) fn check_lanes(&self) -> Result<(), ProcError> {
        check_lane_count("lanes", self.lanes.len())
    }
}

/// The boot parameters as text, parsed and checked, before any fd is adopted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BootEnv {
    pub(crate) id: ProcId,
    pub(crate) service_name: ProcName,
    pub(crate) limits: Limits,
    pub(crate) lanes: Vec<LaneEnv>,
    pub(crate) proc_doorbell: Option<RawFd>,
}

/// One lane's fd numbers, as announced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LaneEnv {
    pub(crate) inbound: RawFd,
    pub(crate) outbound: RawFd,
    pub(crate) host_doorbell: RawFd,
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

/// A per-lane fd variable: `lanes` decimal fd numbers, comma-separated.
fn fd_list(name: &'static str, value: &str, lanes: usize) -> Result<Vec<RawFd>, ProcError> {
    let fds = value
        .split(',')
        .map(|part| fd_number(name, part))
        .collect::<Result<Vec<_>, _>>()?;
    if fds.len() != lanes {
        return Err(ProcError::invalid(
            name,
            format!(
                "{value:?} holds {} fd numbers, one per lane, but {LANES_ENV} says {lanes} lanes",
                fds.len()
            ),
        ));
    }
    Ok(fds)
}

fn parse_lane_count(value: Option<String>) -> Result<usize, ProcError> {
    let Some(value) = value else {
        return Ok(1);
    };
    let count = value.parse::<usize>().map_err(|_| {
        ProcError::invalid(LANES_ENV, format!("{value:?} is not a decimal lane count"))
    })?;
    check_lane_count(LANES_ENV, count)?;
    Ok(count)
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
        let lane_count = parse_lane_count(text(&lookup, LANES_ENV)?)?;
        let list = |name: &'static str| -> Result<Vec<RawFd>, ProcError> {
            fd_list(name, &required(&lookup, name)?, lane_count)
        };
        let (inbound, outbound, host_doorbell) = (
            list(INBOUND_FD_ENV)?,
            list(OUTBOUND_FD_ENV)?,
            list(HOST_DOORBELL_FD_ENV)?,
        );
        let lanes = (0..lane_count)
            .map(|k| LaneEnv {
                inbound: inbound[k],
                outbound: outbound[k],
                host_doorbell: host_doorbell[k],
            })
            .collect();
        let proc_doorbell = text(&lookup, PROC_DOORBELL_FD_ENV)?
            .map(|v| fd_number(PROC_DOORBELL_FD_ENV, &v))
            .transpose()?;
        let env = BootEnv {
            id,
            service_name,
            limits,
            lanes,
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
        let mut fds = Vec::with_capacity(3 * self.lanes.len() + 1);
        for lane in &self.lanes {
            fds.extend([
                (INBOUND_FD_ENV, lane.inbound),
                (OUTBOUND_FD_ENV, lane.outbound),
                (HOST_DOORBELL_FD_ENV, lane.host_doorbell),
            ]);
        }
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
    /// Errors name the parameter: [`ProcError::MissingParameter`],
    /// [`ProcError::InvalidParameter`] (not a number, not open, not an
    /// eventfd, the same fd twice, a bad proc id, a per-lane list whose
    /// length is not the lane count, ...) or [`ProcError::LaneCount`]. A memfd that is not
    /// a valid ring is reported when it is mapped, also naming its variable.
    pub fn from_env() -> Result<Self, ProcError> {
        let env = BootEnv::parse(hostmux_boot::env::received)?;
        if BOOT_CLAIMED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(ProcError::AlreadyBooted);
        }
        let mut lanes = Vec::with_capacity(env.lanes.len());
        for lane in &env.lanes {
            lanes.push(LaneFds {
                inbound: adopt(INBOUND_FD_ENV, lane.inbound)?,
                outbound: adopt(OUTBOUND_FD_ENV, lane.outbound)?,
                host_doorbell: adopt_eventfd(HOST_DOORBELL_FD_ENV, lane.host_doorbell)?,
            });
        }
        Ok(BootParams {
            lanes,
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
            ProcError::LaneCount { name, .. } => (name, false),
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn parses_the_protocol_with_defaults() {
        let env = parse(&good()).unwrap();
        assert_eq!(env.id.to_string(), "tcp:127.0.0.1:7000/echo");
        assert_eq!(env.service_name.as_str(), "service");
        assert_eq!(
            env.lanes,
            [LaneEnv {
                inbound: 10,
                outbound: 11,
                host_doorbell: 12
            }]
        );
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

    fn three_lanes() -> HashMap<&'static str, &'static str> {
        let mut env = good();
        env.insert(LANES_ENV, "3");
        env.insert(INBOUND_FD_ENV, "10,13,16");
        env.insert(OUTBOUND_FD_ENV, "11,14,17");
        env.insert(HOST_DOORBELL_FD_ENV, "12,15,18");
        env
    }

    #[test]
    fn parses_one_list_entry_per_lane_in_lane_order() {
        let env = parse(&three_lanes()).unwrap();
        let lanes: Vec<_> = env
            .lanes
            .iter()
            .map(|l| (l.inbound, l.outbound, l.host_doorbell))
            .collect();
        assert_eq!(lanes, [(10, 11, 12), (13, 14, 15), (16, 17, 18)]);
        // The single-lane protocol is the one-lane case: no count needed.
        let mut one = good();
        one.insert(LANES_ENV, "1");
        assert_eq!(parse(&one).unwrap(), parse(&good()).unwrap());
    }

    #[test]
    fn a_bad_lane_count_or_a_missing_lane_fd_is_named() {
        let cases = [
            (LANES_ENV, "0"),
            (LANES_ENV, "257"),
            (LANES_ENV, "three"),
            (LANES_ENV, "2"),
            (INBOUND_FD_ENV, "10,13"),
            (OUTBOUND_FD_ENV, "11,14,17,20"),
            (HOST_DOORBELL_FD_ENV, "12,,18"),
            (HOST_DOORBELL_FD_ENV, "12,15,x"),
            // Lane 2's inbound is lane 0's doorbell: the later one is named.
            (INBOUND_FD_ENV, "10,13,12"),
        ];
        for (name, value) in cases {
            let mut env = three_lanes();
            env.insert(name, value);
            let expected = match (name, value) {
                // The lists hold three: a count of two fails at the first.
                (LANES_ENV, "2") => INBOUND_FD_ENV,
                _ => name,
            };
            assert_eq!(failing_parameter(&env), (expected, false), "{name}={value}");
        }
        for name in [INBOUND_FD_ENV, OUTBOUND_FD_ENV, HOST_DOORBELL_FD_ENV] {
            let mut env = three_lanes();
            env.remove(name);
            assert_eq!(failing_parameter(&env), (name, true));
        }
        // Lanes given without the count: read as one lane, so refused.
        let mut env = three_lanes();
        env.remove(LANES_ENV);
        assert_eq!(failing_parameter(&env), (INBOUND_FD_ENV, false));
        assert!(matches!(
            parse(&HashMap::from_iter(
                three_lanes().into_iter().chain([(LANES_ENV, "300")])
            )),
            Err(ProcError::LaneCount {
                name: LANES_ENV,
                count: 300,
                max: MAX_LANES
            })
        ));
    }
}
