//! What a control request looks like in the log: bounded and without
//! secrets.
//!
//! A spawn request carries the proc's environment (`spawn --env
//! DB_PASSWORD=...`) and its whole argument list, which a caller may make
//! as large as a frame. The log shows environment *keys* only, never a
//! value, and at most [`MAX_LOGGED_ARGS`] arguments of at most
//! [`MAX_LOGGED_ARG_BYTES`] bytes each, with a `(+N more)` marker for what
//! it leaves out. Strings are printed escaped (`{:?}`), so a newline in an
//! argument cannot forge a log line.

use std::fmt;

use hostmux_wire::{ControlRequest, SpawnRequest};

/// Arguments of a spawn request shown in the log; the rest are counted.
pub(crate) const MAX_LOGGED_ARGS: usize = 8;
/// Bytes of one argument (or of the program, or of one environment key)
/// shown in the log; the rest are counted.
pub(crate) const MAX_LOGGED_ARG_BYTES: usize = 256;
/// Environment keys of a spawn request shown in the log; the rest are
/// counted.
pub(crate) const MAX_LOGGED_ENV_KEYS: usize = 32;

/// Displays a control request for the log (see the module docs).
pub(crate) struct LoggedRequest<'a>(pub(crate) &'a ControlRequest);

impl fmt::Display for LoggedRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ControlRequest::Spawn(spawn) => LoggedSpawn(spawn).fmt(f),
            // The other requests hold names and numbers only.
            other => write!(f, "{other:?}"),
        }
    }
}

/// A spawn request in the log: name, program, truncated arguments,
/// environment keys, the user and group it runs as (if given), ring sizes
/// and ready timeout.
struct LoggedSpawn<'a>(&'a SpawnRequest);

impl fmt::Display for LoggedSpawn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spawn = self.0;
        write!(f, "Spawn {{ name: {:?}, program: ", spawn.name)?;
        write_truncated(f, &spawn.program)?;
        f.write_str(", args: ")?;
        write_list(
            f,
            spawn.args.iter().map(String::as_str),
            spawn.args.len(),
            MAX_LOGGED_ARGS,
        )?;
        f.write_str(", env_keys: ")?;
        write_list(
            f,
            spawn.env.iter().map(|var| var.key.as_str()),
            spawn.env.len(),
            MAX_LOGGED_ENV_KEYS,
        )?;
        for (label, value) in [("user", &spawn.user), ("group", &spawn.group)] {
            if let Some(value) = value {
                write!(f, ", {label}: ")?;
                write_truncated(f, value)?;
            }
        }
        if spawn.restart.when != hostmux_wire::RestartWhen::No {
            write!(f, ", restart: {:?}", spawn.restart)?;
        }
        write!(
            f,
            ", inbound_ring_bytes: {}, outbound_ring_bytes: {}, ready_timeout_ms: {}, ready: ",
            spawn.inbound_ring_bytes, spawn.outbound_ring_bytes, spawn.ready_timeout_ms
        )?;
        write_truncated(f, &spawn.ready)?;
        write!(f, ", watchdog_ms: {} }}", spawn.watchdog_ms)
    }
}

/// `["a", "b", (+3 more)]`: the first `shown` items, each truncated.
fn write_list<'s>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = &'s str>,
    len: usize,
    shown: usize,
) -> fmt::Result {
    f.write_str("[")?;
    for (i, item) in items.take(shown).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_truncated(f, item)?;
    }
    if len > shown {
        write!(f, ", (+{} more)", len - shown)?;
    }
    f.write_str("]")
}

