//! The benchmark's table, JSON and SVG chart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::{Measurement, Mode, System};
use crate::format::{self, Table};

/// The measurement of `system` at the run's smallest idle-proc count (the
/// one the table and the targets use).
fn find(results: &[Measurement], system: System, mode: Mode, size: usize) -> Option<&Measurement> {
    let idle = if system.is_in_process_host() {
        fewest_idle(results)
    } else {
        0
    };
    find_idle(results, system, mode, size, idle)
}

fn find_idle(
    results: &[Measurement],
    system: System,
    mode: Mode,
    size: usize,
    idle_procs: usize,
) -> Option<&Measurement> {
    results.iter().find(|m| {
        m.system == system && m.mode == mode && m.size == size && m.idle_procs == idle_procs
    })
}

/// The smallest idle-proc count of the run's hostmux systems (0 if none).
fn fewest_idle(results: &[Measurement]) -> usize {
    results
        .iter()
        .filter(|m| m.system.is_in_process_host())
        .map(|m| m.idle_procs)
        .min()
        .unwrap_or(0)
}

/// The machine's load average, read from `/proc/loadavg` (all zero if it
/// cannot be read), and its CPU count.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Load {
    /// 1, 5 and 15 minute load averages.
    pub(crate) loadavg: [f64; 3],
    /// CPUs this process may run on.
    pub(crate) cpus: usize,
}

impl Load {
    pub(crate) fn now() -> Load {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut loadavg = [0.0; 3];
        for (slot, field) in loadavg.iter_mut().zip(text.split_whitespace()) {
            *slot = field.parse().unwrap_or(0.0);
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Load { loadavg, cpus }
    }

    /// `machine load at start: 1.38 0.96 0.43 (1/5/15 min), 2 CPUs`.
    pub(crate) fn line(&self) -> String {
        let [one, five, fifteen] = self.loadavg;
        format!(
            "machine load at start: {one:.2} {five:.2} {fifteen:.2} (1/5/15 min load average), {} CPUs{}",
            self.cpus,
            if one > self.cpus as f64 / 2.0 {
                "; figures will be noisy"
            } else {
                ""
            }
        )
    }
}

/// What `bench.json` records about the run beside its figures.
#[derive(Debug, Serialize)]
pub(crate) struct RunInfo {
    pub(crate) load_at_start: Load,
    pub(crate) load_at_end: Load,
    /// The hostmux systems' ring memory policy.
    pub(crate) ring_memory: &'static str,
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

/// The side-by-side table, with ratios to loopback TCP and the issues'
/// targets.
pub(crate) fn table(results: &[Measurement]) -> String {
    let mut out = String::new();
    let rounds = results.iter().map(|m| m.rounds).max().unwrap_or(1);
    let _ = writeln!(
        out,
        "one-way: frames/s and GB/s of payload, CPU = user+sys of client, host(s) and proc per frame, frames returned undeliverable; round trip one frame at a time; medians of {rounds} round(s)"
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
            "returned",
            "rtt p50",
            "rtt p99",
            "rtt p99.9",
        ]);
        for system in System::ALL {
            let oneway = find(results, system, Mode::Oneway, size);
            let rr = find(results, system, Mode::Rr, size);
            if oneway.is_none() && rr.is_none() {
                continue;
            }
            let throughput =
                |f: &dyn Fn(&Measurement) -> String| oneway.map(f).unwrap_or_else(|| "-".into());
            let lat = |f: fn(&Measurement) -> u64| {
                rr.map(|m| format::micros(f(m)))
                    .unwrap_or_else(|| "-".into())
            };
            table.row(vec![
                system.label().to_owned(),
                throughput(&|m| format::si(m.frames_per_sec, "")),
                throughput(&|m| format!("{:.3}", m.gb_per_sec)),
                throughput(&|m| {
                    tcp.map(|t| format!("{:.0}%", 100.0 * m.frames_per_sec / t.frames_per_sec))
                        .unwrap_or_else(|| "-".into())
                }),
                throughput(&|m| format!("{:.0}", m.cpu_ns_per_frame)),
                throughput(&|m| {
                    format!(
                        "{:.0}/{:.0}/{:.0}",
                        m.cpu_split_ns[0], m.cpu_split_ns[1], m.cpu_split_ns[2]
                    )
                }),
                throughput(&|m| m.returned.to_string()),
                lat(|m| m.p50_ns),
                lat(|m| m.p99_ns),
                lat(|m| m.p999_ns),
            ]);
        }
        out.push_str(&table.render());
    }
    idle_table(&mut out, results);
    let targets = targets(results);
    for issue in [7, 15, 13] {
        let mut group = targets.iter().filter(|t| t.issue == issue).peekable();
        if group.peek().is_none() {
            continue;
        }
        let _ = writeln!(out, "\ntargets (issue {issue}):");
        for target in group {
            let verdict = match (target.shown_value(), target.met) {
                (Some(v), Some(true)) => format!("{v} (met)"),
                (Some(v), _) => format!("{v} (MISSED)"),
                (None, _) => "not measured".to_owned(),
            };
            let detail = match &target.detail {
                Some(detail) => format!("; {detail}"),
                None => String::new(),
            };
            let _ = writeln!(out, "  {}: {verdict}{detail}", target.what);
        }
    }
    if results.iter().any(|m| m.system == System::Tls) {
        tls_ratios(&mut out, results);
    }
    out
}

