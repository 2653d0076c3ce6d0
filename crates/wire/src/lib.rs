//! hostmux-wire: not implemented yet (see the open issue for this crate).
#![forbid(unsafe_code)]
