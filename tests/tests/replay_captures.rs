//! `op25b-agent replay` on captures written by other tools: scapy (pcap and
//! pcapng) and tcpdump (frames injected with pnet over AF_PACKET on a veth
//! pair this test creates). Needs root, /usr/bin/python3 with scapy, tcpdump.
use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use op25b_tests::{
    agent_bin, fixtures, netns::VethPair, require_root, write_standard_config, TempDir,
};

/// Runs replay and returns (frame number, action, reason) per stdout line.
fn replay(
    config: &std::path::Path,
    capture: &std::path::Path,
) -> (Vec<(u64, String, String)>, String) {
    let out = Command::new(agent_bin())
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg(capture)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay failed: {stderr}");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(
                v.as_object().unwrap().len(),
                3,
                "exactly frame, action, reason: {line}"
            );
            (
                v["frame"].as_u64().unwrap(),
                v["action"].as_str().unwrap().to_owned(),
                v["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (lines, stderr)
}

fn write_with_scapy(frames: &[Vec<u8>], path: &std::path::Path, writer: &str) {
    let script = format!(
        "import sys\nfrom scapy.all import Ether, {writer}\nframes=[Ether(bytes.fromhex(l)) for l in sys.stdin.read().split()]\n{writer}(sys.argv[1], frames)\n"
    );
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3 with scapy");
    let hex: String = frames
        .iter()
        .map(|f| f.iter().fold(String::new(), |s, b| s + &format!("{b:02x}")) + "\n")
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(hex.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "scapy could not write {}",
        path.display()
    );
}

fn check_scapy(writer: &str, file: &str) {
    require_root();
    let dir = TempDir::new("replay");
    let config = write_standard_config(dir.path());
    let table = fixtures::standard();
    let frames: Vec<Vec<u8>> = table.iter().map(|f| f.frame.clone()).collect();
    let capture = dir.path().join(file);
    write_with_scapy(&frames, &capture, writer);
    let (lines, stderr) = replay(&config, &capture);
    assert_eq!(lines.len(), table.len(), "one line per frame");
    for (i, (f, (n, action, reason))) in table.iter().zip(&lines).enumerate() {
        assert_eq!(*n, i as u64 + 1);
        assert_eq!(
            (action.as_str(), reason.as_str()),
            (f.expect.action().name(), f.expect.name()),
            "frame {n}: {}",
            f.name
        );
    }
    assert!(
        stderr.contains("instructions processed by the verifier"),
        "{stderr}"
    );
    let blocked = table
        .iter()
        .filter(|f| f.expect == op25b_common::Reason::Blocked)
        .count();
    assert!(
        stderr.contains(&format!("blocked          drop {blocked}")),
        "{stderr}"
    );
}

#[test]
fn scapy_pcap() {
    check_scapy("wrpcap", "scapy.pcap");
}

#[test]
fn scapy_pcapng() {
    check_scapy("wrpcapng", "scapy.pcapng");
}

#[test]
fn tcpdump_capture_of_injected_frames() {
    require_root();
    let dir = TempDir::new("tcpdump");
    let config = write_standard_config(dir.path());
    let veth = VethPair::new("rp");
    let capture = dir.path().join("tcpdump.pcap");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-i", &veth.b, "-w"])
        .arg(&capture)
        .args(["-U", "-n", "--immediate-mode"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    // tcpdump says "listening on" once its socket is up.
    let mut stderr = tcpdump.stderr.take().unwrap();
    let mut buf = [0u8; 256];
    let _ = std::io::Read::read(&mut stderr, &mut buf);

    let table = fixtures::standard();
    let mut tx = veth.sender_a();
    for f in &table {
        tx.send_to(&f.frame, None).unwrap().unwrap();
        // Pace the frames: veth hands them to the peer's per-CPU backlog.
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tcpdump.id().cast_signed(), libc::SIGINT) };
    tcpdump.wait().unwrap();

    let (lines, _) = replay(&config, &capture);
    // Match captured frames back to fixtures by content (the kernel may add
    // its own frames; those are not judged here).
    let captured = read_pcap_frames(&capture);
    assert_eq!(captured.len(), lines.len());
    let mut matched = 0;
    for (frame, (_, action, reason)) in captured.iter().zip(&lines) {
        if let Some(f) = table.iter().find(|f| &f.frame == frame) {
            assert_eq!(
                (action.as_str(), reason.as_str()),
                (f.expect.action().name(), f.expect.name()),
                "{}",
                f.name
            );
            matched += 1;
        }
    }
    assert_eq!(
        matched,
        table.len(),
        "not every injected frame came back through tcpdump"
    );
}

fn read_pcap_frames(path: &std::path::Path) -> Vec<Vec<u8>> {
    let mut capture = op25b_agent::tools::capture::Capture::open(path).unwrap();
    let mut frames = Vec::new();
    while let Some(f) = capture.next_frame() {
        frames.push(f.unwrap().data);
    }
    frames
}

/// `replay --live` judges with the running agent's pinned policy, and sees
/// a live change; `explain` without a loaded op25b judges with --config.
#[test]
fn replay_live_follows_the_pinned_policy_and_explain_falls_back_to_the_config() {
    use op25b_tests::frame::FrameSpec;
    let mut lab = op25b_tests::lab::Lab::up(&[]);
    lab.start_agent();
    let ip = |s: &str| s.parse().unwrap();
    let frames = vec![
        FrameSpec::tcp_syn(ip(fixtures::DYN4), ip(fixtures::OUTSIDE4), 25).build(),
        FrameSpec::tcp_syn(ip(fixtures::EXEMPT4), ip(fixtures::OUTSIDE4), 25).build(),
    ];
    let capture = lab.dir.path().join("live.pcap");
    write_with_scapy(&frames, &capture, "wrpcap");
    let live = |lab: &op25b_tests::lab::Lab| -> Vec<String> {
        let out = Command::new(agent_bin())
            .args(["replay", "--live", "--pin-path"])
            .arg(&lab.pin)
            .arg(&capture)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("judged against the live maps"));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        live(&lab),
        [
            r#"{"frame":1,"action":"drop","reason":"blocked"}"#,
            r#"{"frame":2,"action":"pass","reason":"src_exempt"}"#
        ]
    );
    let list = lab.dir.path().join("lists/exempt.txt");
    let text = std::fs::read_to_string(&list).unwrap();
    std::fs::write(&list, format!("{text}{}/32\n", fixtures::DYN4)).unwrap();
    lab.wait_for(
        Duration::from_secs(3),
        "replay --live to see the new exemption",
        |l| live(l)[0].contains("src_exempt"),
    );

    // Nothing pinned at this path: explain judges with the configuration.
    let out = Command::new(agent_bin())
        .args([
            "explain",
            "100.64.1.3",
            fixtures::OUTSIDE4,
            "--pin-path",
            "/sys/fs/bpf/op25b-nothing-here",
            "--config",
        ])
        .arg(&lab.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("drop (blocked)")
            && text.contains("against the policy of")
            && text.contains("yes (100.64.0.0/10)"),
        "{text}"
    );
    let out = Command::new(agent_bin())
        .args(["explain", fixtures::DYN4, "2001:db8::1", "--config"])
        .arg(&lab.config)
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("different address families")
    );
}