/// With `--idle-procs`: each hostmux system's one-way throughput at every
/// idle-proc count, and its ratio to the smallest count.
fn idle_table(out: &mut String, results: &[Measurement]) {
    let mut counts: Vec<usize> = results.iter().map(|m| m.idle_procs).collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.len() < 2 {
        return;
    }
    let fewest = counts[0];
    out.push_str("\none-way frames/s beside idle procs (ratio to the first column):\n");
    let headers: Vec<String> = ["system".to_owned(), "payload".to_owned()]
        .into_iter()
        .chain(counts.iter().map(|n| format!("{n} idle")))
        .collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut table = Table::new(&headers);
    for system in System::ALL.into_iter().filter(|s| s.is_in_process_host()) {
        for size in sizes(results) {
            let Some(base) = find_idle(results, system, Mode::Oneway, size, fewest) else {
                continue;
            };
            let mut row = vec![system.label().to_owned(), size_label(size)];
            for &count in &counts {
                row.push(
                    find_idle(results, system, Mode::Oneway, size, count).map_or_else(
                        || "-".to_owned(),
                        |m| {
                            format!(
                                "{} ({:.2})",
                                format::si(m.frames_per_sec, ""),
                                m.frames_per_sec / base.frames_per_sec
                            )
                        },
                    ),
                );
            }
            table.row(row);
        }
    }
    out.push_str(&table.render());
}

/// TLS against plain, the same host setup: (8) against (2), reported with
/// no target (issue 13 asks for the comparison, not a bound).
fn tls_ratios(out: &mut String, results: &[Measurement]) {
    let (small, large) = (64, 1 << 20);
    out.push_str(
        "\nTLS client vs plain TCP client, same host setup (issue 13; reported, no target):\n",
    );
    for (what, mode, size, f) in [
        (
            "(8)/(2) frames/s at 64 B",
            Mode::Oneway,
            small,
            (|m| m.frames_per_sec) as fn(&Measurement) -> f64,
        ),
        ("(8)/(2) GB/s at 1 MiB", Mode::Oneway, large, |m| {
            m.gb_per_sec
        }),
        ("(8)/(2) p50 round trip at 64 B", Mode::Rr, small, |m| {
            m.p50_ns as f64
        }),
        ("(8)/(2) p50 round trip at 1 MiB", Mode::Rr, large, |m| {
            m.p50_ns as f64
        }),
    ] {
        let value = (|| {
            Some(
                f(find(results, System::Tls, mode, size)?)
                    / f(find(results, System::Uring, mode, size)?),
            )
        })();
        let shown = value.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(out, "  {what}: {shown}");
    }
}

