//! Block events from the kernel's ring buffer to the abuse desk: JSON lines
//! in a file (rotated by size, reopened on SIGUSR1 for logrotate) and the
//! top-sources sketch.

use std::{
    net::{IpAddr, Ipv6Addr},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::{Map, MapData, RingBuf};
use op25b_common::{
    abi::{BlockEvent, EVENT_FLAG_PPPOE, MAP_EVENTS},
    Reason,
};
use serde::Serialize;

use super::{
    event_log::{EventLog, Unwritten},
    log_limit::LogLimiter,
    metrics::Telemetry,
    sessions::SessionLookup,
};
use crate::config::EventsConfig;

/// One event as written to the log.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct EventRecord {
    pub time: String,
    pub interface: String,
    pub reason: &'static str,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Attempts from `src` this event stands for (the first one plus those
    /// the per-source rate limit folded in since the previous event).
    pub attempts: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlan: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pppoe_session: Option<u16>,
    /// The RADIUS User-Name holding `src`, when a session does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    /// That session, `NAS/Acct-Session-Id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

fn unmap(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

impl EventRecord {
    /// `time` is the event's wall-clock time ([`crate::clock::wall_clock`]).
    pub fn from_kernel(e: &BlockEvent, interface: String, time: SystemTime) -> Self {
        Self {
            time: humantime::format_rfc3339_millis(time).to_string(),
            interface,
            reason: Reason::from_index(e.reason).map_or("unknown", Reason::name),
            src: unmap(e.src),
            dst: unmap(e.dst),
            src_port: e.src_port,
            dst_port: e.dst_port,
            attempts: e.attempts,
            vlan: e.vlan_ids[..(e.vlan_count as usize).min(2)].to_vec(),
            pppoe_session: (e.flags & EVENT_FLAG_PPPOE != 0).then_some(e.pppoe_session),
            subscriber: None,
            session: None,
        }
    }
}

/// The running event pump: its thread and the flags that steer it.
pub struct EventsHandle {
    reopen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EventsHandle {
    /// Starts the pump on its own thread.
    pub fn spawn(
        maps_dir: PathBuf,
        config: EventsConfig,
        telemetry: Arc<Telemetry>,
        sessions: Option<Arc<dyn SessionLookup>>,
    ) -> Self {
        let reopen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&reopen), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || pump(&maps_dir, &config, &telemetry, sessions, &r, &s))
            .expect("spawn events thread");
        Self {
            reopen,
            stop,
            thread: Some(thread),
        }
    }

    /// Set (by SIGUSR1, logrotate's postrotate) to reopen the event log.
    pub fn reopen_flag(&self) -> &Arc<AtomicBool> {
        &self.reopen
    }

    /// Stops the pump after its current batch and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the pinned ring buffer until `stop`; run on its own thread.
fn pump(
    maps_dir: &Path,
    config: &EventsConfig,
    telemetry: &Telemetry,
    sessions: Option<Arc<dyn SessionLookup>>,
    reopen: &AtomicBool,
    stop: &AtomicBool,
) {
    let Some(mut pump) = Pump::open(maps_dir, config, telemetry) else {
        return;
    };
    pump.sessions = sessions;
    while !stop.load(Ordering::Relaxed) {
        if reopen.swap(false, Ordering::Relaxed) {
            pump.reopen_log();
        }
        let drained = pump.drain();
        pump.flush_log();
        if drained == 0 {
            pump.wait_for_events();
        }
    }
}

/// The ring buffer, the log and where counts go.
struct Pump<'a> {
    ring: RingBuf<MapData>,
    log: Option<EventLog>,
    telemetry: &'a Telemetry,
    /// Events lost to a failing disk are counted each, logged rarely.
    log_failures: LogLimiter,
    /// Names the subscriber and session of a source (RADIUS), when known.
    sessions: Option<Arc<dyn SessionLookup>>,
}

/// How often a failing event log is reported in the agent's own log.
const LOG_FAILURE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl<'a> Pump<'a> {
    fn open(maps_dir: &Path, config: &EventsConfig, telemetry: &'a Telemetry) -> Option<Self> {
        let ring_path = maps_dir.join(MAP_EVENTS);
        let ring = MapData::from_pin(&ring_path)
            .map_err(|e| e.to_string())
            .and_then(|data| RingBuf::try_from(Map::RingBuf(data)).map_err(|e| e.to_string()));
        let ring = match ring {
            Ok(ring) => ring,
            Err(e) => {
                tracing::error!("no block events: cannot open {}: {e}", ring_path.display());
                return None;
            }
        };
        let log = config.path.as_ref().and_then(|p| {
            EventLog::open(p, config.max_file_bytes, config.max_files)
                .map_err(|e| {
                    tracing::error!(
                        "cannot open event log {}: {e}; events feed only `top`",
                        p.display()
                    );
                })
                .ok()
        });
        Some(Self {
            ring,
            log,
            telemetry,
            log_failures: LogLimiter::new(LOG_FAILURE_INTERVAL),
            sessions: None,
        })
    }

    fn reopen_log(&mut self) {
        let Some(log) = self.log.as_mut() else {
            return;
        };
        match log.reopen() {
            Ok(()) => tracing::info!("event log reopened"),
            Err(lost) => self.lost(&lost),
        }
    }

    /// Counts events the log could not take; says so at a bounded rate.
    fn lost(&mut self, lost: &Unwritten) {
        self.telemetry
            .events_unwritten
            .fetch_add(lost.lines, Ordering::Relaxed);
        if let Some(folded) = self.log_failures.admit(std::time::Instant::now()) {
            let path = self.log.as_ref().map(|l| l.path().display().to_string());
            tracing::warn!(
                "event log {}: {}: {} events not written ({folded} more failures since the last message; all counted in op25b_events_lost_total)",
                path.unwrap_or_default(),
                lost.error,
                lost.lines
            );
        }
    }

    /// Handles every event waiting in the ring; returns how many there were.
    fn drain(&mut self) -> usize {
        let mut drained = 0;
        loop {
            let Some(item) = self.ring.next() else {
                return drained;
            };
            drained += 1;
            let event = decode(&item);
            drop(item);
            if let Some(event) = event {
                self.handle(&event);
            }
        }
    }

    fn handle(&mut self, event: &BlockEvent) {
        let interface = self
            .telemetry
            .interface_name(event.slot)
            .unwrap_or_else(|| format!("slot{}", event.slot));
        let time = crate::clock::wall_clock(event.monotonic_ns);
        let mut record = EventRecord::from_kernel(event, interface, time);
        if let Some(label) = self.sessions.as_ref().and_then(|s| s.label_of(record.src)) {
            record.subscriber = Some(label.subscriber);
            record.session = Some(label.session);
        }
        let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.telemetry.top.lock().expect("not poisoned").record(
            record.src,
            record.dst,
            record.attempts,
            seconds,
        );
        if let Some(log) = self.log.as_mut() {
            let line = serde_json::to_string(&record).expect("event serializes");
            if let Err(lost) = log.write(&line) {
                self.lost(&lost);
            }
        }
    }

    fn flush_log(&mut self) {
        if let Some(Err(lost)) = self.log.as_mut().map(EventLog::flush) {
            self.lost(&lost);
        }
    }

    /// Sleeps until the kernel signals data, or 200 ms (to check the flags).
    fn wait_for_events(&self) {
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, on a descriptor this struct owns.
        unsafe { libc::poll(&raw mut pfd, 1, 200) };
    }
}

/// A ring-buffer item as the kernel wrote it; `None` if it is too short.
fn decode(item: &[u8]) -> Option<BlockEvent> {
    if item.len() < size_of::<BlockEvent>() {
        return None;
    }
    // SAFETY: the length is checked above and BlockEvent is repr(C) plain
    // integers, valid for any bytes; read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_events_become_records() {
        let mut e = BlockEvent {
            attempts: 3,
            slot: 1,
            reason: Reason::Blocked.index(),
            vlan_count: 2,
            vlan_ids: [100, 200],
            src_port: 40000,
            dst_port: 25,
            pppoe_session: 0x1234,
            flags: EVENT_FLAG_PPPOE,
            ..BlockEvent::default()
        };
        e.src[10..16].copy_from_slice(&[0xff, 0xff, 100, 64, 1, 2]);
        e.dst = "2001:db8::25".parse::<Ipv6Addr>().unwrap().octets();
        let r = EventRecord::from_kernel(&e, "eth1".into(), SystemTime::now());
        assert_eq!(r.src, "100.64.1.2".parse::<IpAddr>().unwrap());
        assert_eq!(r.dst, "2001:db8::25".parse::<IpAddr>().unwrap());
        assert_eq!(
            (r.vlan.clone(), r.pppoe_session, r.attempts, r.reason),
            (vec![100, 200], Some(0x1234), 3, "blocked")
        );
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            !line.contains("subscriber") && !line.contains("\"session\""),
            "absent fields are left out: {line}"
        );
        let r = EventRecord {
            subscriber: Some("alice@example.jp".into()),
            session: Some("bng1/s1".into()),
            ..r
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            line.contains(r#""subscriber":"alice@example.jp","session":"bng1/s1""#),
            "{line}"
        );
    }
}