/// `"text"`, or its first [`MAX_LOGGED_ARG_BYTES`] bytes (cut at a
/// character boundary) and `(+N bytes)`.
fn write_truncated(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    if text.len() <= MAX_LOGGED_ARG_BYTES {
        return write!(f, "{text:?}");
    }
    let mut end = MAX_LOGGED_ARG_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    write!(f, "{:?}(+{} bytes)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use hostmux_wire::EnvVar;

    use super::*;

    fn spawn(args: Vec<String>, env: Vec<(&str, &str)>) -> ControlRequest {
        ControlRequest::Spawn(SpawnRequest {
            name: "db".to_owned(),
            program: "/usr/bin/db-proc".to_owned(),
            args,
            env: env
                .into_iter()
                .map(|(key, value)| EnvVar {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
                .collect(),
            inbound_ring_bytes: 0,
            outbound_ring_bytes: 0,
            ready_timeout_ms: 30_000,
            user: Some("nobody".to_owned()),
            group: None,
            restart: Default::default(),
            ready: "notify".to_owned(),
            watchdog_ms: 0,
        })
    }

    #[test]
    fn environment_values_are_never_logged_only_keys() {
        let request = spawn(
            vec!["--port".to_owned(), "9".to_owned()],
            vec![("DB_PASSWORD", "hunter2-secret"), ("MODE", "fast")],
        );
        let line = LoggedRequest(&request).to_string();
        assert!(!line.contains("hunter2-secret"), "{line}");
        assert!(!line.contains("fast"), "{line}");
        assert!(
            line.contains(r#"env_keys: ["DB_PASSWORD", "MODE"]"#),
            "{line}"
        );
        assert!(line.contains(r#"args: ["--port", "9"]"#), "{line}");
        assert!(line.contains(r#"program: "/usr/bin/db-proc""#), "{line}");
        assert!(line.contains(r#"name: "db""#), "{line}");
        assert!(line.contains(r#"user: "nobody""#), "{line}");
        assert!(!line.contains("group"), "no group given: {line}");
        // Derived Debug would have shown the value: the test guards the
        // formatter, not an accident of the fixture.
        assert!(format!("{request:?}").contains("hunter2-secret"));
    }

    #[test]
    fn long_argument_lists_are_truncated_with_a_marker() {
        let args: Vec<String> = (0..20).map(|i| format!("arg{i}")).collect();
        let line = LoggedRequest(&spawn(args, vec![])).to_string();
        assert!(line.contains(r#""arg7", (+12 more)]"#), "{line}");
        assert!(!line.contains("arg8"), "{line}");
        assert!(line.contains(r#"args: ["arg0", "arg1""#), "{line}");
    }

    #[test]
    fn long_arguments_are_cut_at_a_char_boundary_with_a_byte_count() {
        // 'é' is two bytes: 255 ASCII bytes then 'é' straddles the limit.
        let long = format!("{}é{}", "a".repeat(255), "b".repeat(10_000));
        let line = LoggedRequest(&spawn(vec![long.clone()], vec![])).to_string();
        let expected = format!("[\"{}\"(+{} bytes)]", "a".repeat(255), long.len() - 255);
        assert!(line.contains(&expected), "{line}");
        assert!(!line.contains("bb"), "{line}");
    }

    #[test]
    fn a_huge_request_makes_a_bounded_line() {
        // Shaped like the 1.5 MB log line of issue 12.
        let args = vec!["x".repeat(100_000); 15];
        let env = vec![("K", "v"); 1000];
        let line = LoggedRequest(&spawn(args, env)).to_string();
        assert!(line.len() < 4 * 1024, "{} bytes", line.len());
        assert!(line.contains("(+7 more)"), "{line}");
        assert!(line.contains("(+968 more)"), "{line}");
    }

    #[test]
    fn escaped_strings_cannot_forge_log_lines() {
        let line = LoggedRequest(&spawn(vec!["a\nINFO forged".to_owned()], vec![])).to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(r#""a\nINFO forged""#), "{line}");
    }

    #[test]
    fn other_requests_are_shown_whole() {
        let line = LoggedRequest(&ControlRequest::Kill {
            name: "db".to_owned(),
        })
        .to_string();
        assert_eq!(line, r#"Kill { name: "db" }"#);
    }
}
