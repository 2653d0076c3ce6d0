//! hostmux-wire: the frame codec, routing header, ids and validation.
//!
//! (Work in progress: only [`ProcName`] exists so far.)
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod name;

pub use error::WireError;
pub use name::{validate_name, ProcName, DEFAULT_MAX_NAME_LEN};
