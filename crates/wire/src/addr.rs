//! Host addresses and proc ids.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::{ProcName, WireError};

/// The longest address text accepted, in bytes (`tcp:` + a 253-byte DNS name
/// would not fit; hosts are expected to use short names or IP literals).
pub const MAX_ADDR_LEN: usize = 255;

/// Longest Unix socket path or abstract name: `sun_path` is 108 bytes, one of
/// which is the terminating NUL (or the leading NUL of an abstract name).
pub const MAX_UNIX_PATH_LEN: usize = 107;

/// A host's frontend address in its canonical text form.
///
/// The three forms are:
///
/// * `tcp:HOST:PORT`: `HOST` is a DNS name or IPv4 literal made of
///   `[A-Za-z0-9.-]`, or an IPv6 literal in brackets (`tcp:[::1]:7000`).
///   `PORT` is decimal without leading zeros; port `0` means "any port" (the
///   kernel picks one when binding).
/// * `unix:/absolute/path`: a filesystem Unix socket (path up to 107 bytes).
/// * `unix:@name`: a Linux abstract Unix socket (name up to 107 bytes).
///
/// No form contains a NUL byte. `Display` prints the text exactly as parsed
/// and `FromStr` accepts exactly what `Display` prints, so text round-trips.
/// The crate does no I/O: turning an `Addr` into a socket address is the
/// caller's business.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(Box<str>);

/// A parsed view of an [`Addr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrKind<'a> {
    /// `tcp:HOST:PORT`; `host` is without IPv6 brackets.
    Tcp {
        /// DNS name, IPv4 literal, or IPv6 literal without brackets.
        host: &'a str,
        /// Port; 0 means any.
        port: u16,
    },
    /// `unix:/path`.
    UnixPath(&'a str),
    /// `unix:@name`; the name is without the `@`.
    UnixAbstract(&'a str),
}

impl Addr {
    /// A TCP address. `host` is a DNS name, an IPv4 literal or an IPv6
    /// literal (with or without brackets).
    pub fn tcp(host: &str, port: u16) -> Result<Self, WireError> {
        let text = if host.contains(':') && !host.starts_with('[') {
            format!("tcp:[{host}]:{port}")
        } else {
            format!("tcp:{host}:{port}")
        };
        text.parse()
    }

    /// A filesystem Unix socket address; `path` must be absolute.
    pub fn unix_path(path: &str) -> Result<Self, WireError> {
        format!("unix:{path}").parse()
    }

    /// A Linux abstract Unix socket address (`name` without the `@`).
    pub fn unix_abstract(name: &str) -> Result<Self, WireError> {
        format!("unix:@{name}").parse()
    }

    /// The canonical text, as it appears in frame headers.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed parts of the address.
    pub fn kind(&self) -> AddrKind<'_> {
        parse_addr(&self.0).expect("an Addr holds validated text")
    }

    /// The TCP port, if this is a TCP address (0 means any).
    pub fn port(&self) -> Option<u16> {
        match self.kind() {
            AddrKind::Tcp { port, .. } => Some(port),
            _ => None,
        }
    }

    /// True for Unix sockets and for TCP addresses on `localhost`,
    /// `127.0.0.0/8` or `::1`: addresses only this machine can reach.
    pub fn is_loopback(&self) -> bool {
        match self.kind() {
            AddrKind::UnixPath(_) | AddrKind::UnixAbstract(_) => true,
            AddrKind::Tcp { host, .. } => {
                host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|ip| ip.is_loopback())
                    || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

/// Checks that `text` is a valid address in canonical form, without
/// allocating. Used on addresses read from frame headers.
pub fn validate_addr(text: &str) -> Result<(), WireError> {
    parse_addr(text).map(|_| ())
}

fn invalid(reason: &'static str) -> WireError {
    WireError::InvalidAddr { reason }
}

fn parse_addr(text: &str) -> Result<AddrKind<'_>, WireError> {
    if text.len() > MAX_ADDR_LEN {
        return Err(invalid("address is longer than 255 bytes"));
    }
    if text.contains('\0') {
        return Err(invalid("address contains a NUL byte"));
    }
    if let Some(rest) = text.strip_prefix("tcp:") {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or(invalid("tcp address has no ':PORT'"))?;
        let port = parse_port(port)?;
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(invalid("IPv6 host lacks a closing ']'"))?;
            inner
                .parse::<Ipv6Addr>()
                .map_err(|_| invalid("bracketed host is not an IPv6 address"))?;
            inner
        } else {
            if host.is_empty() {
                return Err(invalid("tcp address has an empty host"));
            }
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return Err(invalid("tcp host has a character outside [A-Za-z0-9.-]"));
            }
            host
        };
        Ok(AddrKind::Tcp { host, port })
    } else if let Some(rest) = text.strip_prefix("unix:") {
        if let Some(name) = rest.strip_prefix('@') {
            if name.is_empty() {
                return Err(invalid("abstract unix name is empty"));
            }
            if name.len() > MAX_UNIX_PATH_LEN {
                return Err(invalid("abstract unix name is longer than 107 bytes"));
            }
            Ok(AddrKind::UnixAbstract(name))
        } else if rest.starts_with('/') {
            if rest.len() > MAX_UNIX_PATH_LEN {
                return Err(invalid("unix socket path is longer than 107 bytes"));
            }
            Ok(AddrKind::UnixPath(rest))
        } else {
            Err(invalid("unix address is neither '/path' nor '@name'"))
        }
    } else {
        Err(invalid("address does not start with 'tcp:' or 'unix:'"))
    }
}

