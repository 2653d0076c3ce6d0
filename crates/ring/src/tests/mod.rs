//! Unit tests: protocol over the heap and real memfd rings, corruption, fuzz entry, loom.

#[cfg(not(loom))]
mod corruption;
#[cfg(not(loom))]
mod heap;
#[cfg(loom)]
mod loom_protocol;
