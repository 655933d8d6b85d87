//! Builds the XDP program with Debian's rustc (the `debian` rustup toolchain,
//! see scripts/setup-toolchain.sh) and leaves the object in OUT_DIR, where
//! `op25b_agent::dataplane` embeds it.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf = Package {
        name: "op25b-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../op25b-ebpf"),
        ..Package::default()
    };
    println!("cargo:rerun-if-changed=../op25b-common/src");
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    println!("cargo:rustc-env=OP25B_GIT_REVISION={revision}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    aya_build::build_ebpf([ebpf], Toolchain::Custom("debian"))
}
