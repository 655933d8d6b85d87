//! The program's runtime configuration (blocked ports, event interval, pool
//! actions) in two halves, each value consistent on its own (see
//! `runtime_slots`): the port bitmap is a `.data` global the program reads
//! with a plain load; the rest are slots in an mmap'd array.

use std::path::Path;

use aya::maps::{Array, MapData};
use op25b_common::abi::{
    PortBitmap, RuntimeConfig, MAP_RUNTIME, RUNTIME_CONFIG_PIN, RUNTIME_CONFIG_SECTION,
};

use super::{map_err, runtime_slots, Dataplane, DataplaneError};

/// The port bitmap in a pinned `.data` map, if one is there.
pub fn read_pinned_bitmap(path: &Path) -> Option<PortBitmap> {
    let map = aya::maps::Map::Array(MapData::from_pin(path).ok()?);
    runtime_slots::read_bitmap(&map)
}

/// The runtime configuration in a pinned `.data` map and the slots pinned
/// beside it, if both are there.
pub fn read_pinned(path: &Path) -> Option<RuntimeConfig> {
    let bitmap = read_pinned_bitmap(path)?;
    let slots = runtime_slots::RuntimeMaps::open_pinned(&path.with_file_name(MAP_RUNTIME))?;
    Some(runtime_slots::combine(&bitmap, &slots))
}

/// Is op25b loaded (its maps pinned) in `maps_dir`?
pub fn pinned_in(maps_dir: &Path) -> Option<RuntimeConfig> {
    read_pinned(&maps_dir.join(RUNTIME_CONFIG_PIN))
}

impl Dataplane {
    fn runtime_config_map(&mut self) -> Result<Array<&mut MapData, PortBitmap>, DataplaneError> {
        let map = self
            .ebpf
            .map_mut(RUNTIME_CONFIG_SECTION)
            .ok_or(DataplaneError::MissingRuntimeConfig)?;
        Array::try_from(map).map_err(map_err(RUNTIME_CONFIG_PIN))
    }

    pub fn read_runtime_config(&mut self) -> Result<RuntimeConfig, DataplaneError> {
        let bitmap = self
            .runtime_config_map()?
            .get(&0, 0)
            .map_err(map_err(RUNTIME_CONFIG_PIN))?;
        Ok(runtime_slots::combine(&bitmap, &self.runtime))
    }

    /// Writes the slots first (read only for blocked attempts), then the
    /// port bitmap; each value the program reads is old or new on its own.
    pub(super) fn write_runtime_config(
        &mut self,
        config: RuntimeConfig,
    ) -> Result<(), DataplaneError> {
        self.runtime.store(&config);
        let bitmap = PortBitmap::from_ports(&config.blocked_ports);
        self.runtime_config_map()?
            .set(0, bitmap, 0)
            .map_err(map_err(RUNTIME_CONFIG_PIN))
    }
}
