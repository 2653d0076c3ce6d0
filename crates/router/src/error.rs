//! The crate's one error type.

use hostmux_wire::ProcName;

/// Why a routing-table update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// A route for this proc name is already bound; names are unique on a host.
    #[error("route for proc `{name}` already exists")]
    Exists {
        /// The name that is already bound.
        name: ProcName,
    },
}
