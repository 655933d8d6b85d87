//! The run-time settings as the kernel holds them, each value consistent
//! on its own while user space replaces them:
//!
//! - the blocked ports are a bitmap in the program's `.data` (no map lookup
//!   on the pass path); the kernel copies the section without a lock, but
//!   the program reads one byte per packet and every byte is old or new;
//! - the event interval and pool actions live in a `BPF_F_MMAPABLE` array,
//!   one slot each, stored with one atomic store through `mmap`.

use std::{
    os::fd::AsFd as _,
    path::Path,
    sync::atomic::{fence, Ordering},
};

use aya::maps::{Array, Map, MapData};
use op25b_common::{
    abi::{PortBitmap, RuntimeConfig, RuntimeSlots, MAP_RUNTIME, MAX_POOLS, RUNTIME_SLOTS_READY},
    BlockedPorts,
};

use super::{class_writer::ClassError, mmap::Mapping};

/// One page: the least `mmap` maps.
const SLOTS_MAPPING: usize = 4096;
const EVENT_INTERVAL_WORD: usize = std::mem::offset_of!(RuntimeSlots, event_interval_ns) / 8;
const READY_WORD: usize = std::mem::offset_of!(RuntimeSlots, ready) / 8;
const POOL_ACTIONS_BYTE: usize = std::mem::offset_of!(RuntimeSlots, pool_actions);

/// The mapped [`RuntimeSlots`] of a loaded program (or of a pin).
pub struct RuntimeMaps {
    slots: Mapping,
}

impl RuntimeMaps {
    fn map(data: &MapData) -> Result<Self, ClassError> {
        Ok(Self {
            slots: Mapping::new(MAP_RUNTIME, data.fd().as_fd(), SLOTS_MAPPING)?,
        })
    }

    /// Maps the slots of a loaded program; a fresh (all-zero) map gets the
    /// defaults first.
    pub fn open(ebpf: &aya::Ebpf) -> Result<Self, ClassError> {
        let Some(Map::Array(data)) = ebpf.map(MAP_RUNTIME) else {
            return Err(ClassError::MissingMap(MAP_RUNTIME));
        };
        let maps = Self::map(data)?;
        if maps.slots.words()[READY_WORD].load(Ordering::Acquire) != RUNTIME_SLOTS_READY {
            maps.store(&RuntimeConfig::DEFAULT);
        }
        Ok(maps)
    }

    /// Maps pinned slots (no program needed); `None` if absent or unwritten.
    pub fn open_pinned(path: &Path) -> Option<Self> {
        let maps = Self::map(&MapData::from_pin(path).ok()?).ok()?;
        (maps.slots.words()[READY_WORD].load(Ordering::Acquire) == RUNTIME_SLOTS_READY)
            .then_some(maps)
    }

    /// Stores the event interval and every pool action, one atomic store each.
    pub fn store(&self, config: &RuntimeConfig) {
        let (words, bytes) = (self.slots.words(), self.slots.bytes());
        words[EVENT_INTERVAL_WORD].store(config.event_interval_ns, Ordering::Relaxed);
        for (i, &action) in config.pool_actions.iter().enumerate() {
            bytes[POOL_ACTIONS_BYTE + i].store(action, Ordering::Relaxed);
        }
        fence(Ordering::Release);
        words[READY_WORD].store(RUNTIME_SLOTS_READY, Ordering::Release);
    }

    /// (event interval, pool actions) as the program would read them now.
    pub fn load(&self) -> (u64, [u8; MAX_POOLS]) {
        let (words, bytes) = (self.slots.words(), self.slots.bytes());
        let mut actions = [0; MAX_POOLS];
        for (i, action) in actions.iter_mut().enumerate() {
            *action = bytes[POOL_ACTIONS_BYTE + i].load(Ordering::Relaxed);
        }
        (words[EVENT_INTERVAL_WORD].load(Ordering::Relaxed), actions)
    }
}

/// The blocked ports a bitmap holds, as the configuration lists them (the
/// first eight, ascending; the writer never sets more).
pub fn bitmap_ports(bitmap: &PortBitmap) -> BlockedPorts {
    let ports: Vec<u16> = bitmap.ports().take(8).collect();
    BlockedPorts::new(&ports).unwrap_or(BlockedPorts::SMTP)
}

/// The port bitmap in the `.data` map of a program or pin.
pub fn read_bitmap(data: &Map) -> Option<PortBitmap> {
    let array: Array<&MapData, PortBitmap> = Array::try_from(data).ok()?;
    array.get(&0, 0).ok()
}

/// A whole runtime configuration from its two halves.
pub fn combine(bitmap: &PortBitmap, slots: &RuntimeMaps) -> RuntimeConfig {
    let (event_interval_ns, pool_actions) = slots.load();
    RuntimeConfig {
        blocked_ports: bitmap_ports(bitmap),
        event_interval_ns,
        pool_actions,
    }
}
