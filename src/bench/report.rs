//! The benchmark's table, JSON and SVG chart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Measurement, Mode, System};
use crate::format::{self, Table};

fn find(results: &[Measurement], system: System, mode: Mode, size: usize) -> Option<&Measurement> {
    results
        .iter()
        .find(|m| m.system == system && m.mode == mode && m.size == size)
}

fn sizes(results: &[Measurement]) -> Vec<usize> {
    let mut sizes: Vec<usize> = results.iter().map(|m| m.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn size_label(size: usize) -> String {
    format::bytes(size as u64).replace(".0 ", " ")
}

/// The side-by-side table, with ratios to loopback TCP and the issue's targets.
pub(crate) fn table(results: &[Measurement]) -> String {
    let mut out = String::new();
    let rounds = results.iter().map(|m| m.rounds).max().unwrap_or(1);
    let _ = writeln!(
        out,
        "one-way: frames/s and GB/s of payload, CPU = user+sys of client, host and proc per frame; round trip one frame at a time; medians of {rounds} round(s)"
    );
    for size in sizes(results) {
        let tcp = find(results, System::Tcp, Mode::Oneway, size);
        let _ = writeln!(out, "\npayload {}:", size_label(size));
        let mut table = Table::new(&[
            "system",
            "frames/s",
            "GB/s",
            "vs TCP",
            "CPU ns/frame",
            "client/host/proc",
            "rtt p50",
            "rtt p99",
            "rtt p99.9",
        ]);
        for system in [
            System::Tcp,
            System::Uring,
            System::Epoll,
            System::Conventional,
            System::Tls,
        ] {
            let Some(oneway) = find(results, system, Mode::Oneway, size) else {
                continue;
            };
            let rr = find(results, system, Mode::Rr, size);
            let ratio = tcp
                .map(|t| format!("{:.0}%", 100.0 * oneway.frames_per_sec / t.frames_per_sec))
                .unwrap_or_else(|| "-".into());
            let lat = |f: fn(&Measurement) -> u64| {
                rr.map(|m| format::micros(f(m)))
                    .unwrap_or_else(|| "-".into())
            };
            table.row(vec![
                system.label().to_owned(),
                format::si(oneway.frames_per_sec, ""),
                format!("{:.3}", oneway.gb_per_sec),
                ratio,
                format!("{:.0}", oneway.cpu_ns_per_frame),
                format!(
                    "{:.0}/{:.0}/{:.0}",
                    oneway.cpu_split_ns[0], oneway.cpu_split_ns[1], oneway.cpu_split_ns[2]
                ),
                lat(|m| m.p50_ns),
                lat(|m| m.p99_ns),
                lat(|m| m.p999_ns),
            ]);
        }
        out.push_str(&table.render());
    }
    out.push_str("\ntargets (issue 7):\n");
    let mut check = |what: String, value: Option<f64>, target: f64, higher_is_better: bool| {
        let verdict = match value {
            None => "not measured".to_owned(),
            Some(v) if (v >= target) == higher_is_better => format!("{v:.2} (met)"),
            Some(v) => format!("{v:.2} (MISSED)"),
        };
        let _ = writeln!(out, "  {what}: {verdict}");
    };
    let ratio = |a: Option<&Measurement>, b: Option<&Measurement>, f: fn(&Measurement) -> f64| {
        Some(f(a?) / f(b?))
    };
    let small = 64;
    let large = 1 << 20;
    check(
        "(2)/(1) frames/s at 64 B, target >= 0.50".into(),
        ratio(
            find(results, System::Uring, Mode::Oneway, small),
            find(results, System::Tcp, Mode::Oneway, small),
            |m| m.frames_per_sec,
        ),
        0.5,
        true,
    );
    check(
        "(2)/(1) GB/s at 1 MiB, target >= 0.85".into(),
        ratio(
            find(results, System::Uring, Mode::Oneway, large),
            find(results, System::Tcp, Mode::Oneway, large),
            |m| m.gb_per_sec,
        ),
        0.85,
        true,
    );
    check(
        "(2)/(4) frames/s at 64 B, target >= 5".into(),
        ratio(
            find(results, System::Uring, Mode::Oneway, small),
            find(results, System::Conventional, Mode::Oneway, small),
            |m| m.frames_per_sec,
        ),
        5.0,
        true,
    );
    check(
        "(2)/(4) p50 round trip at 64 B, target <= 1".into(),
        ratio(
            find(results, System::Uring, Mode::Rr, small),
            find(results, System::Conventional, Mode::Rr, small),
            |m| m.p50_ns as f64,
        ),
        1.0,
        false,
    );
    out.push_str(
        "\nTLS client vs plain TCP client, same host setup (issue 13; reported, no target):\n",
    );
    let mut report = |what: &str, value: Option<f64>| {
        let shown = value.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(out, "  {what}: {shown}");
    };
    for (what, mode, size, f) in [
        (
            "(5)/(2) frames/s at 64 B",
            Mode::Oneway,
            small,
            (|m| m.frames_per_sec) as fn(&Measurement) -> f64,
        ),
        ("(5)/(2) GB/s at 1 MiB", Mode::Oneway, large, |m| {
            m.gb_per_sec
        }),
        ("(5)/(2) p50 round trip at 64 B", Mode::Rr, small, |m| {
            m.p50_ns as f64
        }),
        ("(5)/(2) p50 round trip at 1 MiB", Mode::Rr, large, |m| {
            m.p50_ns as f64
        }),
    ] {
        report(
            what,
            ratio(
                find(results, System::Tls, mode, size),
                find(results, System::Uring, mode, size),
                f,
            ),
        );
    }
    out
}

/// Writes `bench.json` and `bench.svg` into `dir`; returns `dir`.
pub(crate) fn write(dir: &Path, results: &[Measurement]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the results folder {}; pass --results DIR",
            dir.display()
        )
    })?;
    let json = dir.join("bench.json");
    std::fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let svg = dir.join("bench.svg");
    std::fs::write(&svg, chart(results)).with_context(|| format!("writing {}", svg.display()))?;
    Ok(dir.to_path_buf())
}