/// One of the issues' speed targets, checked against a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    /// The issue that set it.
    pub(crate) issue: u32,
    /// What is compared, and the bound, as the table prints it.
    pub(crate) what: String,
    /// The bound.
    pub(crate) target: f64,
    /// `true`: the value must be at least the bound; `false`: at most.
    pub(crate) at_least: bool,
    /// The measured ratio; `None` if a system it needs was not run.
    pub(crate) value: Option<f64>,
    /// Whether the value keeps the bound; `None` if not measured.
    pub(crate) met: Option<bool>,
    /// The figures behind the ratio, for a reader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
}

impl Target {
    pub(crate) fn new(
        issue: u32,
        what: &str,
        target: f64,
        at_least: bool,
        value: Option<f64>,
    ) -> Self {
        Self {
            issue,
            what: what.to_owned(),
            target,
            at_least,
            value,
            met: value.map(|v| if at_least { v >= target } else { v <= target }),
            detail: None,
        }
    }

    /// The value as the tables print it: two decimals, or three where two
    /// would round across the bound (1.296 against `>= 1.3` is not shown
    /// as a missed "1.30").
    pub(crate) fn shown_value(&self) -> Option<String> {
        let (value, met) = (self.value?, self.met?);
        let rounded = (value * 100.0).round() / 100.0;
        let rounded_met = if self.at_least {
            rounded >= self.target
        } else {
            rounded <= self.target
        };
        Some(if rounded_met == met {
            format!("{value:.2}")
        } else {
            format!("{value:.3}")
        })
    }
}

