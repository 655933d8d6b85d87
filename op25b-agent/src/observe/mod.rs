//! What op25b tells the people who run it: Prometheus series (`metrics`),
//! readiness, block events (`events`, `event_log`), the top offending
//! sources (`top`) and what the kernel enforces now (`status`).

pub mod event_log;
pub mod events;
pub mod log_limit;
pub mod metrics;
pub mod readiness;
pub mod status;
pub mod top;
