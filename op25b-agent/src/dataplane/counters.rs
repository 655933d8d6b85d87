//! The program's per-CPU counters, read as totals over CPUs: an instance's
//! own, or pinned ones opened by path (status, metrics).

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use op25b_common::{
    abi::{counter_index, Counter, COUNTER_ENTRIES, MAP_COUNTERS},
    Reason,
};

use super::{map_err, Dataplane, DataplaneError};

/// One counter summed over every CPU's copy.
pub fn sum_cpus(per_cpu: &PerCpuValues<Counter>) -> Counter {
    per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    })
}

/// A pinned per-CPU counter map (interfaces' or pools'), opened by path,
/// read as totals over CPUs. For readers outside the agent's own handles.
pub struct PinnedCounters(aya::maps::Map);

impl PinnedCounters {
    pub fn open(path: &std::path::Path) -> Option<Self> {
        Some(Self(aya::maps::Map::PerCpuArray(
            MapData::from_pin(path).ok()?,
        )))
    }

    /// The total at `index`; zero if it cannot be read.
    pub fn get(&self, index: u32) -> Counter {
        PerCpuArray::<&MapData, Counter>::try_from(&self.0)
            .ok()
            .and_then(|c| c.get(&index, 0).ok())
            .map(|v| sum_cpus(&v))
            .unwrap_or_default()
    }
}

impl Dataplane {
    /// Zeroes one interface slot's counters (a slot handed to a new interface).
    pub fn reset_counters(&mut self, slot: u32) -> Result<(), DataplaneError> {
        let map = self
            .ebpf
            .map_mut(MAP_COUNTERS)
            .ok_or(DataplaneError::MissingMap(MAP_COUNTERS))?;
        let mut counters: PerCpuArray<&mut MapData, Counter> =
            PerCpuArray::try_from(map).map_err(map_err(MAP_COUNTERS))?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Cpus(e))?;
        for reason in 0..op25b_common::reason::REASON_SLOTS {
            let zero =
                PerCpuValues::try_from(vec![Counter::default(); cpus]).expect("one value per CPU");
            counters
                .set(counter_index(slot, reason), zero, 0)
                .map_err(map_err(MAP_COUNTERS))?;
        }
        Ok(())
    }

    /// Packets and bytes per reason in `slot`, summed over CPUs.
    pub fn counters(&self, slot: u32) -> Result<Vec<(Reason, Counter)>, DataplaneError> {
        let map = self
            .ebpf
            .map(MAP_COUNTERS)
            .ok_or(DataplaneError::MissingMap(MAP_COUNTERS))?;
        let counters: PerCpuArray<&MapData, Counter> =
            PerCpuArray::try_from(map).map_err(map_err(MAP_COUNTERS))?;
        Reason::ALL
            .iter()
            .map(|&reason| {
                let index = counter_index(slot, reason.index());
                debug_assert!(index < COUNTER_ENTRIES);
                let per_cpu = counters.get(&index, 0).map_err(map_err(MAP_COUNTERS))?;
                Ok((reason, sum_cpus(&per_cpu)))
            })
            .collect()
    }
}