/// The targets whose systems are in `results`: issue 7's and issue 15's
/// when any of hostmux (2), (3) or the conventional host (4) ran, issue
/// 13's when the same-host (6) or cross-host (7) system ran. Measured at
/// the run's smallest idle-proc count.
pub(crate) fn targets(results: &[Measurement]) -> Vec<Target> {
    let ran = |systems: &[System]| results.iter().any(|m| systems.contains(&m.system));
    let get = |system, mode, size| find(results, system, mode, size);
    let ratio = |a: Option<&Measurement>, b: Option<&Measurement>, f: fn(&Measurement) -> f64| {
        Some(f(a?) / f(b?))
    };
    let (small, large) = (64, 1 << 20);
    let mut out = Vec::new();
    if ran(&[System::Uring, System::Epoll, System::Conventional]) {
        out.push(Target::new(
            7,
            "(2)/(1) frames/s at 64 B, target >= 0.50",
            0.5,
            true,
            ratio(
                get(System::Uring, Mode::Oneway, small),
                get(System::Tcp, Mode::Oneway, small),
                |m| m.frames_per_sec,
            ),
        ));
        out.push(Target::new(
            7,
            "(2)/(1) GB/s at 1 MiB, target >= 0.85",
            0.85,
            true,
            ratio(
                get(System::Uring, Mode::Oneway, large),
                get(System::Tcp, Mode::Oneway, large),
                |m| m.gb_per_sec,
            ),
        ));
        out.push(Target::new(
            7,
            "(2)/(4) frames/s at 64 B, target >= 5",
            5.0,
            true,
            ratio(
                get(System::Uring, Mode::Oneway, small),
                get(System::Conventional, Mode::Oneway, small),
                |m| m.frames_per_sec,
            ),
        ));
        out.push(Target::new(
            7,
            "(2)/(4) p50 round trip at 64 B, target <= 1",
            1.0,
            false,
            ratio(
                get(System::Uring, Mode::Rr, small),
                get(System::Conventional, Mode::Rr, small),
                |m| m.p50_ns as f64,
            ),
        ));
    }
    if ran(&[
        System::Uring,
        System::Epoll,
        System::UringDirect,
        System::Conventional,
    ]) {
        // The bars are the default frontend's, io-uring-direct (11), what
        // `--frontend-kind auto` runs where io_uring works; tokio-uring (2)
        // when (11) did not run. The other frontends are shown beside it.
        let (primary, label) = if ran(&[System::UringDirect]) {
            (System::UringDirect, "(11)")
        } else {
            (System::Uring, "(2)")
        };
        let others = |mode, size, f: fn(&Measurement) -> f64, base: System, base_label: &str| {
            let shown: Vec<String> = [
                (System::Uring, "(2)"),
                (System::Epoll, "(3)"),
                (System::UringDirect, "(11)"),
            ]
            .into_iter()
            .filter(|(system, _)| *system != primary)
            .filter_map(|(system, label)| {
                ratio(get(system, mode, size), get(base, mode, size), f)
                    .map(|r| format!("{label}/{base_label}: {r:.2}"))
            })
            .collect();
            (!shown.is_empty()).then(|| shown.join(", "))
        };
        let mut oneway = Target::new(
            15,
            &format!("{label}/(1) frames/s at 64 B, target >= 0.70"),
            0.7,
            true,
            ratio(
                get(primary, Mode::Oneway, small),
                get(System::Tcp, Mode::Oneway, small),
                |m| m.frames_per_sec,
            ),
        );
        oneway.detail = others(
            Mode::Oneway,
            small,
            |m| m.frames_per_sec,
            System::Tcp,
            "(1)",
        );
        out.push(oneway);
        let mut large_frames = Target::new(
            15,
            &format!("{label}/(1) GB/s at 1 MiB, target >= 1.00"),
            1.0,
            true,
            ratio(
                get(primary, Mode::Oneway, large),
                get(System::Tcp, Mode::Oneway, large),
                |m| m.gb_per_sec,
            ),
        );
        large_frames.detail = others(Mode::Oneway, large, |m| m.gb_per_sec, System::Tcp, "(1)");
        out.push(large_frames);
        if ran(&[System::TcpSpread]) {
            let mut spread = Target::new(
                15,
                &format!(
                    "{label}/(10) GB/s at 1 MiB (the 1.00 bar against TCP into a ring-sized buffer)"
                ),
                1.0,
                true,
                ratio(
                    get(primary, Mode::Oneway, large),
                    get(System::TcpSpread, Mode::Oneway, large),
                    |m| m.gb_per_sec,
                ),
            );
            spread.detail = ratio(
                get(System::TcpSpread, Mode::Oneway, large),
                get(System::Tcp, Mode::Oneway, large),
                |m| m.gb_per_sec,
            )
            .map(|r| format!("(10)/(1): {r:.2}"));
            out.push(spread);
        }
        let primary_rr = get(primary, Mode::Rr, small);
        let busy_poll_rr = get(System::TcpBusyPoll, Mode::Rr, small);
        let mut round_trip = Target::new(
            15,
            &format!("{label}/(5) p50 round trip at 64 B, target <= 1.5"),
            1.5,
            false,
            ratio(primary_rr, busy_poll_rr, |m| m.p50_ns as f64),
        );
        round_trip.detail = primary_rr.zip(busy_poll_rr).map(|(ours, busy_poll)| {
            let mut detail = format!(
                "{} vs {}",
                format::micros(ours.p50_ns),
                format::micros(busy_poll.p50_ns)
            );
            if let Some(others) = others(
                Mode::Rr,
                small,
                |m| m.p50_ns as f64,
                System::TcpBusyPoll,
                "(5)",
            ) {
                detail = format!("{detail}; {others}");
            }
            detail
        });
        // The same three parties over TCP: what this machine gives a round
        // trip through a spinning middle and a spinning end, beside hostmux.
        let relay_rr = get(System::TcpRelayBusyPoll, Mode::Rr, small);
        if let (Some(ours), Some(relay)) = (primary_rr, relay_rr) {
            let three = format!(
                "(12) the same three parties over TCP: {}, {label}/(12) {:.2}",
                format::micros(relay.p50_ns),
                ours.p50_ns as f64 / relay.p50_ns.max(1) as f64
            );
            round_trip.detail = Some(match round_trip.detail.take() {
                Some(detail) => format!("{detail}; {three}"),
                None => three,
            });
        }
        out.push(round_trip);
    }
    if ran(&[System::SameHost, System::CrossHost]) {
        out.push(Target::new(
            13,
            "(7)/(6) frames/s at 64 B, target >= 0.50",
            0.5,
            true,
            ratio(
                get(System::CrossHost, Mode::Oneway, small),
                get(System::SameHost, Mode::Oneway, small),
                |m| m.frames_per_sec,
            ),
        ));
        out.push(Target::new(
            13,
            "(7)/(1) GB/s at 1 MiB, target >= 0.80",
            0.8,
            true,
            ratio(
                get(System::CrossHost, Mode::Oneway, large),
                get(System::Tcp, Mode::Oneway, large),
                |m| m.gb_per_sec,
            ),
        ));
        let cross = get(System::CrossHost, Mode::Rr, small);
        let same = get(System::SameHost, Mode::Rr, small);
        for (tcp, name, quantile, pick) in [
            (
                System::Tcp,
                "(1)",
                "p50",
                (|m| m.p50_ns) as fn(&Measurement) -> u64,
            ),
            (System::Tcp, "(1)", "p99", |m| m.p99_ns),
            (System::TcpBusyPoll, "(5)", "p50", |m| m.p50_ns),
        ] {
            out.push(round_trip_budget(
                cross,
                same,
                get(tcp, Mode::Rr, small),
                name,
                quantile,
                pick,
            ));
        }
    }
    out
}