fn parse_port(text: &str) -> Result<u16, WireError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(invalid(
            "port is not a decimal number without leading zeros",
        ));
    }
    text.parse()
        .map_err(|_| invalid("port is larger than 65535"))
}

impl FromStr for Addr {
    type Err = WireError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        validate_addr(s)?;
        Ok(Self(s.into()))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A proc's identity: the frontend address of its host and its name there.
///
/// The text form is `ADDR/NAME`, e.g. `tcp:10.0.0.5:7000/echo` or
/// `unix:/run/hostmux.sock/echo`. It splits at the **last** `/`: proc names
/// never contain `/`, so the split is unambiguous even for Unix paths.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    addr: Addr,
    name: ProcName,
}

impl ProcId {
    /// The proc `name` on the host at `addr`.
    pub fn new(addr: Addr, name: ProcName) -> Self {
        Self { addr, name }
    }

    /// The host's frontend address.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// The proc's name on that host.
    pub fn name(&self) -> &ProcName {
        &self.name
    }
}

impl FromStr for ProcId {
    type Err = WireError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, name) = s.rsplit_once('/').ok_or(WireError::InvalidProcId {
            reason: "proc id has no '/' between address and name",
        })?;
        Ok(Self {
            addr: addr.parse()?,
            name: ProcName::new(name)?,
        })
    }
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.name)
    }
}

impl fmt::Debug for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_addresses_round_trip() {
        for text in [
            "tcp:127.0.0.1:7000",
            "tcp:localhost:0",
            "tcp:[::1]:65535",
            "tcp:host-a.example:80",
            "unix:/run/hostmux.sock",
            "unix:@hostmux/a",
        ] {
            let addr: Addr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.to_string().parse::<Addr>().unwrap(), addr);
        }
    }

    #[test]
    fn kind_exposes_the_parts() {
        let addr = Addr::tcp("::1", 0).unwrap();
        assert_eq!(addr.as_str(), "tcp:[::1]:0");
        assert_eq!(
            addr.kind(),
            AddrKind::Tcp {
                host: "::1",
                port: 0
            }
        );
        assert_eq!(addr.port(), Some(0));
        assert_eq!(
            Addr::unix_abstract("x").unwrap().kind(),
            AddrKind::UnixAbstract("x")
        );
        assert_eq!(
            Addr::unix_path("/tmp/s").unwrap().kind(),
            AddrKind::UnixPath("/tmp/s")
        );
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "tcp:",
            "tcp:host",
            "tcp::80",
            "tcp:host:080",
            "tcp:host:+80",
            "tcp:host:65536",
            "tcp:ho st:80",
            "tcp:[::1:80",
            "tcp:[nothex]:80",
            "unix:relative",
            "unix:@",
            "unix:/a\0b",
            "udp:1.2.3.4:5",
        ] {
            assert!(bad.parse::<Addr>().is_err(), "{bad:?} accepted");
        }
        let long = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH_LEN));
        assert!(long.parse::<Addr>().is_err());
    }

    #[test]
    fn loopback_detection() {
        assert!("tcp:127.0.0.2:1".parse::<Addr>().unwrap().is_loopback());
        assert!("tcp:[::1]:1".parse::<Addr>().unwrap().is_loopback());
        assert!("tcp:LOCALHOST:1".parse::<Addr>().unwrap().is_loopback());
        assert!("unix:@x".parse::<Addr>().unwrap().is_loopback());
        assert!(!"tcp:0.0.0.0:1".parse::<Addr>().unwrap().is_loopback());
        assert!(!"tcp:example.com:1".parse::<Addr>().unwrap().is_loopback());
    }

    #[test]
    fn proc_id_text_splits_at_the_last_slash() {
        for text in [
            "tcp:10.0.0.5:7000/echo",
            "unix:/run/hostmux.sock/echo-1",
            "unix:@ns/a/sink_2",
        ] {
            let id: ProcId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
        }
        let id: ProcId = "unix:/run/h.sock/echo".parse().unwrap();
        assert_eq!(id.addr().as_str(), "unix:/run/h.sock");
        assert_eq!(id.name().as_str(), "echo");
        assert!("tcp:1.2.3.4:5".parse::<ProcId>().is_err());
        assert!("tcp:1.2.3.4:5/".parse::<ProcId>().is_err());
        assert!("nope/echo".parse::<ProcId>().is_err());
    }
}
