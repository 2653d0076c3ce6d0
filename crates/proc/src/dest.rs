//! [`Dest`]: where a frame goes.

use hostmux_wire::{ProcId, ProcName};

/// Where a frame goes: a proc name, or a client connection's name
/// (`to_client`), and the host address (empty: the host this proc runs
/// on). Proc names and client names are separate namespaces (see
/// `docs/wire.md`, "Flags"): a name alone (`From<&str>` and the other
/// conversions) means a proc; [`Dest::client`] addresses a client.
/// [`Message::reply`](crate::Message::reply) finds the right one itself.
///
/// ```
/// use hostmux_proc::Dest;
///
/// let proc: Dest<'_> = "echo".into();
/// assert!(!proc.to_client);
/// let client = Dest::client("cli");
/// assert_eq!((client.name, client.addr, client.to_client), ("cli", "", true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest<'a> {
    /// The proc or client name.
    pub name: &'a str,
    /// The destination host's address; empty for this host.
    pub addr: &'a str,
    /// `name` is a client connection's (the frame carries
    /// [`Flags::TO_CLIENT`](hostmux_wire::Flags::TO_CLIENT)), not a proc's.
    pub to_client: bool,
}

impl<'a> Dest<'a> {
    /// The proc `name` on this host.
    pub fn proc(name: &'a str) -> Self {
        Dest {
            name,
            addr: "",
            to_client: false,
        }
    }

    /// The client connection `name` (its hello name) of this host.
    pub fn client(name: &'a str) -> Self {
        Dest {
            name,
            addr: "",
            to_client: true,
        }
    }

    /// The same destination on the host at `addr`.
    pub fn at(self, addr: &'a str) -> Self {
        Dest { addr, ..self }
    }
}

impl<'a> From<&'a str> for Dest<'a> {
    fn from(name: &'a str) -> Self {
        Dest::proc(name)
    }
}

impl<'a> From<&'a String> for Dest<'a> {
    fn from(name: &'a String) -> Self {
        Dest::proc(name)
    }
}

impl<'a> From<&'a ProcName> for Dest<'a> {
    fn from(name: &'a ProcName) -> Self {
        Dest::proc(name.as_str())
    }
}

impl<'a> From<&'a ProcId> for Dest<'a> {
    fn from(id: &'a ProcId) -> Self {
        Dest::proc(id.name().as_str()).at(id.addr().as_str())
    }
}
