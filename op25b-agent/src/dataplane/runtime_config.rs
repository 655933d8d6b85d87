//! The program's runtime configuration (blocked ports, event interval, pool
//! actions): a `.data` global the program reads with a plain load.

use std::path::Path;

use aya::maps::{Array, MapData};
use op25b_common::abi::{RuntimeConfig, RUNTIME_CONFIG_PIN, RUNTIME_CONFIG_SECTION};

use super::{map_err, Dataplane, DataplaneError};

/// The runtime configuration in a pinned `.data` map, if one is there.
pub fn read_pinned(path: &Path) -> Option<RuntimeConfig> {
    let map = aya::maps::Map::Array(MapData::from_pin(path).ok()?);
    let array: Array<&MapData, RuntimeConfig> = Array::try_from(&map).ok()?;
    array.get(&0, 0).ok()
}

/// Is op25b loaded (its maps pinned) in `maps_dir`?
pub fn pinned_in(maps_dir: &Path) -> Option<RuntimeConfig> {
    read_pinned(&maps_dir.join(RUNTIME_CONFIG_PIN))
}

impl Dataplane {
    fn runtime_config_map(&mut self) -> Result<Array<&mut MapData, RuntimeConfig>, DataplaneError> {
        let map = self
            .ebpf
            .map_mut(RUNTIME_CONFIG_SECTION)
            .ok_or(DataplaneError::MissingRuntimeConfig)?;
        Array::try_from(map).map_err(map_err(RUNTIME_CONFIG_PIN))
    }

    pub fn read_runtime_config(&mut self) -> Result<RuntimeConfig, DataplaneError> {
        self.runtime_config_map()?
            .get(&0, 0)
            .map_err(map_err(RUNTIME_CONFIG_PIN))
    }

    pub(super) fn write_runtime_config(
        &mut self,
        config: RuntimeConfig,
    ) -> Result<(), DataplaneError> {
        self.runtime_config_map()?
            .set(0, config, 0)
            .map_err(map_err(RUNTIME_CONFIG_PIN))
    }
}
