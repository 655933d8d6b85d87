//! Network namespaces and veth pairs that tests create, name uniquely and
//! remove again, also when the test panics.

use std::process::Command;

use pnet_datalink::{Channel, DataLinkSender};

use crate::{
    leftovers::{self, Claim, Kind},
    unique_suffix,
};

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs a command, panicking with its output on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A veth pair in the current namespace; both ends up, IPv6 off (no
/// router solicitations or MLD reports in captures).
pub struct VethPair {
    pub a: String,
    pub b: String,
    _claim: Claim,
}

impl VethPair {
    pub fn new(tag: &str) -> Self {
        let suffix = unique_suffix();
        let a = format!("o5{tag}{suffix}a");
        let b = format!("o5{tag}{suffix}b");
        assert!(a.len() <= 15, "interface name {a} too long");
        let claim = leftovers::claim(Kind::Veth, &a);
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        let pair = Self {
            a,
            b,
            _claim: claim,
        };
        for end in [&pair.a, &pair.b] {
            run(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{end}.disable_ipv6=1")],
            );
            ip(&["link", "set", end, "up"]);
        }
        pair
    }

    /// An AF_PACKET sender on end `a` (pnet).
    pub fn sender_a(&self) -> Box<dyn DataLinkSender> {
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == self.a)
            .expect("veth end exists");
        match pnet_datalink::channel(&iface, pnet_datalink::Config::default()) {
            Ok(Channel::Ethernet(tx, _rx)) => tx,
            Ok(_) => panic!("unexpected channel type"),
            Err(e) => panic!("AF_PACKET on {}: {e}", self.a),
        }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end removes both.
        let _ = Command::new("ip").args(["link", "del", &self.a]).output();
    }
}