/// A chart panel's value of a measurement, given loopback TCP's.
type PanelValue = dyn Fn(&Measurement, Option<&Measurement>) -> Option<f64>;

/// A grouped bar chart: one-way throughput relative to loopback TCP per
/// payload size (left), and p50 round trip in µs (right).
pub(crate) fn chart(results: &[Measurement]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 360.0;
    const COLORS: [&str; 4] = ["#888888", "#1f77b4", "#2ca02c", "#d62728"];
    const SYSTEMS: [System; 4] = [
        System::Tcp,
        System::Uring,
        System::Epoll,
        System::Conventional,
    ];
    let sizes = sizes(results);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let panels: [(&str, f64, Box<PanelValue>); 2] = [
        (
            "one-way frames/s, % of loopback TCP",
            20.0,
            Box::new(|m, tcp| tcp.map(|t| 100.0 * m.frames_per_sec / t.frames_per_sec)),
        ),
        (
            "p50 round trip, µs",
            470.0,
            Box::new(|m, _| Some(m.p50_ns as f64 / 1e3)),
        ),
    ];
    for (index, (title, x0, value)) in panels.iter().enumerate() {
        let mode = if index == 0 { Mode::Oneway } else { Mode::Rr };
        let values: Vec<(usize, usize, f64)> = sizes
            .iter()
            .enumerate()
            .flat_map(|(si, &size)| {
                let tcp = find(results, System::Tcp, mode, size);
                SYSTEMS.iter().enumerate().filter_map(move |(k, &s)| {
                    find(results, s, mode, size)
                        .and_then(|m| value(m, tcp))
                        .map(|v| (si, k, v))
                })
            })
            .collect();
        let max = values.iter().map(|v| v.2).fold(1e-9, f64::max);
        let (plot_h, base) = (240.0, 290.0);
        let group_w = 410.0 / sizes.len().max(1) as f64;
        let bar_w = group_w / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="20" font-weight="bold">{title}</text>"#,
            x0
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{base}" x2="{}" y2="{base}" stroke="#333"/>"##,
            x0 + 410.0
        );
        for (si, k, v) in &values {
            let h = plot_h * v / max;
            let x = x0 + *si as f64 * group_w + (*k as f64 + 0.5) * bar_w;
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{v:.0}</text>"#,
                base - h,
                bar_w * 0.9,
                COLORS[*k],
                x + bar_w * 0.45,
                base - h - 3.0,
            );
        }
        for (si, &size) in sizes.iter().enumerate() {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x0 + (si as f64 + 0.5) * group_w,
                base + 16.0,
                size_label(size)
            );
        }
    }
    for (k, system) in SYSTEMS.iter().enumerate() {
        let x = 20.0 + k as f64 * 220.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="330" width="12" height="12" fill="{}"/><text x="{}" y="341">{}</text>"#,
            COLORS[k],
            x + 16.0,
            system.label()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(system: System, mode: Mode, fps: f64, p50: u64) -> Measurement {
        Measurement {
            system,
            mode,
            size: 64,
            frames: 1,
            returned: 0,
            secs: 1.0,
            frames_per_sec: fps,
            gb_per_sec: fps * 64.0 / 1e9,
            cpu_ns_per_frame: 1.0,
            cpu_split_ns: [0.0; 3],
            p50_ns: p50,
            p99_ns: p50,
            p999_ns: p50,
            rounds: 1,
        }
    }

    #[test]
    fn table_reports_ratios_and_missed_targets() {
        let results = vec![
            m(System::Tcp, Mode::Oneway, 1000.0, 10),
            m(System::Uring, Mode::Oneway, 400.0, 10),
            m(System::Conventional, Mode::Oneway, 50.0, 10),
            m(System::Uring, Mode::Rr, 1.0, 20_000),
            m(System::Conventional, Mode::Rr, 1.0, 40_000),
            m(System::Tls, Mode::Oneway, 300.0, 10),
        ];
        let text = table(&results);
        assert!(text.contains("40%"), "{text}");
        assert!(
            text.contains("(2)/(1) frames/s at 64 B, target >= 0.50: 0.40 (MISSED)"),
            "{text}"
        );
        assert!(
            text.contains("(2)/(4) frames/s at 64 B, target >= 5: 8.00 (met)"),
            "{text}"
        );
        assert!(
            text.contains("p50 round trip at 64 B, target <= 1: 0.50 (met)"),
            "{text}"
        );
        assert!(text.contains("(5) hostmux io_uring, TLS client"), "{text}");
        assert!(text.contains("(5)/(2) frames/s at 64 B: 0.75"), "{text}");
        assert!(
            text.contains("(5)/(2) GB/s at 1 MiB: not measured"),
            "{text}"
        );
        let svg = chart(&results);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
