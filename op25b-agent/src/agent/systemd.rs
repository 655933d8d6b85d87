//! sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.

use std::os::unix::net::UnixDatagram;

/// Tells systemd (Type=notify) the agent is ready; a no-op elsewhere.
pub fn notify_ready() {
    notify("READY=1");
}

pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::warn!("sd_notify {state}: {e}");
    }
}
