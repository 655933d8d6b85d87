//! BPF_PROG_TEST_RUN by program fd, so op25b, the baselines and a peer
//! loaded by another tool (xdp-filter) are all measured the same way.

use std::os::fd::{AsRawFd as _, BorrowedFd};

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `union bpf_attr`'s `test` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// `struct xdp_md` as context input for live frames.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

fn bpf(attr: &mut TestAttr) -> std::io::Result<()> {
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            std::ptr::from_mut(attr),
            size_of::<TestAttr>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs `frame` `repeat` times; returns (XDP action, average ns per run).
pub fn run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> std::io::Result<(u32, u32)> {
    let mut out = vec![0u8; frame.len() + 512];
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).expect("fd"),
        data_size_in: u32::try_from(frame.len()).expect("frame fits"),
        data_size_out: u32::try_from(out.len()).expect("fits"),
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..TestAttr::default()
    };
    bpf(&mut attr)?;
    Ok((attr.retval, attr.duration))
}

/// Live frames: the program runs `repeat` times on `frame` as if received
/// on `ifindex`, and XDP_TX really transmits it there.
pub fn live(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    batch: u32,
) -> std::io::Result<()> {
    let ctx = XdpMd {
        data_end: u32::try_from(frame.len()).expect("frame fits"),
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).expect("fd"),
        data_size_in: u32::try_from(frame.len()).expect("frame fits"),
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: u32::try_from(size_of::<XdpMd>()).expect("fits"),
        ctx_in: std::ptr::from_ref(&ctx) as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batch,
        ..TestAttr::default()
    };
    bpf(&mut attr)
}

/// Pins this thread to one CPU (test runs execute on the caller's CPU).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

/// Turns `kernel.bpf_stats_enabled` off for the guard's life (it adds ~80 ns a run).
pub struct StatsOff(Option<String>);

impl StatsOff {
    pub fn new() -> Self {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let before = std::fs::read_to_string(path).ok();
        let _ = std::fs::write(path, "0");
        Self(before)
    }
}

impl Drop for StatsOff {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", before.trim());
        }
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
