//! Who this host is: the addresses it names itself by (its *advertised*
//! addresses, the first of which is the *primary*) and every address that
//! means it (its *aliases*).
//!
//! A frame's destination address is compared with this host's identity to
//! decide whether the frame is for a proc or client here or for another
//! host. Getting that wrong is a loop: a host bound to `tcp:0.0.0.0:7000`
//! that took only that text for itself would forward a frame addressed
//! `tcp:10.0.0.2:7000` (itself) over a link to itself. So an [`Identity`]
//! recognises, in any equivalent spelling (`[::1]` and `[0:0::1]`, an IPv4
//! address and its IPv4-mapped IPv6 form, DNS names in any case):
//!
//! * every advertised address (`serve --advertise`,
//!   [`HostConfig::advertise`](crate::HostConfig::advertise));
//! * the bound frontend address;
//! * for an unspecified bind (`0.0.0.0` or `[::]`), both unspecified
//!   addresses, every address of this machine's interfaces and every
//!   loopback address (all of `127.0.0.0/8` reaches the host), with the
//!   bound port;
//! * `localhost` with the port of any loopback address among these;
//! * a configured peer's DNS name that resolves, when the host starts, to
//!   one of these (`Host::serve` resolves peer names once: a host given
//!   the peer list the others share finds itself in it by name).
//!
//! What is advertised, when nothing is configured: the bound address; for
//! an unspecified bind, every interface address with the bound port (of
//! the bound family; `[::]` takes both), non-loopback IPv4 first, then
//! non-loopback IPv6, then loopback, link-local IPv6 left out (it needs a
//! scope that an address cannot carry). The primary is the first of them.
//!
//! The primary is what this host writes as its own address in the frames
//! it forwards (so the far host answers to it, never to `0.0.0.0`), in the
//! proc ids it hands out, and, hashed, in the hello name its links present
//! ([`Identity::hello_name`], mapped back by [`peer_for_hello_name`]).
//!
//! This module does no I/O: the interface addresses come in as a list
//! (`crate::sys::interface_addrs` reads them when a host starts), so it is
//! tested with made-up machines. [`Identity::is_alias`] allocates nothing:
//! the data plane calls it for every frame whose destination is not the
//! empty string or the primary's exact text.
//!
//! Interfaces are read once, when the host starts: an address added to the
//! machine later is not recognised (advertise it, or restart the host). A
//! DNS name is compared as spelled (in any case), never resolved on the
//! data path: a name that means this host is recognised only if it is
//! advertised, `localhost`, or a peer name that resolved to this host.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hostmux_wire::{validate_addr, Addr, AddrKind};

use crate::HostError;

/// This host's advertised addresses and aliases. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Never empty; the first is the primary.
    advertised: Vec<Addr>,
    /// Every address that means this host, parsed once.
    aliases: Vec<Alias>,
    /// For an unspecified bind, its port: every loopback address
    /// (`127.0.0.0/8`, `::1`) with it reaches this host.
    loopback_port: Option<u16>,
}

/// One address that means this host, in a form compared without parsing
/// it again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Alias {
    /// A TCP address with an IP literal (IPv4-mapped IPv6 addresses are
    /// kept as IPv4: `IpAddr::to_canonical`).
    Ip { ip: IpAddr, port: u16 },
    /// A TCP address with a DNS name (compared ignoring ASCII case).
    Name { host: Box<str>, port: u16 },
    /// A Unix socket address (compared as text).
    Unix(Box<str>),
}

impl Alias {
    /// Whether the two are one address (DNS names in any case).
    fn is_same(&self, other: &Alias) -> bool {
        match (self, other) {
            (Alias::Name { host: a, port: p }, Alias::Name { host: b, port: q }) => {
                p == q && a.eq_ignore_ascii_case(b)
            }
            _ => self == other,
        }
    }

    fn of(addr: &Addr) -> Alias {
        match addr.kind() {
            AddrKind::Tcp { host, port } => match host.parse::<IpAddr>() {
                Ok(ip) => Alias::Ip {
                    ip: ip.to_canonical(),
                    port,
                },
                Err(_) => Alias::Name {
                    host: host.into(),
                    port,
                },
            },
            AddrKind::UnixPath(_) | AddrKind::UnixAbstract(_) => Alias::Unix(addr.as_str().into()),
        }
    }
}

