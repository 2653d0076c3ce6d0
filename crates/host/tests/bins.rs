//! The proc crate's binaries (`hostmux-echo`, `hostmux-sink`,
//! `hostmux-proc-fixture`) for tests with real OS procs.
//!
//! `env!("CARGO_BIN_EXE_…")` works only for a package's own binaries, so
//! the first test that needs one runs `cargo build -p hostmux-proc --bins`
//! (same target directory and profile as this test binary; cargo has
//! released its build lock by the time tests run) and uses the binaries it
//! leaves in `target/<profile>/`. Under `cargo test --workspace` they are
//! already built and this is a no-op check.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>`: the test executable lives in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps")
        .to_owned()
}

fn build_once() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = profile_dir();
        let target_dir = profile_dir.parent().expect("target dir").to_owned();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "hostmux-proc",
                "--bins",
                "--manifest-path",
            ])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(other) => {
                build.args(["--profile", other]);
            }
            None => panic!("cannot tell the cargo profile from {profile_dir:?}"),
        }
        let status = build
            .status()
            .expect("running cargo to build hostmux-proc's binaries");
        assert!(
            status.success(),
            "cargo build -p hostmux-proc --bins failed: {status}"
        );
        profile_dir
    })
}

/// The path of one of hostmux-proc's binaries, built if need be.
pub(crate) fn proc_bin(name: &str) -> PathBuf {
    let path = build_once().join(name);
    assert!(
        path.exists(),
        "{path:?} missing after building hostmux-proc's binaries"
    );
    path
}