/// Issue 13's round-trip target: cross-host (7) at most same-host (6) plus
/// two bare TCP round trips (`tcp`, named `tcp_name`), at one quantile.
fn round_trip_budget(
    cross: Option<&Measurement>,
    same: Option<&Measurement>,
    tcp: Option<&Measurement>,
    tcp_name: &str,
    quantile: &str,
    pick: fn(&Measurement) -> u64,
) -> Target {
    let figures = (|| Some((pick(cross?), pick(same?) + 2 * pick(tcp?))))();
    let mut target = Target::new(
        13,
        &format!("(7) {quantile} round trip / ((6) + 2 x {tcp_name}) at 64 B, target <= 1"),
        1.0,
        false,
        figures.map(|(cross, budget)| cross as f64 / budget.max(1) as f64),
    );
    target.detail = figures
        .map(|(cross, budget)| format!("{} vs {}", format::micros(cross), format::micros(budget)));
    target
}

/// What `bench.json` holds.
#[derive(Serialize)]
struct Report<'a> {
    run: &'a RunInfo,
    measurements: &'a [Measurement],
    targets: Vec<Target>,
}

/// Writes `bench.json` and `bench.svg` into `dir`; returns `dir`.
pub(crate) fn write(dir: &Path, results: &[Measurement], run: &RunInfo) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the results folder {}; pass --results DIR",
            dir.display()
        )
    })?;
    let json = dir.join("bench.json");
    let report = Report {
        run,
        measurements: results,
        targets: targets(results),
    };
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
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
    const H: f64 = 380.0;
    // One colour per system, in the order of [`System::ALL`].
    const COLORS: [&str; 11] = [
        "#888888", "#1f77b4", "#2ca02c", "#8c564b", "#d62728", "#bbbbbb", "#9467bd", "#ff7f0e",
        "#17becf", "#555555", "#444444",
    ];
    // The systems in this run, with their colours.
    let systems: Vec<(System, &str)> = System::ALL
        .into_iter()
        .zip(COLORS)
        .filter(|(s, _)| results.iter().any(|m| m.system == *s))
        .collect();
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
                systems.iter().enumerate().filter_map(move |(k, &(s, _))| {
                    find(results, s, mode, size)
                        .and_then(|m| value(m, tcp))
                        .map(|v| (si, k, v))
                })
            })
            .collect();
        let max = values.iter().map(|v| v.2).fold(1e-9, f64::max);
        let (plot_h, base) = (240.0, 290.0);
        let group_w = 410.0 / sizes.len().max(1) as f64;
        let bar_w = group_w / (systems.len() + 1) as f64;
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
                systems[*k].1,
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
    // The legend: four systems a row.
    for (k, (system, color)) in systems.iter().enumerate() {
        let x = 20.0 + (k % 4) as f64 * 220.0;
        let y = 330.0 + (k / 4) as f64 * 20.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            x + 16.0,
            y + 11.0,
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
            idle_procs: 0,
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
    fn a_value_that_two_decimals_would_round_across_the_bound_gets_three() {
        let shown = |target, at_least, value| {
            Target::new(15, "", target, at_least, Some(value))
                .shown_value()
                .unwrap()
        };
        assert_eq!(shown(1.3, true, 1.2953), "1.295");
        assert_eq!(shown(1.5, false, 1.5042), "1.504");
        assert_eq!(shown(1.3, true, 1.2712), "1.27");
        assert_eq!(shown(1.5, false, 1.4991), "1.50");
        assert_eq!(shown(1.0, true, 1.0049), "1.00");
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
        assert!(text.contains("(8) hostmux io_uring, TLS client"), "{text}");
        assert!(text.contains("(8)/(2) frames/s at 64 B: 0.75"), "{text}");
        assert!(
            text.contains("(8)/(2) GB/s at 1 MiB: not measured"),
            "{text}"
        );
        let svg = chart(&results);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn cross_host_targets_compare_with_the_baselines_of_the_same_run() {
        let results = vec![
            m(System::Tcp, Mode::Oneway, 1000.0, 0),
            m(System::Tcp, Mode::Rr, 1.0, 10_000),
            m(System::TcpBusyPoll, Mode::Rr, 1.0, 5_000),
            m(System::SameHost, Mode::Oneway, 500.0, 0),
            m(System::SameHost, Mode::Rr, 1.0, 20_000),
            m(System::CrossHost, Mode::Oneway, 300.0, 0),
            m(System::CrossHost, Mode::Rr, 1.0, 50_000),
        ];
        let text = table(&results);
        assert!(!text.contains("issue 7"), "{text}");
        for line in [
            "(5) loopback TCP, busy-poll",
            "(7)/(6) frames/s at 64 B, target >= 0.50: 0.60 (met)",
            // 50 µs against 20 + 2 x 10 µs; against 20 + 2 x 5 µs.
            "(7) p50 round trip / ((6) + 2 x (1)) at 64 B, target <= 1: 1.25 (MISSED); 50.0 µs vs 40.0 µs",
            "(7) p50 round trip / ((6) + 2 x (5)) at 64 B, target <= 1: 1.67 (MISSED)",
            // No 1 MiB row in this run.
            "(7)/(1) GB/s at 1 MiB, target >= 0.80: not measured",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        let targets = targets(&results);
        assert_eq!(targets.len(), 5);
        assert_eq!(targets[0].met, Some(true));
        assert_eq!(targets[1].met, None);
        let svg = chart(&results);
        assert!(svg.contains("(7) hostmux serve, cross-host"));
    }

    #[test]
    fn issue_15_targets_use_busy_poll_tcp_and_the_fewest_idle_procs() {
        let mut idle = m(System::Uring, Mode::Oneway, 100.0, 0);
        idle.idle_procs = 400;
        let mut fewest = m(System::Uring, Mode::Oneway, 800.0, 0);
        fewest.idle_procs = 0;
        let results = vec![
            m(System::Tcp, Mode::Oneway, 1000.0, 0),
            m(System::Epoll, Mode::Oneway, 600.0, 0),
            fewest,
            idle,
            m(System::UringDirect, Mode::Oneway, 900.0, 0),
            m(System::Uring, Mode::Rr, 1.0, 20_000),
            m(System::UringDirect, Mode::Rr, 1.0, 14_000),
            m(System::TcpBusyPoll, Mode::Rr, 1.0, 10_000),
        ];
        let text = table(&results);
        for line in [
            "targets (issue 15)",
            "(11)/(1) frames/s at 64 B, target >= 0.70: 0.90 (met); (2)/(1): 0.80, (3)/(1): 0.60",
            "(11)/(5) p50 round trip at 64 B, target <= 1.5: 1.40 (met); 14.0 µs vs 10.0 µs; (2)/(5): 2.00",
            "(11)/(1) GB/s at 1 MiB, target >= 1.00: not measured",
            "one-way frames/s beside idle procs",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(text.contains("(0.12)"), "400 idle against 0 idle: {text}");
        // Issue 7's figures come from the same run.
        assert!(text.find("targets (issue 7)") < text.find("targets (issue 15)"));
    }
}
