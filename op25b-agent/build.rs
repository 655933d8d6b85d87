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
    aya_build::build_ebpf([ebpf], Toolchain::Custom("debian"))?;
    // The program's build identity for --version: FNV-1a of the object.
    let out_dir =
        std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = std::fs::read(out_dir.join("op25b")).unwrap_or_default();
    let hash = object.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    println!("cargo:rustc-env=OP25B_PROGRAM_ID={hash:016x}");
    Ok(())
}
