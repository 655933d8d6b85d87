//! The kernel's link notifications (rtnetlink, RTMGRP_LINK): an interface
//! that is created, recreated or removed wakes the agent loop at once, so a
//! recreated interface is attached within milliseconds, not at the next
//! poll (which stays, as a backstop).

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::Arc,
};

use crate::wake::Waker;

/// Opens a NETLINK_ROUTE socket subscribed to link events.
fn subscribe() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = u16::try_from(libc::AF_NETLINK).expect("small");
    address.nl_groups = u32::try_from(libc::RTMGRP_LINK).expect("small");
    // SAFETY: a valid sockaddr_nl of the size given, on a socket we own.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&address).cast(),
            u32::try_from(std::mem::size_of::<libc::sockaddr_nl>()).expect("small"),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Rings `waker` at every link notification, from a thread of its own.
/// Without netlink (it should not happen) the loop's polling still works.
pub fn spawn(waker: Arc<Waker>) {
    let fd = match subscribe() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("no link notifications ({e}): interfaces are checked every second");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("link-events".into())
        .spawn(move || {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                // SAFETY: reads into a buffer we own, of the length given.
                let n = unsafe {
                    libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0)
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    // ENOBUFS: notifications were lost; a wake-up covers them all.
                    if e.raw_os_error() != Some(libc::ENOBUFS)
                        && e.kind() != std::io::ErrorKind::Interrupted
                    {
                        tracing::warn!(
                            "link notifications stopped ({e}): interfaces are checked every second"
                        );
                        return;
                    }
                }
                waker.wake(|r| r.link = true);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no link notifications ({e}): interfaces are checked every second");
    }
}
