//! Output formatting shared by the CLI's subcommands and `hostmux-bench`:
//! aligned tables, human rates and sizes, a carriage-return progress bar.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

/// A plain-text table with right-aligned numeric columns.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per header).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: numeric columns right-aligned, text left-aligned.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        // Columns whose cells all start with a digit are right-aligned.
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                i > 0
                    && self.rows.iter().all(|r| {
                        r.get(i)
                            .is_some_and(|c| c.starts_with(|ch: char| ch.is_ascii_digit()))
                    })
            })
            .collect();
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            for (i, cell) in cells.iter().enumerate().take(columns) {
                if i > 0 {
                    out.push_str("  ");
                }
                if numeric[i] {
                    let _ = write!(out, "{cell:>width$}", width = widths[i]);
                } else {
                    let _ = write!(out, "{cell:<width$}", width = widths[i]);
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        };
        line(&self.headers);
        for row in &self.rows {
            line(row);
        }
        out
    }
}

/// `1234567` → `1.23 M`, with `unit` appended.
pub fn si(value: f64, unit: &str) -> String {
    let (scaled, prefix) = if value >= 1e9 {
        (value / 1e9, "G")
    } else if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    format!("{scaled:.2} {prefix}{unit}")
}

/// Bytes in binary units: `4096` → `4.0 KiB`.
pub fn bytes(value: u64) -> String {
    let v = value as f64;
    if value >= 1 << 30 {
        format!("{:.1} GiB", v / f64::from(1u32 << 30))
    } else if value >= 1 << 20 {
        format!("{:.1} MiB", v / f64::from(1u32 << 20))
    } else if value >= 1 << 10 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{value} B")
    }
}

/// A duration in the unit that reads best: `µs` below a millisecond.
pub fn micros(nanos: u64) -> String {
    if nanos < 1_000_000 {
        format!("{:.1} µs", nanos as f64 / 1e3)
    } else {
        format!("{:.2} ms", nanos as f64 / 1e6)
    }
}

/// Milliseconds as they read best: `400ms`, `1.5s`, `2m05s`.
pub fn millis(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
    }
}

/// A progress bar drawn in place on stderr with a carriage return.
pub struct Progress {
    total: u64,
    /// Redraw every `step` percent: every percent on a terminal, every ten
    /// in a log.
    step: u64,
    last_percent: u64,
    started: std::time::Instant,
}

impl Progress {
    /// A progress bar for `total` units of work.
    pub fn new(total: u64) -> Self {
        Self {
            total: total.max(1),
            step: if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                1
            } else {
                10
            },
            last_percent: u64::MAX,
            started: std::time::Instant::now(),
        }
    }

    /// Redraws when the percentage changed.
    pub fn update(&mut self, done: u64) {
        let percent = done * 100 / self.total / self.step * self.step;
        if percent == self.last_percent {
            return;
        }
        self.last_percent = percent;
        let filled = (percent / 5) as usize;
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r[{}{}] {percent:>3}%  {done}/{} frames  {}",
            "#".repeat(filled),
            " ".repeat(20 - filled),
            self.total,
            si(rate, "frames/s"),
        );
        let _ = stderr.flush();
    }

    /// Ends the line.
    pub fn finish(self) -> Duration {
        eprintln!();
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(&["proc", "frames"]);
        table.row(vec!["echo-1".into(), "5".into()]);
        table.row(vec!["e".into(), "12345".into()]);
        assert_eq!(
            table.render(),
            "proc    frames\necho-1       5\ne        12345\n"
        );
    }

    #[test]
    fn units_scale() {
        assert_eq!(si(1_234_567.0, "frames/s"), "1.23 Mframes/s");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(micros(12_300), "12.3 µs");
        assert_eq!(micros(2_500_000), "2.50 ms");
        assert_eq!(millis(400), "400ms");
        assert_eq!(millis(1500), "1.5s");
        assert_eq!(millis(125_000), "2m05s");
    }
}
