//! The library half of the `hostmux` package: what the `hostmux` CLI and
//! the `hostmux-bench` binary (`crates/bench`) share, so that neither keeps
//! a copy: output formatting ([`format`](mod@format)), the procs a binary runs itself
//! in a hidden mode ([`procs`]), and duration parsing for flags
//! ([`parse_duration`]).
//!
//! ```
//! use std::time::Duration;
//! assert_eq!(hostmux::parse_duration("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(hostmux::format::bytes(2048), "2.0 KiB");
//! ```
#![forbid(unsafe_code)]

use std::time::Duration;

pub mod format;
pub mod procs;

/// Parses `250ms`, `5s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}; use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}
