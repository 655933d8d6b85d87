//! The kernel side as user space sees it. [`Dataplane`] is one loaded
//! instance of the embedded XDP program with its maps:
//! - `diff`: what must change in the maps (pure, no kernel);
//! - `writer`: applies a diff in its order, and reads the maps back;
//! - `ipv4_class`: the source classes of the dynamic and exempt lists
//!   (pure); `class_writer`, `class_v6`, `class_record`, `class_batch`:
//!   their maps (IPv4 DIR-24-8 table, IPv6 class trie, list record);
//! - `runtime_config`, `runtime_slots`: blocked ports, event interval and
//!   pool actions, each value consistent on its own;
//! - `program_kind`: the one-buffer and the frags-aware builds of the
//!   program, both loaded in every instance;
//! - `links`: attaching to interfaces, adopting pinned links;
//! - `pins`: the bpffs layout (maps, links, the lock);
//! - `counters`: per-CPU counters, summed;
//! - `test_run`: running frames through the program (explain, replay).

mod class_batch;
mod class_deciding;
mod class_record;
pub mod class_regions;
mod class_undo;
mod class_v6;
pub mod class_writer;
pub mod counters;
pub mod diff;
pub mod ipv4_class;
pub mod links;
mod mmap;
pub mod pins;
pub mod program_kind;
pub mod runtime_config;
pub mod runtime_slots;
pub mod test_run;
pub mod writer;

use std::path::PathBuf;

