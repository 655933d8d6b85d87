//! A user-space frame generator for kernels that refuse BPF_PROG_TEST_RUN
//! live frames: one AF_PACKET socket on the tx veth end, the qdisc bypassed,
//! the same frame handed to the driver in `sendmmsg` batches.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// Frames per `sendmmsg` call: amortises the syscall, small enough that a
/// refusal part-way through a batch costs little.
const BATCH: usize = 64;

/// What one [`PacketSender::send`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    /// Frames the generator tried to hand to the device.
    pub attempted: u64,
    /// Of those, frames the device refused (ENOBUFS: its queue was full or
    /// stopped because the receiver fell behind).
    pub refused: u64,
}

pub struct PacketSender {
    socket: OwnedFd,
}

// AF_PACKET is 17: it fits sa_family_t.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const AF_PACKET_FAMILY: libc::sa_family_t = libc::AF_PACKET as libc::sa_family_t;

/// The size of a small C struct as socklen_t.
fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(rc)
    }
}

impl PacketSender {
    /// A raw packet socket bound to `ifindex`. Protocol 0: it sends only,
    /// the kernel queues nothing received to it.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right after.
        let rc = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        let fd = check(rc, "socket(AF_PACKET)")?;
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let bypass: libc::c_int = 1;
        // SAFETY: the option value is a c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                std::ptr::from_ref(&bypass).cast(),
                socklen_of::<libc::c_int>(),
            )
        };
        check(rc, "setsockopt(PACKET_QDISC_BYPASS)")?;
        // SAFETY: a zeroed sockaddr_ll is valid; the fields set below suffice for bind.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = AF_PACKET_FAMILY;
        addr.sll_ifindex = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
        // SAFETY: addr is a sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                socklen_of::<libc::sockaddr_ll>(),
            )
        };
        check(rc, "bind(AF_PACKET)")?;
        Ok(Self { socket })
    }

    /// Hands `frame` to the device `count` times. A frame the device refuses
    /// is counted and not retried, so the generator's pace never depends on
    /// the receiver and `attempted - refused` is what reached the device.
    pub fn send(&self, frame: &[u8], count: u64) -> io::Result<Sent> {
        let mut iov = libc::iovec {
            iov_base: frame.as_ptr().cast_mut().cast(),
            iov_len: frame.len(),
        };
        // SAFETY: mmsghdr is plain data; a zeroed one is valid.
        let mut msgs: Vec<libc::mmsghdr> =
            (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        for m in &mut msgs {
            // The kernel only reads the frame through this iovec.
            m.msg_hdr.msg_iov = &raw mut iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = Sent::default();
        while sent.attempted < count {
            let want =
                usize::try_from(count - sent.attempted).map_or(BATCH, |left| left.min(BATCH));
            // SAFETY: msgs holds `want` initialised headers pointing at `iov`,
            // which points at `frame`; all outlive the call.
            let rc = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    u32::try_from(want).unwrap_or(u32::MAX),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // The device refused the first frame of the batch.
                    Some(libc::ENOBUFS | libc::EAGAIN) => {
                        sent.attempted += 1;
                        sent.refused += 1;
                    }
                    Some(libc::EINTR) => {}
                    _ => return Err(io::Error::new(e.kind(), format!("sendmmsg: {e}"))),
                }
                continue;
            }
            let done = usize::try_from(rc).unwrap_or(0);
            sent.attempted += done as u64;
            // A short batch means the frame after the last one sent was
            // refused (sendmmsg drops that error): count it as refused.
            if done < want {
                sent.attempted += 1;
                sent.refused += 1;
            }
        }
        Ok(sent)
    }
}
