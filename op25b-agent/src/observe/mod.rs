//! What op25b tells the people who run it: Prometheus series (`metrics`),
//! readiness, block events (`events`, `event_log`), the top offending
//! sources (`top`), what the kernel enforces now (`status`) and who holds
//! an address (`sessions`).

pub mod event_log;
pub mod events;
pub mod log_limit;
pub mod metrics;
pub mod readiness;
pub mod sessions;
pub mod status;
pub mod top;
