//! How many cores the host may use, and from that how many I/O threads it
//! runs by default ([`default_io_threads`], the default of
//! [`HostConfig::io_threads`](crate::HostConfig::io_threads)).
//!
//! The cores are the CPUs in the host's affinity mask
//! (`sched_getaffinity`), capped by its cgroup's CPU quota if it has one
//! (cgroup v2 `cpu.max` of its own cgroup and every ancestor, or cgroup v1
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us`, rounded up). The cgroup is
//! found through `/proc/self/cgroup` and the mount through
//! `/proc/self/mountinfo`, never by assuming a path. Parsing is pure
//! functions over the files' text, tested without a cgroup.

use std::path::{Path, PathBuf};

/// How many I/O threads a host runs by default: a quarter of the cores it
/// may use (see [`available_cores`]), at least one. The procs and the
/// clients on the machine need the other cores; on a 2-core machine this
/// is 1. A rule of thumb to be revisited with measurements on bigger
/// machines (docs/architecture.md, "Threads").
pub fn default_io_threads() -> usize {
    io_threads_for(available_cores())
}

/// The default rule, for a count of cores.
pub(crate) fn io_threads_for(cores: usize) -> usize {
    (cores / 4).max(1)
}

/// The cores this process may use: its affinity mask, capped by its
/// cgroup's CPU quota. At least 1 (a mask or a quota that cannot be read
/// counts as no limit; an unreadable mask as 1 core).
pub fn available_cores() -> usize {
    let affinity = rustix::thread::sched_getaffinity(None)
        .map(|set| set.count() as usize)
        .unwrap_or(1)
        .max(1);
    match cgroup_quota_cores() {
        Some(quota) => affinity.min(quota).max(1),
        None => affinity,
    }
}

/// The CPU quota of this process's cgroup (and its ancestors) in whole
/// cores, rounded up; `None` without one.
fn cgroup_quota_cores() -> Option<usize> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (version, path) = own_cgroup(&cgroups)?;
    let (root, mount) = cgroup_mount(&mountinfo, version)?;
    // The cgroup path is relative to the hierarchy's root; the mount shows
    // the subtree rooted at `root` (a namespace or a bind mount).
    let relative = Path::new(path).strip_prefix(root).ok()?;
    let mut dir = mount.join(relative);
    let mut quota: Option<usize> = None;
    loop {
        let here = match version {
            CgroupVersion::V2 => std::fs::read_to_string(dir.join("cpu.max"))
                .ok()
                .and_then(|text| cpu_max_cores(&text)),
            CgroupVersion::V1 => {
                let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
                read("cpu.cfs_quota_us")
                    .zip(read("cpu.cfs_period_us"))
                    .and_then(|(quota, period)| cfs_cores(&quota, &period))
            }
        };
        if let Some(here) = here {
            quota = Some(quota.map_or(here, |q| q.min(here)));
        }
        if dir == mount || !dir.pop() || !dir.starts_with(&mount) {
            break;
        }
    }
    quota
}

/// Which cgroup hierarchy a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    /// The unified hierarchy (`0::/path`).
    V2,
    /// The v1 hierarchy that has the `cpu` controller.
    V1,
}

/// This process's cgroup from `/proc/self/cgroup`: the v1 hierarchy with
/// the `cpu` controller if there is one (its quota is what applies), else
/// the unified one.
fn own_cgroup(proc_self_cgroup: &str) -> Option<(CgroupVersion, &str)> {
    let mut unified = None;
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            unified = Some((CgroupVersion::V2, path));
        } else if controllers.split(',').any(|c| c == "cpu") {
            return Some((CgroupVersion::V1, path));
        }
    }
    unified
}

/// Where the hierarchy is mounted, from `/proc/self/mountinfo`: the root
/// of the mounted subtree (field 4) and the mount point (field 5).
fn cgroup_mount(mountinfo: &str, version: CgroupVersion) -> Option<(&str, PathBuf)> {
    for line in mountinfo.lines() {
        // Optional fields end at " - "; then the type, source, options.
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let mut tail = after.split(' ');
        let (Some(fstype), Some(_source), Some(options)) = (tail.next(), tail.next(), tail.next())
        else {
            continue;
        };
        let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let matches = match version {
            CgroupVersion::V2 => fstype == "cgroup2",
            CgroupVersion::V1 => fstype == "cgroup" && options.split(',').any(|o| o == "cpu"),
        };
        if matches {
            return Some((root, PathBuf::from(unescape_mount(mount))));
        }
    }
    None
}

/// Mount points in mountinfo escape space, tab, newline and backslash as
/// octal (`\040`).
fn unescape_mount(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whole cores from a v2 `cpu.max` (`"max 100000"`: no limit;
/// `"150000 100000"`: 2 cores, rounded up).
fn cpu_max_cores(text: &str) -> Option<usize> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    let period: u64 = fields.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if quota == "max" {
        return None;
    }
    quota_cores(quota.parse().ok()?, period)
}

/// Whole cores from v1 `cpu.cfs_quota_us` (-1: no limit) and
/// `cpu.cfs_period_us`.
fn cfs_cores(quota: &str, period: &str) -> Option<usize> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: u64 = period.trim().parse().ok()?;
    quota_cores(u64::try_from(quota).ok()?, period)
}

fn quota_cores(quota: u64, period: u64) -> Option<usize> {
    if quota == 0 || period == 0 {
        return None;
    }
    usize::try_from(quota.div_ceil(period))
        .ok()
        .map(|c| c.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_cores_and_at_least_one() {
        assert_eq!(io_threads_for(1), 1);
        assert_eq!(io_threads_for(2), 1);
        assert_eq!(io_threads_for(7), 1);
        assert_eq!(io_threads_for(8), 2);
        assert_eq!(io_threads_for(64), 16);
    }

    #[test]
    fn cpu_max_rounds_a_fraction_of_a_core_up_and_max_is_no_limit() {
        assert_eq!(cpu_max_cores("max 100000\n"), None);
        assert_eq!(cpu_max_cores("150000 100000\n"), Some(2));
        assert_eq!(cpu_max_cores("50000 100000\n"), Some(1));
        assert_eq!(cpu_max_cores("400000 100000\n"), Some(4));
        assert_eq!(cfs_cores("-1\n", "100000\n"), None);
        assert_eq!(cfs_cores("300000\n", "100000\n"), Some(3));
    }

    #[test]
    fn the_cgroup_is_the_cpu_controllers_v1_hierarchy_else_the_unified_one() {
        assert_eq!(
            own_cgroup("0::/system.slice/hostmux.service\n"),
            Some((CgroupVersion::V2, "/system.slice/hostmux.service"))
        );
        let hybrid = "12:memory:/a\n4:cpu,cpuacct:/b/c\n0::/d\n";
        assert_eq!(own_cgroup(hybrid), Some((CgroupVersion::V1, "/b/c")));
        assert_eq!(own_cgroup(""), None);
    }

    #[test]
    fn the_mount_is_found_by_type_with_its_root_and_escapes() {
        let mountinfo = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
31 25 0:27 /sub /mnt/cg\\040v1 rw - cgroup cgroup rw,cpu,cpuacct
";
        assert_eq!(
            cgroup_mount(mountinfo, CgroupVersion::V2),
            Some(("/", PathBuf::from("/sys/fs/cgroup")))
        );
        assert_eq!(
            cgroup_mount(mountinfo, CgroupVersion::V1),
            Some(("/sub", PathBuf::from("/mnt/cg v1")))
        );
    }

    #[test]
    fn this_machine_has_at_least_one_core_and_one_io_thread() {
        let cores = available_cores();
        assert!(cores >= 1);
        assert!(cores <= rustix::thread::sched_getaffinity(None).unwrap().count() as usize);
        assert_eq!(default_io_threads(), io_threads_for(cores));
    }
}
