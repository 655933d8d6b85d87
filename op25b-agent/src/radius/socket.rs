//! The listeners' receive buffer. A BNG that restarts sends Accounting-On
//! and then a Start for every subscriber at once; what does not fit in the
//! socket buffer while the agent applies the batch before is dropped by the
//! kernel unseen (the NAS retransmits, seconds later). The default buffer
//! (`net.core.rmem_default`, 208 KiB) holds about 400 full datagrams.

use std::{io, net::UdpSocket, os::fd::AsRawFd};

/// Asks for `bytes` of receive buffer: past `net.core.rmem_max` with
/// CAP_NET_ADMIN (SO_RCVBUFFORCE), else as far as that cap allows. Returns
/// what the socket got, as the kernel counts it (twice the request: it
/// adds room for its own bookkeeping).
pub fn size_receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let wanted = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if set_int(fd, libc::SO_RCVBUFFORCE, wanted).is_err() {
        // No CAP_NET_ADMIN: the kernel clamps this one to rmem_max.
        set_int(fd, libc::SO_RCVBUF, wanted)?;
    }
    get_int(fd, libc::SO_RCVBUF).map(|got| usize::try_from(got).unwrap_or(0))
}

fn set_int(fd: libc::c_int, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid socket fd and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast(),
            socklen_of::<libc::c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int(fd: libc::c_int, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = socklen_of::<libc::c_int>();
    // SAFETY: a valid socket fd; value and len point to live locals of the
    // sizes len says.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            std::ptr::from_mut(&mut value).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).expect("an int's size fits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_gets_the_buffer_asked_for() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = get_int(socket.as_raw_fd(), libc::SO_RCVBUF).unwrap();
        let wanted = 4 << 20;
        let got = size_receive_buffer(&socket, wanted).unwrap();
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Root (the tests' CI user) may pass rmem_max; others get up to it.
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let floor = if root { wanted } else { wanted.min(rmem_max) };
        assert!(
            got >= floor,
            "asked {wanted}, got {got} (rmem_max {rmem_max}, default {before})"
        );
    }
}
