//! Block events from the kernel's ring buffer to the abuse desk: JSON lines
//! in a file (rotated by size, reopened on SIGUSR1 for logrotate) and the
//! top-sources sketch.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write as _},
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

use crate::{config::EventsConfig, telemetry::Telemetry};

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
        }
    }
}

/// The event log file with size-based rotation.
struct EventLog {
    path: PathBuf,
    file: BufWriter<File>,
    written: u64,
    max_bytes: u64,
    max_files: u32,
}

impl EventLog {
    fn open(path: &Path, max_bytes: u64, max_files: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file: BufWriter::new(file),
            written,
            max_bytes,
            max_files,
        })
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        *self = Self::open(&self.path, self.max_bytes, self.max_files)?;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..self.max_files).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.reopen()
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        if self.max_bytes > 0
            && self.written + line.len() as u64 + 1 > self.max_bytes
            && self.written > 0
        {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }
}

/// Reads the pinned ring buffer until `stop`; run on its own thread.
pub fn pump(
    maps_dir: &Path,
    config: &EventsConfig,
    telemetry: &Telemetry,
    reopen: &AtomicBool,
    stop: &AtomicBool,
) {
    let ring_path = maps_dir.join(MAP_EVENTS);
    let ring = match MapData::from_pin(&ring_path) {
        Ok(data) => Map::RingBuf(data),
        Err(e) => {
            tracing::error!("no block events: cannot open {}: {e}", ring_path.display());
            return;
        }
    };
    let mut ring = match RingBuf::try_from(ring) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("no block events: {e}");
            return;
        }
    };
    let mut log = config.path.as_ref().and_then(|p| {
        match EventLog::open(p, config.max_file_bytes, config.max_files) {
            Ok(log) => Some(log),
            Err(e) => {
                tracing::error!(
                    "cannot open event log {}: {e}; events feed only `top`",
                    p.display()
                );
                None
            }
        }
    });
    while !stop.load(Ordering::Relaxed) {
        if reopen.swap(false, Ordering::Relaxed) {
            if let Some(log) = log.as_mut() {
                match log.reopen() {
                    Ok(()) => tracing::info!("event log reopened"),
                    Err(e) => tracing::error!("reopening event log: {e}"),
                }
            }
        }
        let mut drained = 0;
        while let Some(item) = ring.next() {
            drained += 1;
            if item.len() < size_of::<BlockEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a BlockEvent (repr(C), plain integers) here.
            let event: BlockEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let interface = telemetry
                .interface_name(event.slot)
                .unwrap_or_else(|| format!("slot{}", event.slot));
            let time = crate::clock::wall_clock(event.monotonic_ns);
            let record = EventRecord::from_kernel(&event, interface, time);
            let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            telemetry.top.lock().expect("not poisoned").record(
                record.src,
                record.dst,
                record.attempts,
                seconds,
            );
            if let Some(log) = log.as_mut() {
                let line = serde_json::to_string(&record).expect("event serializes");
                if let Err(e) = log.write(&line) {
                    telemetry.events_unwritten.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("event log: {e}");
                }
            }
        }
        if let Some(log) = log.as_mut() {
            let _ = log.file.flush();
        }
        if drained == 0 {
            // Sleep until the kernel signals data (or 200 ms, to check flags).
            let mut pfd = libc::pollfd {
                fd: ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&raw mut pfd, 1, 200) };
        }
    }
}

/// Starts the pump on a thread; returns the flags to reopen the log and stop.
pub fn spawn(
    maps_dir: PathBuf,
    config: EventsConfig,
    telemetry: Arc<Telemetry>,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let reopen = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, s) = (Arc::clone(&reopen), Arc::clone(&stop));
    let handle = std::thread::Builder::new()
        .name("events".into())
        .spawn(move || pump(&maps_dir, &config, &telemetry, &r, &s))
        .expect("spawn events thread");
    (reopen, stop, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("op25b-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let mut log = EventLog::open(&path, 100, 2).unwrap();
        for i in 0..20 {
            log.write(&format!(
                "{{\"n\":{i:04},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}"
            ))
            .unwrap();
        }
        log.file.flush().unwrap();
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        assert!(size(&path) <= 100, "current file over the limit");
        assert!(size(&dir.join("events.jsonl.1")) > 0 && size(&dir.join("events.jsonl.2")) > 0);
        assert!(
            !dir.join("events.jsonl.3").exists(),
            "more than max_files kept"
        );
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.contains("\"n\":0019"), "{newest}");
        let _ = std::fs::remove_dir_all(&dir);
    }

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
            (r.vlan, r.pppoe_session, r.attempts, r.reason),
            (vec![100, 200], Some(0x1234), 3, "blocked")
        );
    }
}