use aya::{
    maps::{LpmTrie, MapData, MapError},
    programs::{ProgramError, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};
use op25b_common::abi::{
    GLOBAL_BLOCKED_PORTS, GLOBAL_INTERFACE_SLOT, MAP_COUNTERS, MAP_EVENTS, MAP_EVENT_LIMITER,
    MAP_POOL_COUNTERS, MAP_RUNTIME, POLICY_MAPS, RUNTIME_CONFIG_PIN, RUNTIME_CONFIG_SECTION,
};
pub use program_kind::ProgramKind;

use crate::policy::Policy;

/// Benchmark baselines (`op25b-ebpf/src/bench_programs.rs`), built alongside.
pub static BENCH_PROGRAMS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-programs"));

/// The XDP program, built by build.rs from `op25b-ebpf`.
pub static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/op25b"));

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot load the op25b program: {0}")]
    Load(#[from] EbpfError),
    #[error("the op25b program was refused by the kernel: {0}")]
    Program(#[from] ProgramError),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("link {}: {source}", path.display())]
    Link {
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("pinning link at {}: {source} ({:?})", path.display(), std::error::Error::source(source))]
    PinLink {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("pinning map at {}: {source}", path.display())]
    PinMap {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("pinning link at {} again: {source}", path.display())]
    RepinLink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing link pin {}: {source}", path.display())]
    Unpin {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("counting possible CPUs: {0}")]
    Cpus(#[source] std::io::Error),
    #[error("map {0} is missing from the program object")]
    MissingMap(&'static str),
    #[error("program {0} is missing from the program object")]
    MissingProgram(&'static str),
    #[error("the program has no writable runtime configuration section")]
    MissingRuntimeConfig,
    #[error("one test run moved the counters of {0:?}; is the program attached and counting live traffic in this slot?")]
    CountersMoved(Vec<op25b_common::Reason>),
    #[error(
        "the program builds disagree on a frame: {} said {:?} (XDP action {}), {} said {:?} (XDP action {})",
        first.0, first.1, first.2, second.0, second.1, second.2
    )]
    ProgramsDisagree {
        first: (ProgramKind, op25b_common::Reason, u32),
        second: (ProgramKind, op25b_common::Reason, u32),
    },
    #[error(transparent)]
    BadPorts(#[from] diff::BadPorts),
    #[error("{0}; what was written is undone: the maps hold the previous policy")]
    RolledBack(Box<DataplaneError>),
    #[error("{first}; undoing it failed too ({undo}): the maps hold part of the new policy until the next apply")]
    PartlyApplied {
        first: Box<DataplaneError>,
        undo: Box<DataplaneError>,
    },
    #[error(transparent)]
    Classes(#[from] class_writer::ClassError),
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// Where the maps live.
#[derive(Clone, Debug)]
pub enum Maps {
    /// Fresh maps that die with this process (replay, tests).
    Private,
    /// Every map pinned by name in this bpffs directory, created if absent
    /// and reused if present, so every instance and every agent generation
    /// shares one policy and one set of counters.
    Pinned(PathBuf),
    /// The pinned policy (lists and ports) but private counters: for
    /// `explain` and `replay --live`, which must not count as live traffic.
    PinnedPolicy(PathBuf),
}

impl Maps {
    fn pins(&self) -> Vec<(&'static str, PathBuf)> {
        let (dir, counters) = match self {
            Self::Private => return Vec::new(),
            Self::Pinned(dir) => (dir, true),
            Self::PinnedPolicy(dir) => (dir, false),
        };
        let mut names: Vec<&'static str> = POLICY_MAPS.to_vec();
        names.push(RUNTIME_CONFIG_PIN);
        names.push(MAP_RUNTIME);
        if counters {
            // Live state: counters and the event stream with its limiter.
            names.extend([
                MAP_COUNTERS,
                MAP_POOL_COUNTERS,
                MAP_EVENTS,
                MAP_EVENT_LIMITER,
            ]);
        }
        names
            .into_iter()
            .map(|name| (name, dir.join(name)))
            .collect()
    }
}

/// One loaded instance of the program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    slot: u32,
    /// What the maps hold, as far as this process knows (read from the maps
    /// once when adopting pinned maps).
    applied: Option<Policy>,
    /// The source-class maps (dynamic and exempt lists).
    classes: class_writer::ClassMaps,
    /// The event interval and pool-action slots.
    runtime: runtime_slots::RuntimeMaps,
}

impl Dataplane {
    /// Loads the program into the kernel (not attached anywhere), counting
    /// in interface `slot`.
    pub fn load(maps: &Maps, slot: u32) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        loader.override_global(GLOBAL_INTERFACE_SLOT, &slot, true);
        let pins = maps.pins();
        // aya writes a data section's initial value into the map even when it
        // reuses a pinned one; start from the live value so loading a new
        // instance never flips the blocked ports, even for an instant.
        let live_config = pins
            .iter()
            .find(|(name, _)| *name == RUNTIME_CONFIG_PIN)
            .and_then(|(_, path)| runtime_config::read_pinned_bitmap(path));
        if let Some(live) = &live_config {
            loader.override_global(GLOBAL_BLOCKED_PORTS, live, true);
        }
        for (name, path) in &pins {
            let section = if *name == RUNTIME_CONFIG_PIN {
                RUNTIME_CONFIG_SECTION
            } else {
                name
            };
            loader.map_pin_path(section, path.as_path());
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT)?;
        // Both builds share the maps and globals of this instance; which one
        // runs is chosen per interface at attach.
        for kind in ProgramKind::ALL {
            let program: &mut Xdp = ebpf
                .program_mut(kind.function_name())
                .ok_or(DataplaneError::MissingProgram(kind.function_name()))?
                .try_into()?;
            program.load()?;
        }
        if ebpf.map(RUNTIME_CONFIG_SECTION).is_none() {
            return Err(DataplaneError::MissingRuntimeConfig);
        }
        let classes = class_writer::ClassMaps::open(&ebpf)?;
        let runtime = runtime_slots::RuntimeMaps::open(&ebpf)?;
        Ok(Self {
            ebpf,
            slot,
            classes,
            runtime,
            applied: match maps {
                Maps::Private => Some(Policy::default()),
                Maps::Pinned(_) | Maps::PinnedPolicy(_) => None,
            },
        })
    }

    pub fn program(&self, kind: ProgramKind) -> &Xdp {
        self.ebpf
            .program(kind.function_name())
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Dataplane::load")
    }

    pub fn program_mut(&mut self, kind: ProgramKind) -> &mut Xdp {
        self.ebpf
            .program_mut(kind.function_name())
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Dataplane::load")
    }

    /// The kernel's id of this instance's `kind` program.
    pub fn program_id(&self, kind: ProgramKind) -> Option<u32> {
        Some(self.program(kind).info().ok()?.id())
    }

    /// Instructions the verifier processed to accept the `kind` program
    /// (its budget is 1,000,000).
    pub fn verified_instructions(&self, kind: ProgramKind) -> Option<u32> {
        self.program(kind).info().ok()?.verified_instruction_count()
    }

    /// Kernel memory charged to the policy maps (fdinfo `memlock`, which
    /// reports the tries' real usage on current kernels).
    pub fn policy_memory_bytes(&self) -> u64 {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        POLICY_MAPS
            .iter()
            .filter_map(|name| {
                let (aya::maps::Map::LpmTrie(data)
                | aya::maps::Map::Array(data)
                | aya::maps::Map::HashMap(data)) = self.ebpf.map(name)?
                else {
                    return None;
                };
                let fd = data.fd().as_fd().as_raw_fd();
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
                info.lines()
                    .find_map(|l| l.strip_prefix("memlock:")?.trim().parse::<u64>().ok())
            })
            .sum()
    }

    /// Pins every map of `maps` again (after the pins were removed while
    /// this instance held the maps).
    pub fn repin_maps(&self, maps: &Maps) -> Result<(), DataplaneError> {
        for (name, path) in maps.pins() {
            let section = if name == RUNTIME_CONFIG_PIN {
                RUNTIME_CONFIG_SECTION
            } else {
                name
            };
            let map = self
                .ebpf
                .map(section)
                .ok_or(DataplaneError::MissingMap(name))?;
            if path.exists() {
                continue;
            }
            map.pin(&path)
                .map_err(|source| DataplaneError::PinMap { path, source })?;
        }
        Ok(())
    }

    fn trie<const N: usize>(
        &mut self,
        name: &'static str,
    ) -> Result<LpmTrie<&mut MapData, [u8; N], u32>, DataplaneError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        LpmTrie::try_from(map).map_err(map_err(name))
    }
}

#[cfg(test)]
mod tests {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    use op25b_common::abi;

    use super::*;

    /// Every name user space opens the program's objects by is in the built
    /// object: a rename on one side fails here, not at load time on a box.
    #[test]
    fn every_name_user_space_uses_is_in_the_built_program() {
        let elf = object::File::parse(PROGRAM_OBJECT).expect("the embedded program is ELF");
        let symbols: Vec<&str> = elf.symbols().filter_map(|s| s.name().ok()).collect();
        let mut names = abi::POLICY_MAPS.to_vec();
        names.extend([
            abi::MAP_COUNTERS,
            abi::MAP_POOL_COUNTERS,
            abi::MAP_EVENTS,
            abi::MAP_EVENT_LIMITER,
            abi::GLOBAL_BLOCKED_PORTS,
            abi::GLOBAL_INTERFACE_SLOT,
            abi::PROGRAM_NAME,
            abi::PROGRAM_ONE_BUFFER_NAME,
        ]);
        for (name, _) in Maps::Pinned("/x".into()).pins() {
            if name != RUNTIME_CONFIG_PIN {
                names.push(name);
            }
        }
        for name in names {
            assert!(
                symbols.contains(&name),
                "{name} is not a symbol of the program: {symbols:?}"
            );
        }
        assert!(
            elf.section_by_name(RUNTIME_CONFIG_SECTION).is_some(),
            "no {RUNTIME_CONFIG_SECTION} section for the runtime configuration"
        );
        let global = elf
            .symbol_by_name(abi::GLOBAL_BLOCKED_PORTS)
            .expect("blocked-port bitmap symbol");
        let section = global
            .section_index()
            .and_then(|i| elf.section_by_index(i).ok());
        assert_eq!(
            section.and_then(|s| s.name().ok()),
            Some(RUNTIME_CONFIG_SECTION),
            "BLOCKED_PORT_BITS must live in the writable .data section"
        );
        assert_eq!(
            global.size(),
            std::mem::size_of::<abi::PortBitmap>() as u64,
            "BLOCKED_PORT_BITS differs in size between kernel and user space"
        );
    }
}