/// Whether `addr` is a TCP address on `0.0.0.0` or `[::]` (any spelling):
/// a bind to every interface.
pub(crate) fn is_unspecified(addr: &Addr) -> bool {
    matches!(addr.kind(), AddrKind::Tcp { host, .. }
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_unspecified()))
}

impl Identity {
    /// The identity of a host bound to `bound` with `advertise` configured
    /// ([`HostConfig::advertise`](crate::HostConfig::advertise)), on a
    /// machine whose interfaces carry `interfaces` (read only for an
    /// unspecified bind; pass an empty list otherwise).
    ///
    /// Fails if an advertised address is not a TCP address with a port and
    /// a specific host, or if the frontend is not TCP.
    pub(crate) fn resolve(
        bound: &Addr,
        advertise: &[Addr],
        interfaces: &[IpAddr],
    ) -> Result<Identity, HostError> {
        let bound_port = bound.port();
        for addr in advertise {
            let refuse = |reason| HostError::InvalidAdvertise {
                addr: addr.to_string(),
                reason,
            };
            match addr.kind() {
                _ if bound_port.is_none() => {
                    return Err(refuse(
                        "the frontend is a Unix socket; only a TCP frontend can be advertised",
                    ))
                }
                AddrKind::Tcp { port: 0, .. } => {
                    return Err(refuse("port 0 names no listening host; give the port"))
                }
                AddrKind::Tcp { .. } if is_unspecified(addr) => {
                    return Err(refuse(
                        "an unspecified address (0.0.0.0, [::]) cannot be dialled by another host",
                    ))
                }
                AddrKind::Tcp { .. } => {}
                AddrKind::UnixPath(_) | AddrKind::UnixAbstract(_) => {
                    return Err(refuse("not a TCP address; hosts reach each other over TCP"))
                }
            }
        }
        let unspecified = is_unspecified(bound);
        let port = bound_port.unwrap_or(0);
        let machine = || {
            let mut ips: Vec<IpAddr> = interfaces.iter().map(|ip| ip.to_canonical()).collect();
            ips.retain(|ip| !ip.is_unspecified() && !ip.is_multicast());
            let mut seen = Vec::new();
            ips.retain(|ip| {
                let new = !seen.contains(ip);
                seen.push(*ip);
                new
            });
            ips
        };
        let advertised = if !advertise.is_empty() {
            let mut advertised: Vec<Addr> = Vec::with_capacity(advertise.len());
            for addr in advertise {
                if !advertised
                    .iter()
                    .any(|seen| Alias::of(seen).is_same(&Alias::of(addr)))
                {
                    advertised.push(addr.clone());
                }
            }
            advertised
        } else if unspecified {
            let v6_too = matches!(bound.kind(), AddrKind::Tcp { host, .. } if host.contains(':'));
            let mut ips: Vec<IpAddr> = machine()
                .into_iter()
                .filter(|ip| (ip.is_ipv4() || v6_too) && !is_link_local_v6(ip))
                .collect();
            // Stable: the interfaces' order within each rank.
            ips.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
            if ips.is_empty() {
                ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            ips.iter()
                .map(|ip| tcp_addr(*ip, port))
                .collect::<Result<_, _>>()?
        } else {
            vec![bound.clone()]
        };
        let mut aliases: Vec<Alias> = advertised.iter().map(Alias::of).collect();
        add_alias(&mut aliases, Alias::of(bound));
        if unspecified {
            for ip in [
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ]
            .into_iter()
            .chain(machine())
            {
                add_alias(&mut aliases, Alias::Ip { ip, port });
            }
        }
        // `localhost` is this machine: where a loopback address is this
        // host, so is the name.
        let loopback_ports: Vec<u16> = aliases
            .iter()
            .filter_map(|alias| match alias {
                Alias::Ip { ip, port } if ip.is_loopback() => Some(*port),
                _ => None,
            })
            .collect();
        for port in loopback_ports {
            let localhost = Alias::Name {
                host: "localhost".into(),
                port,
            };
            add_alias(&mut aliases, localhost);
        }
        Ok(Identity {
            advertised,
            aliases,
            loopback_port: unspecified.then_some(port),
        })
    }

    /// Whether `socket` (a peer's DNS name, resolved) is one of this
    /// host's IP aliases: dialling it would reach this host.
    pub(crate) fn is_alias_socket(&self, socket: SocketAddr) -> bool {
        self.is_alias_ip(socket.ip(), socket.port())
    }

    fn is_alias_ip(&self, ip: IpAddr, port: u16) -> bool {
        let ip = ip.to_canonical();
        (self.loopback_port == Some(port) && ip.is_loopback())
            || self.aliases.contains(&Alias::Ip { ip, port })
    }

    /// Takes `addr` (a configured peer's name that resolves to this host:
    /// [`Identity::is_alias_socket`]) as one more alias.
    pub(crate) fn adopt(&mut self, addr: &Addr) {
        add_alias(&mut self.aliases, Alias::of(addr));
    }

    /// An identity that is `addr` alone (advertised, and its only alias),
    /// for data planes without a bound frontend (tests, fuzzing).
    pub(crate) fn single(addr: &str) -> Identity {
        let addr: Addr = addr.parse().expect("a valid address");
        Identity::resolve(&addr, &[], &[]).expect("a specific address")
    }

    /// The address this host names itself by.
    pub(crate) fn primary(&self) -> &Addr {
        &self.advertised[0]
    }

    /// Every advertised address, the primary first.
    pub(crate) fn advertised(&self) -> &[Addr] {
        &self.advertised
    }

    /// Whether the address text `text` (a frame's destination or sender
    /// address) means this host, in any equivalent spelling. Invalid text
    /// means no host. Allocates nothing; costs one parse of `text` and one
    /// compare per alias.
    pub(crate) fn is_alias(&self, text: &str) -> bool {
        if validate_addr(text).is_err() {
            return false;
        }
        let Some((host, port)) = text
            .strip_prefix("tcp:")
            .and_then(|rest| rest.rsplit_once(':'))
        else {
            return self
                .aliases
                .iter()
                .any(|alias| matches!(alias, Alias::Unix(unix) if **unix == *text));
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let Ok(port) = port.parse::<u16>() else {
            return false;
        };
        match host.parse::<IpAddr>() {
            Ok(ip) => self.is_alias_ip(ip, port),
            Err(_) => self.aliases.iter().any(|alias| {
                matches!(alias, Alias::Name { host: name, port: p }
                    if *p == port && name.eq_ignore_ascii_case(host))
            }),
        }
    }

    /// The configured peers (`peers`) that are not this host, and those
    /// that are (a host given the same peer list as the others finds
    /// itself in it: it is never dialled).
    pub(crate) fn split_peers(&self, peers: Vec<Addr>) -> (Vec<Addr>, Vec<Addr>) {
        peers
            .into_iter()
            .partition(|peer| !self.is_alias(peer.as_str()))
    }

    /// The name this host presents in the hello of every link it dials:
    /// `peer-` and 16 hex digits, a hash of the primary address's canonical
    /// spelling. See [`peer_for_hello_name`].
    pub(crate) fn hello_name(&self) -> String {
        hello_name_of(self.primary())
    }

    /// The advertised addresses as one line (`a, b, c`), for logs.
    pub(crate) fn advertised_list(&self) -> String {
        let mut line = String::new();
        for (i, addr) in self.advertised.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(line, "{sep}{addr}");
        }
        line
    }
}

/// Adds `alias` to `aliases` unless it is there in some spelling.
fn add_alias(aliases: &mut Vec<Alias>, alias: Alias) {
    if !aliases.iter().any(|known| known.is_same(&alias)) {
        aliases.push(alias);
    }
}

/// Whether `ip` is an IPv6 link-local address (`fe80::/10`).
fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

fn tcp_addr(ip: IpAddr, port: u16) -> Result<Addr, HostError> {
    Ok(Addr::tcp(&ip.to_string(), port)?)
}

/// The hello name a host whose primary address is `primary` presents on
/// its links: `peer-` and the 64-bit FNV-1a hash, in hex, of the address's
/// canonical spelling (IP literal as `IpAddr` prints its canonical form,
/// DNS name in lower case). The hash is spelled out here, not taken from
/// `std`, so hosts built by different compilers agree on it.
pub(crate) fn hello_name_of(primary: &Addr) -> String {
    let canonical = match Alias::of(primary) {
        Alias::Ip { ip, port } => format!("tcp:{}", SocketAddr::new(ip, port)),
        Alias::Name { host, port } => format!("tcp:{}:{port}", host.to_ascii_lowercase()),
        Alias::Unix(text) => text.into(),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("peer-{hash:016x}")
}

/// The configured peer (one of `peers`) whose link presents the hello name
/// `name`: the one whose address, in an equivalent spelling, is the far
/// host's primary address ([`Identity::hello_name`]). `None`: the far host
/// names itself by an address this host does not list as a peer (give the
/// far host `--advertise` with the address this host knows it by). The
/// links a host with several I/O threads dials from thread k ≥ 1 add `-k`
/// to the name (see `io::dial::link_hello_name`). For the accepting side of a
/// link; cold (one hash per peer).
pub(crate) fn peer_for_hello_name<'p>(peers: &'p [Addr], name: &str) -> Option<&'p Addr> {
    peers.iter().find(|peer| {
        let hello = hello_name_of(peer);
        name == hello
            || name
                .strip_prefix(hello.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hostmux_wire::{
        decode_frame, encode_frame_to_vec, FrameDecoder, FrameHeader, Limits, Sender,
    };

    use super::*;
    use crate::config::HostConfig;
    use crate::dataplane::rig::Rig;
    use crate::dataplane::{same_endpoint, ConnKey, Delivery, Event, Outbox};

    fn addr(text: &str) -> Addr {
        text.parse().expect("a valid address")
    }

    fn ips(texts: &[&str]) -> Vec<IpAddr> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn advertised(identity: &Identity) -> Vec<&str> {
        identity.advertised().iter().map(Addr::as_str).collect()
    }

    /// A machine with loopback, two IPv4 interfaces, a global and a
    /// link-local IPv6 address, listed as `getifaddrs` might (loopback
    /// first, a repeat).
    const MACHINE: &[&str] = &[
        "127.0.0.1",
        "::1",
        "10.200.0.2",
        "fe80::1",
        "192.168.1.5",
        "2001:db8::5",
        "10.200.0.2",
    ];

    #[test]
    fn a_specific_bind_is_its_own_primary_and_recognised_in_any_spelling() {
        let identity = Identity::resolve(&addr("tcp:127.0.0.1:7000"), &[], &[]).unwrap();
        assert_eq!(advertised(&identity), ["tcp:127.0.0.1:7000"]);
        assert_eq!(identity.primary().as_str(), "tcp:127.0.0.1:7000");
        for same in [
            "tcp:127.0.0.1:7000",
            "tcp:[::ffff:127.0.0.1]:7000",
            "tcp:LocalHost:7000",
        ] {
            assert!(identity.is_alias(same), "{same}");
        }
        for other in [
            "",
            "tcp:127.0.0.1:7001",
            "tcp:127.0.0.2:7000",
            // Not an unspecified bind: 0.0.0.0 is not this host.
            "tcp:0.0.0.0:7000",
            "tcp:[::1]:7000",
            "tcp:localhost:7001",
            "tcp:127.1:7000",
            "tcp:127.0.0.1:07000",
            "unix:/tmp/x",
            "not an address",
        ] {
            assert!(!identity.is_alias(other), "{other}");
        }
    }

    #[test]
    fn an_unspecified_v4_bind_advertises_every_v4_interface_non_loopback_first() {
        let identity = Identity::resolve(&addr("tcp:0.0.0.0:7000"), &[], &ips(MACHINE)).unwrap();
        assert_eq!(
            advertised(&identity),
            [
                "tcp:10.200.0.2:7000",
                "tcp:192.168.1.5:7000",
                "tcp:127.0.0.1:7000"
            ]
        );
        assert_eq!(identity.primary().as_str(), "tcp:10.200.0.2:7000");
        // Every interface address (any family), both unspecified
        // addresses, in any spelling, with the bound port.
        for same in [
            "tcp:10.200.0.2:7000",
            "tcp:[::ffff:10.200.0.2]:7000",
            "tcp:192.168.1.5:7000",
            "tcp:127.0.0.1:7000",
            "tcp:0.0.0.0:7000",
            "tcp:[::]:7000",
            "tcp:[0:0::0]:7000",
            "tcp:[::1]:7000",
            "tcp:[2001:db8:0::5]:7000",
            "tcp:[fe80::1]:7000",
            "tcp:127.0.0.2:7000",
            "tcp:[::ffff:127.1.2.3]:7000",
        ] {
            assert!(identity.is_alias(same), "{same}");
        }
        for other in [
            "tcp:10.200.0.2:7001",
            "tcp:0.0.0.0:7001",
            "tcp:10.200.0.3:7000",
            "tcp:localhost:7001",
            "tcp:127.0.0.2:7001",
        ] {
            assert!(!identity.is_alias(other), "{other}");
        }
    }

    #[test]
    fn an_unspecified_v6_bind_advertises_both_families_without_link_local() {
        let identity = Identity::resolve(&addr("tcp:[::]:7000"), &[], &ips(MACHINE)).unwrap();
        assert_eq!(
            advertised(&identity),
            [
                "tcp:10.200.0.2:7000",
                "tcp:192.168.1.5:7000",
                "tcp:[2001:db8::5]:7000",
                "tcp:127.0.0.1:7000",
                "tcp:[::1]:7000"
            ]
        );
        assert!(identity.is_alias("tcp:0.0.0.0:7000"));
        assert!(identity.is_alias("tcp:[::]:7000"));
    }

    #[test]
    fn an_unspecified_bind_on_a_bare_machine_advertises_loopback() {
        let identity = Identity::resolve(&addr("tcp:0.0.0.0:7000"), &[], &[]).unwrap();
        assert_eq!(advertised(&identity), ["tcp:127.0.0.1:7000"]);
        assert!(identity.is_alias("tcp:0.0.0.0:7000"));
        // Loopback only: the primary is loopback.
        let identity =
            Identity::resolve(&addr("tcp:0.0.0.0:7000"), &[], &ips(&["::1", "127.0.0.1"])).unwrap();
        assert_eq!(advertised(&identity), ["tcp:127.0.0.1:7000"]);
    }

    #[test]
    fn advertised_addresses_come_first_and_the_machine_is_still_recognised() {
        let advertise = [
            addr("tcp:node1.example:7000"),
            addr("tcp:10.200.0.2:7000"),
            // Repeats in other spellings are dropped.
            addr("tcp:NODE1.example:7000"),
            addr("tcp:[::ffff:10.200.0.2]:7000"),
            // Another port: a NAT in front of the host.
            addr("tcp:203.0.113.9:17000"),
        ];
        let identity =
            Identity::resolve(&addr("tcp:0.0.0.0:7000"), &advertise, &ips(MACHINE)).unwrap();
        assert_eq!(
            advertised(&identity),
            [
                "tcp:node1.example:7000",
                "tcp:10.200.0.2:7000",
                "tcp:203.0.113.9:17000"
            ]
        );
        for same in [
            "tcp:Node1.Example:7000",
            "tcp:203.0.113.9:17000",
            "tcp:127.0.0.1:7000",
            "tcp:192.168.1.5:7000",
            "tcp:0.0.0.0:7000",
        ] {
            assert!(identity.is_alias(same), "{same}");
        }
        for other in [
            "tcp:node1.example:7001",
            "tcp:node1.example.:7000",
            "tcp:node2.example:7000",
            "tcp:203.0.113.9:7000",
        ] {
            assert!(!identity.is_alias(other), "{other}");
        }
        // A specific bind with an advertised name: both mean the host.
        let identity = Identity::resolve(
            &addr("tcp:10.200.0.2:7000"),
            &[addr("tcp:node1.example:7000")],
            &[],
        )
        .unwrap();
        assert_eq!(advertised(&identity), ["tcp:node1.example:7000"]);
        assert!(identity.is_alias("tcp:10.200.0.2:7000"));
        assert!(!identity.is_alias("tcp:127.0.0.1:7000"));
    }

    #[test]
    fn a_peer_name_that_resolves_here_becomes_an_alias() {
        let mut identity =
            Identity::resolve(&addr("tcp:0.0.0.0:7000"), &[], &ips(MACHINE)).unwrap();
        let socket = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(identity.is_alias_socket(socket("10.200.0.2:7000")));
        assert!(identity.is_alias_socket(socket("[::ffff:10.200.0.2]:7000")));
        assert!(identity.is_alias_socket(socket("[::1]:7000")));
        assert!(!identity.is_alias_socket(socket("10.200.0.2:7001")));
        assert!(!identity.is_alias_socket(socket("10.200.0.3:7000")));
        assert!(!identity.is_alias("tcp:node1.example:7000"));
        identity.adopt(&addr("tcp:node1.example:7000"));
        assert!(identity.is_alias("tcp:NODE1.example:7000"));
        assert!(!identity.is_alias("tcp:node1.example:7001"));
        // Recognised, not advertised.
        assert_eq!(identity.primary().as_str(), "tcp:10.200.0.2:7000");
        assert_eq!(identity.advertised().len(), 3);
    }

    #[test]
    fn addresses_that_cannot_name_the_host_are_refused_by_name() {
        let tcp = addr("tcp:0.0.0.0:7000");
        for (bad, says) in [
            ("tcp:10.0.0.2:0", "port 0"),
            ("tcp:0.0.0.0:7000", "unspecified"),
            ("tcp:[::]:7000", "unspecified"),
            ("tcp:[::ffff:0.0.0.0]:7000", "unspecified"),
            ("unix:/run/host.sock", "not a TCP address"),
        ] {
            let err = Identity::resolve(&tcp, &[addr(bad)], &[]).unwrap_err();
            assert!(
                matches!(&err, HostError::InvalidAdvertise { addr, reason }
                    if addr == bad && reason.contains(says)),
                "{bad}: {err}"
            );
        }
        let err =
            Identity::resolve(&addr("unix:@host"), &[addr("tcp:10.0.0.2:7000")], &[]).unwrap_err();
        assert!(err.to_string().contains("Unix socket"), "{err}");
    }

    #[test]
    fn a_unix_frontend_is_recognised_by_its_text() {
        let identity = Identity::single("unix:/run/hostmux.sock");
        assert_eq!(advertised(&identity), ["unix:/run/hostmux.sock"]);
        assert!(identity.is_alias("unix:/run/hostmux.sock"));
        assert!(!identity.is_alias("unix:/run/hostmux.sock2"));
        assert!(!identity.is_alias("unix:@/run/hostmux.sock"));
    }

    /// The alias check and the peer match (`dataplane::remote`) agree on
    /// which spellings are the same address, so nothing is a peer and this
    /// host at once by accident of spelling.
    #[test]
    fn the_alias_check_agrees_with_the_peer_match_on_spellings() {
        let addresses = [
            "tcp:127.0.0.1:7000",
            "tcp:[::1]:7000",
            "tcp:[::ffff:10.0.0.2]:7000",
            "tcp:Peer-A.example:7000",
        ];
        let spellings = [
            "tcp:127.0.0.1:7000",
            "tcp:[::ffff:127.0.0.1]:7000",
            "tcp:127.0.0.1:7001",
            "tcp:127.1:7000",
            "tcp:[::1]:7000",
            "tcp:[0:0:0:0:0:0:0:1]:7000",
            "tcp:[::0001]:7000",
            "tcp:10.0.0.2:7000",
            "tcp:[::ffff:a00:2]:7000",
            "tcp:peer-a.EXAMPLE:7000",
            "tcp:peer-a.example.:7000",
            "unix:/tmp/peer",
            "garbage",
            "",
        ];
        for address in addresses {
            let identity = Identity::single(address);
            let parsed = addr(address);
            for text in spellings {
                assert_eq!(
                    identity.is_alias(text),
                    same_endpoint(&parsed, text),
                    "{address} vs {text}"
                );
            }
        }
    }

    #[test]
    fn peers_that_are_this_host_are_split_off() {
        let identity = Identity::resolve(&addr("tcp:0.0.0.0:7000"), &[], &ips(MACHINE)).unwrap();
        let peers = vec![
            addr("tcp:10.200.0.2:7000"),
            addr("tcp:10.200.0.3:7000"),
            addr("tcp:[::ffff:192.168.1.5]:7000"),
            addr("tcp:10.200.0.2:7001"),
            addr("tcp:0.0.0.0:7000"),
        ];
        let (others, this_host) = identity.split_peers(peers);
        let names = |list: &[Addr]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&others),
            ["tcp:10.200.0.3:7000", "tcp:10.200.0.2:7001"]
        );
        assert_eq!(
            names(&this_host),
            [
                "tcp:10.200.0.2:7000",
                "tcp:[::ffff:192.168.1.5]:7000",
                "tcp:0.0.0.0:7000"
            ]
        );
    }

    /// Client `conn` (called `name`) sends a data frame `id` to `echo` at
    /// `dest`.
    fn client_sends(rig: &mut Rig, conn: ConnKey, dest: &str, id: u64) {
        let header = FrameHeader {
            dest_addr: dest,
            sender: Sender::Client { name: "c" },
            ..FrameHeader::data("echo", id)
        };
        let mut bytes = Vec::new();
        encode_frame_to_vec(&mut bytes, &header, b"hi", &Limits::default()).unwrap();
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.feed(&bytes);
        let frame = decoder.next_frame().unwrap().unwrap();
        let delivery = rig
            .dp
            .handle_conn_frame(conn, &frame, true, None, Instant::now());
        assert_eq!(delivery, Delivery::Done);
        rig.dp.flush();
    }

    /// The data plane of a host bound to `0.0.0.0:7000` on [`MACHINE`]
    /// delivers frames for any alias here (even one that is also listed
    /// as a peer: the local check comes first), never opening a link; a
    /// frame for a peer goes over a link naming the primary address as
    /// its sender, never `0.0.0.0`.
    #[test]
    fn the_data_plane_keeps_frames_for_aliases_and_names_itself_by_the_primary() {
        let identity = Identity::resolve(&addr("tcp:0.0.0.0:7000"), &[], &ips(MACHINE)).unwrap();
        let cfg = HostConfig {
            peers: vec![addr("tcp:127.0.0.1:7000"), addr("tcp:10.200.0.9:7000")],
            ..HostConfig::default()
        };
        let mut rig = Rig::with_identity(cfg, identity);
        let mut echo = rig.add_proc("echo", 1 << 16, 1 << 16);
        let conn = rig.add_conn("c");
        let aliases = [
            "",
            "tcp:10.200.0.2:7000",
            "tcp:127.0.0.1:7000",
            "tcp:[::ffff:192.168.1.5]:7000",
            "tcp:0.0.0.0:7000",
            "tcp:[::]:7000",
        ];
        for (id, alias) in aliases.iter().enumerate() {
            client_sends(&mut rig, conn, alias, id as u64);
        }
        let mut delivered = Vec::new();
        while let Some(record) = echo.inbound.peek().unwrap() {
            delivered.push(
                decode_frame(record, &Limits::default())
                    .unwrap()
                    .message_id(),
            );
            echo.inbound.release().unwrap();
        }
        assert_eq!(delivered, [0, 1, 2, 3, 4, 5]);
        let mut dials = Vec::new();
        while let Some(event) = rig.dp.poll_event() {
            if let Event::Dial { link, peer } = event {
                dials.push((link, peer.as_str().to_owned()));
            }
        }
        assert!(dials.is_empty(), "{dials:?}");

        client_sends(&mut rig, conn, "tcp:10.200.0.9:7000", 9);
        let mut link = None;
        while let Some(event) = rig.dp.poll_event() {
            if let Event::Dial { link: key, peer } = event {
                assert_eq!(peer.as_str(), "tcp:10.200.0.9:7000");
                link = Some(key);
            }
        }
        let link = link.expect("a dial to the peer");
        rig.dp.remote_connected(link);
        let mut bytes = Vec::new();
        assert_eq!(
            rig.dp.take_outbox(link, &mut bytes, Instant::now()),
            Outbox::Bytes
        );
        let forwarded = decode_frame(&bytes, &Limits::default()).unwrap();
        assert_eq!(forwarded.message_id(), 9);
        assert_eq!(
            forwarded.sender(),
            Sender::Proc {
                addr: "tcp:10.200.0.2:7000",
                name: "c"
            }
        );
    }

    #[test]
    fn a_hello_name_maps_back_to_the_peer_in_any_spelling() {
        // Pinned: hosts built apart must agree (FNV-1a of the canonical
        // text, computed independently).
        assert_eq!(
            hello_name_of(&addr("tcp:10.0.0.2:7000")),
            "peer-293f748ba92491b4"
        );
        let peers = [
            addr("tcp:10.0.0.2:7000"),
            addr("tcp:[::1]:7001"),
            addr("tcp:node3.example:7000"),
        ];
        for (far_primary, expected) in [
            ("tcp:[::ffff:10.0.0.2]:7000", Some(0)),
            ("tcp:10.0.0.2:7000", Some(0)),
            ("tcp:[0::1]:7001", Some(1)),
            ("tcp:NODE3.example:7000", Some(2)),
            ("tcp:10.0.0.2:7001", None),
            ("tcp:10.0.0.9:7000", None),
        ] {
            let far = Identity::single(far_primary);
            let name = far.hello_name();
            assert!(hostmux_wire::ProcName::new(&name).is_ok(), "{name}");
            assert_eq!(
                peer_for_hello_name(&peers, &name),
                expected.map(|i| &peers[i]),
                "{far_primary}"
            );
        }
    }
}
