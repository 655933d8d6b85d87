//! Baselines for op25b-bench, built like the real program: the cheapest
//! XDP program there is (the floor every per-packet cost is compared with),
//! a pass-through for the lab's subscriber side, a receiver that drops
//! everything, and a generator that transmits every
//! frame back out (driven by BPF_PROG_TEST_RUN live frames).
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn xdp_pass_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The lab's pass-through on the subscriber side, frags-aware so it does
/// not cap the MTU of the veth pair (the jumbo-MTU tests raise it).
#[xdp(frags)]
pub fn xdp_pass_any_mtu(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn xdp_drop_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn xdp_tx_generator(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
