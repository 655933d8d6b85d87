//! Which build of the program an interface runs: the one-buffer build
//! where the MTU fits one buffer, the frags-aware build where the driver
//! refuses the other for the MTU, or everywhere with `jumbo_frames`. Real
//! TCP through the netns lab (veth, native XDP). Needs root.
use std::{process::Command, time::Duration};

use op25b_tests::{
    fixtures::{DYN4, EXEMPT4, OUTSIDE4 as MX4},
    lab::Lab,
};

/// The build the metrics say `iface` runs (`None`: no build reported).
fn program_build(lab: &Lab, iface: &str) -> Option<String> {
    let metrics = lab.http_get("/metrics").expect("metrics endpoint");
    let prefix = format!("op25b_interface_program{{interface=\"{iface}\",program=\"");
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let (build, value) = rest.split_once("\"}")?;
        (value.trim() == "1").then(|| build.to_owned())
    })
}

/// Sets the MTU of both ends of the subscriber link; false if the kernel
/// refused either.
fn set_link_mtu(lab: &Lab, mtu: u32) -> bool {
    let mtu = mtu.to_string();
    [('s', "s0"), ('r', "r0")].iter().all(|(role, end)| {
        Command::new("ip")
            .args(["-n", &lab.ns(*role), "link", "set", "dev"])
            .arg(format!("{}{end}", lab.name))
            .args(["mtu", &mtu])
            .status()
            .unwrap()
            .success()
    })
}

/// `op25b-agent status --json`'s entry for `iface`.
fn interface_status(lab: &Lab, iface: &str) -> serde_json::Value {
    let status = lab.status();
    status["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == iface))
        .cloned()
        .unwrap_or_else(|| panic!("{iface} not in the status: {status}"))
}

fn ask_for_jumbo_frames(lab: &Lab, iface: &str) {
    lab.edit_config(
        &format!("name = \"{iface}\"\n"),
        &format!("name = \"{iface}\"\njumbo_frames = true\n"),
    );
}

fn assert_enforces(lab: &Lab) {
    assert!(!lab.connects(DYN4, MX4, 25, 1.0), "{DYN4} reached {MX4}:25");
    assert!(lab.connects(DYN4, MX4, 587, 2.0), "{DYN4} could not submit");
    assert!(lab.connects(EXEMPT4, MX4, 25, 2.0), "{EXEMPT4} was blocked");
}

fn wait_for_build(lab: &Lab, iface: &str, build: &str) {
    lab.wait_for(
        Duration::from_secs(10),
        &format!("{iface} to run {build}"),
        |lab| program_build(lab, iface).as_deref() == Some(build),
    );
}

#[test]
fn the_one_buffer_build_runs_where_the_mtu_fits_and_holds_the_mtu_there() {
    let mut lab = Lab::up(&[]);
    let r0 = format!("{}r0", lab.name);
    lab.start_agent();
    wait_for_build(&lab, &r0, "one_buffer");
    let iface = interface_status(&lab, &r0);
    assert_eq!(iface["program"], "one_buffer", "{iface}");
    assert_enforces(&lab);
    // The kernel keeps the MTU within one buffer under this build: raising
    // it is refused rather than handing the program a frame it cannot read.
    assert!(
        !set_link_mtu(&lab, 9000),
        "the MTU grew past one buffer under the one-buffer build"
    );
    assert_enforces(&lab);
}

#[test]
fn a_jumbo_mtu_gets_the_frags_aware_build_in_native_mode() {
    let mut lab = Lab::up(&[]);
    let r0 = format!("{}r0", lab.name);
    assert!(
        set_link_mtu(&lab, 9000),
        "the lab's veth pair takes MTU 9000"
    );
    lab.start_agent();
    wait_for_build(&lab, &r0, "multi_buffer");
    let iface = interface_status(&lab, &r0);
    assert_eq!(iface["mode"], "driver", "{iface}");
    assert_eq!(iface["program"], "multi_buffer", "{iface}");
    assert!(
        lab.log()
            .contains("the driver refused the one-buffer build"),
        "the fallback is not explained in the log:\n{}",
        lab.log()
    );
    assert_enforces(&lab);
}

#[test]
fn jumbo_frames_keeps_the_mtu_free_to_grow_while_attached() {
    let mut lab = Lab::up(&[]);
    let r0 = format!("{}r0", lab.name);
    ask_for_jumbo_frames(&lab, &r0);
    lab.start_agent();
    wait_for_build(&lab, &r0, "multi_buffer");
    assert!(
        set_link_mtu(&lab, 9000),
        "the MTU could not grow under the frags-aware build"
    );
    assert_enforces(&lab);
}

#[test]
fn turning_jumbo_frames_on_swaps_the_build_in_place() {
    let mut lab = Lab::up(&[]);
    let r0 = format!("{}r0", lab.name);
    lab.start_agent();
    wait_for_build(&lab, &r0, "one_buffer");
    let before = lab.xdp_prog_id(&r0).expect("attached");
    ask_for_jumbo_frames(&lab, &r0);
    lab.signal_agent(libc::SIGHUP);
    wait_for_build(&lab, &r0, "multi_buffer");
    let after = lab.xdp_prog_id(&r0).expect("still attached");
    assert_ne!(before, after, "the program behind the link did not change");
    assert!(
        !lab.log().contains("xdp_mode changed"),
        "swapping the build must not re-attach:\n{}",
        lab.log()
    );
    assert_enforces(&lab);
}
