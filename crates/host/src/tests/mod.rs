//! Unit tests of the sans-IO core.

mod agent_stop;
mod alloc_free;
mod drain_repeats;
mod fuzzing;
mod per_frame;
mod repeats;
mod simulation;
mod toctou;
mod zero_copy;
