//! The kernel side as user space sees it: loading the embedded XDP program,
//! keeping its policy maps equal to a [`Policy`], reading its counters and
//! running frames through it with `BPF_PROG_TEST_RUN`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        ProgramError, TestRun, TestRunOptions, Xdp, XdpMode,
    },
    Ebpf, EbpfError, EbpfLoader,
};
use op25b_common::{
    abi::{
        counter_index, Counter, RuntimeConfig, COUNTER_ENTRIES, GLOBAL_BLOCKED_PORTS,
        GLOBAL_INTERFACE_SLOT, MAP_ALLOWED_DST_V4, MAP_ALLOWED_DST_V6, MAP_CLASS_V4, MAP_CLASS_V6,
        MAP_COUNTERS, POLICY_MAPS, PROGRAM_NAME,
    },
    Action, BlockedPorts, Reason,
};

use crate::{
    policy::{ListKind, Policy},
    prefix::{Prefix, PrefixSet},
};

pub mod class_writer;
pub mod ipv4_class;
pub mod runtime_slots;

/// Benchmark baselines (`op25b-ebpf/src/bench_programs.rs`), built alongside.
pub static BENCH_PROGRAMS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-programs"));

/// The XDP program, built by build.rs from `op25b-ebpf`.
pub static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/op25b"));

/// Largest frame `BPF_PROG_TEST_RUN` accepts for XDP without fragments:
/// a page less the kernel's XDP headroom and the skb_shared_info tailroom.
pub const TEST_RUN_MAX_FRAME: usize = 4096 - 256 - 320;
/// Smallest: the kernel refuses test runs shorter than an Ethernet header.
pub const TEST_RUN_MIN_FRAME: usize = 14;

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
    #[error("the program has no writable runtime configuration section")]
    MissingRuntimeConfig,
    #[error("one test run moved the counters of {0:?}; is the program attached and counting live traffic in this slot?")]
    CountersMoved(Vec<Reason>),
    #[error("blocked ports {0:?} do not fit the program (at most 8, none 0)")]
    BadPorts(Vec<u16>),
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
        names.push(op25b_common::abi::MAP_RUNTIME);
        if counters {
            // Live state: counters and the event stream with its limiter.
            names.extend([
                MAP_COUNTERS,
                op25b_common::abi::MAP_POOL_COUNTERS,
                op25b_common::abi::MAP_EVENTS,
                op25b_common::abi::MAP_EVENT_LIMITER,
            ]);
        }
        names
            .into_iter()
            .map(|name| (name, dir.join(name)))
            .collect()
    }
}

/// The pin name of the `.data` section map that holds the blocked-port
/// bitmap (a new name: the section's layout changed from the 40-byte
/// `RUNTIME_CONFIG` of earlier builds).
pub const RUNTIME_CONFIG_PIN: &str = "BLOCKED_PORTS";
/// The section the program's writable globals live in.
const RUNTIME_CONFIG_SECTION: &str = ".data";

/// Outcome of one test run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// The XDP return code.
    pub code: u32,
    /// The frame as the program left it.
    pub frame_out: Vec<u8>,
}

impl TestRunOutcome {
    pub fn action(&self) -> Option<Action> {
        Action::from_xdp(self.code)
    }
}

/// An XDP link this process holds and that is pinned on bpffs: it stays
/// attached when the process exits unless [`HeldLink::detach`] is called.
#[derive(Debug)]
pub struct HeldLink {
    link: FdLink,
    pub path: PathBuf,
}

impl HeldLink {
    /// Removes the pin and closes the link: the program leaves the interface.
    pub fn detach(self) -> Result<(), DataplaneError> {
        std::fs::remove_file(&self.path).map_err(|source| DataplaneError::Unpin {
            path: self.path.clone(),
            source,
        })?;
        drop(self.link);
        Ok(())
    }

    /// The kernel's id of the program the link runs now.
    pub fn program_id(&self) -> Option<u32> {
        self.link.info().ok().map(|i| i.program_id())
    }
}

/// A test run's result with the reason the program counted it under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub outcome: TestRunOutcome,
    pub reason: Reason,
}

/// What applying a policy changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub added: usize,
    pub removed: usize,
    pub ports_changed: bool,
}

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

/// The blocked ports currently in a pinned runtime configuration map.
pub fn read_pinned_runtime_config(path: &std::path::Path) -> Option<RuntimeConfig> {
    let bitmap = read_pinned_bitmap(path)?;
    let slots = runtime_slots::RuntimeMaps::open_pinned(
        &path.with_file_name(op25b_common::abi::MAP_RUNTIME),
    )?;
    Some(runtime_slots::combine(&bitmap, &slots))
}

fn read_pinned_bitmap(path: &std::path::Path) -> Option<op25b_common::abi::PortBitmap> {
    let map = aya::maps::Map::Array(MapData::from_pin(path).ok()?);
    runtime_slots::read_bitmap(&map)
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
            .and_then(|(_, path)| read_pinned_bitmap(path));
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
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(DataplaneError::MissingMap(PROGRAM_NAME))?
            .try_into()?;
        program.load()?;
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

    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Dataplane::load")
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Dataplane::load")
    }

    /// Attaches this instance to `ifindex` through a new bpf_link and pins
    /// the link at `pin`.
    pub fn attach_pinned(
        &mut self,
        ifindex: u32,
        mode: XdpMode,
        pin: &Path,
    ) -> Result<HeldLink, DataplaneError> {
        let program = self.program_mut();
        let id = program.attach_to_if_index(ifindex, mode)?;
        let link = program.take_link(id)?;
        let link = FdLink::try_from(link).map_err(|source| DataplaneError::Link {
            path: pin.to_owned(),
            source,
        })?;
        let pinned = link.pin(pin).map_err(|source| DataplaneError::PinLink {
            path: pin.to_owned(),
            source,
        })?;
        Ok(HeldLink {
            link: pinned.into(),
            path: pin.to_owned(),
        })
    }

    /// Atomically swaps the program behind the link pinned at `pin` for
    /// this instance (BPF_LINK_UPDATE): no packet sees the interface
    /// without a program.
    pub fn take_over_link(&mut self, pin: &Path) -> Result<HeldLink, DataplaneError> {
        let link_err = |source| DataplaneError::Link {
            path: pin.to_owned(),
            source,
        };
        let pinned = PinnedLink::from_pin(pin).map_err(link_err)?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(link_err)?;
        let program = self.program_mut();
        let id = program.attach_to_link(link)?;
        let link = FdLink::try_from(program.take_link(id)?).map_err(link_err)?;
        Ok(HeldLink {
            link,
            path: pin.to_owned(),
        })
    }

    /// Kernel memory charged to the six policy tries (fdinfo `memlock`,
    /// which reports the tries' real usage on current kernels).
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

    /// The kernel's id of this instance's program.
    pub fn program_id(&self) -> Option<u32> {
        Some(self.program().info().ok()?.id())
    }

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

    /// Instructions the verifier processed to accept the program (its
    /// budget is 1,000,000).
    pub fn verified_instructions(&self) -> Option<u32> {
        self.program().info().ok()?.verified_instruction_count()
    }

    /// Makes the maps hold exactly `policy`: new entries go in before stale
    /// ones come out, and an entry in both is never touched, so no packet
    /// ever sees a policy that is neither the old nor the new one for it.
    pub fn apply(&mut self, policy: &Policy) -> Result<ApplyStats, DataplaneError> {
        let ports = BlockedPorts::new(&policy.blocked_ports)
            .ok_or_else(|| DataplaneError::BadPorts(policy.blocked_ports.clone()))?;
        let current = match self.applied.take() {
            Some(current) => current,
            None => self.read_policy()?,
        };
        let mut stats = ApplyStats::default();
        let result = (|| {
            stats.added += self.insert_missing(ListKind::AllowedDestinations, &current, policy)?;
            let classes = self.classes.apply(&mut self.ebpf, policy)?;
            stats.added += classes.added;
            stats.removed += classes.removed;
            if current.blocked_ports != policy.blocked_ports
                || current.event_interval_ns != policy.event_interval_ns
                || current.pool_actions() != policy.pool_actions()
            {
                self.write_runtime_config(RuntimeConfig {
                    blocked_ports: ports,
                    event_interval_ns: policy.event_interval_ns,
                    pool_actions: policy.pool_actions(),
                })?;
                stats.ports_changed = true;
            }
            stats.removed += self.remove_stale(
                ListKind::AllowedDestinations,
                current.list(ListKind::AllowedDestinations),
                policy.list(ListKind::AllowedDestinations),
            )?;
            Ok(())
        })();
        // On failure, the maps are somewhere between: re-read them next time.
        // The dynamic and exempt lists are left out: the class maps keep
        // their own state, and copying a million prefixes costs more than
        // the whole reload.
        self.applied = result.is_ok().then(|| Policy {
            blocked_ports: policy.blocked_ports.clone(),
            dynamic: PrefixSet::default(),
            exempt: PrefixSet::default(),
            allowed_destinations: policy.allowed_destinations.clone(),
            event_interval_ns: policy.event_interval_ns,
            pools: policy.pools.clone(),
            pool_of: std::collections::BTreeMap::new(),
        });
        result.map(|()| stats)
    }

    /// Writes the entries `wanted` has and `current` lacks, and dynamic
    /// entries whose pool changed (an in-place update, atomic per entry).
    fn insert_missing(
        &mut self,
        kind: ListKind,
        current: &Policy,
        wanted: &Policy,
    ) -> Result<usize, DataplaneError> {
        let (v4, v6) = list_map_names(kind);
        let (have, want) = (current.list(kind), wanted.list(kind));
        let value = |p: &Prefix| {
            if kind == ListKind::Dynamic {
                wanted.pool_id(p)
            } else {
                0
            }
        };
        let changed = |p: &&Prefix, have: &std::collections::BTreeSet<Prefix>| {
            !have.contains(*p)
                || (kind == ListKind::Dynamic && current.pool_id(p) != wanted.pool_id(p))
        };
        let added_v4 = {
            let mut trie = self.trie::<4>(v4)?;
            insert_all(
                &mut trie,
                v4,
                want.v4
                    .iter()
                    .filter(|p| changed(p, &have.v4))
                    .map(|p| (p, value(p))),
            )?
        };
        let mut trie = self.trie::<16>(v6)?;
        Ok(added_v4
            + insert_all(
                &mut trie,
                v6,
                want.v6
                    .iter()
                    .filter(|p| changed(p, &have.v6))
                    .map(|p| (p, value(p))),
            )?)
    }

    fn remove_stale(
        &mut self,
        kind: ListKind,
        current: &PrefixSet,
        wanted: &PrefixSet,
    ) -> Result<usize, DataplaneError> {
        let (v4, v6) = list_map_names(kind);
        let removed_v4 = {
            let mut trie = self.trie::<4>(v4)?;
            remove_all(&mut trie, v4, current.v4.difference(&wanted.v4))?
        };
        let mut trie = self.trie::<16>(v6)?;
        Ok(removed_v4 + remove_all(&mut trie, v6, current.v6.difference(&wanted.v6))?)
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

    /// Reads back what the maps hold (used when adopting pinned maps).
    pub fn read_policy(&mut self) -> Result<Policy, DataplaneError> {
        let runtime = self.read_runtime_config()?;
        let mut policy = Policy {
            blocked_ports: runtime.blocked_ports.iter().collect(),
            event_interval_ns: runtime.event_interval_ns,
            ..Policy::default()
        };
        // Pool names live in the configuration; the kernel knows ids and actions.
        let used = runtime
            .pool_actions
            .iter()
            .rposition(|&a| a != 0)
            .map_or(1, |i| i + 1);
        policy.pools = (0..used)
            .map(|i| crate::policy::Pool {
                name: if i == 0 {
                    crate::policy::DEFAULT_POOL.into()
                } else {
                    format!("pool{i}")
                },
                action: op25b_common::abi::PoolAction::from_u8(runtime.pool_actions[i]),
            })
            .collect();
        let (dynamic, pools, exempt) = self.classes.read_record()?;
        policy.dynamic = dynamic;
        policy.pool_of = pools;
        policy.exempt = exempt;
        for (prefix, value) in class_writer::ClassMaps::read_v6(&mut self.ebpf)? {
            if value & op25b_common::abi::V6_IN_DYNAMIC != 0 {
                policy.dynamic.insert(prefix);
                let pool = value >> op25b_common::abi::V6_POOL_SHIFT;
                if pool != 0 {
                    policy.pool_of.insert(prefix, pool);
                }
            }
            if value & op25b_common::abi::V6_IN_EXEMPT != 0 {
                policy.exempt.insert(prefix);
            }
        }
        for kind in [ListKind::AllowedDestinations] {
            let (v4, v6) = list_map_names(kind);
            let mut entries = Vec::new();
            for item in &self.trie::<4>(v4)? {
                let (key, value) = item.map_err(map_err(v4))?;
                entries.push((
                    key_prefix(IpAddr::from(key.data()), key.prefix_len()),
                    value,
                ));
            }
            for item in &self.trie::<16>(v6)? {
                let (key, value) = item.map_err(map_err(v6))?;
                entries.push((
                    key_prefix(IpAddr::from(key.data()), key.prefix_len()),
                    value,
                ));
            }
            for (prefix, value) in entries {
                policy.list_mut(kind).insert(prefix);
                if kind == ListKind::Dynamic && value != 0 {
                    policy.pool_of.insert(prefix, value);
                }
            }
        }
        Ok(policy)
    }

    fn runtime_config_map(
        &mut self,
    ) -> Result<Array<&mut MapData, op25b_common::abi::PortBitmap>, DataplaneError> {
        let map = self
            .ebpf
            .map_mut(RUNTIME_CONFIG_SECTION)
            .ok_or(DataplaneError::MissingRuntimeConfig)?;
        Array::try_from(map).map_err(map_err("RUNTIME_CONFIG"))
    }

    pub fn read_runtime_config(&mut self) -> Result<RuntimeConfig, DataplaneError> {
        let bitmap = self
            .runtime_config_map()?
            .get(&0, 0)
            .map_err(map_err("BLOCKED_PORTS"))?;
        Ok(runtime_slots::combine(&bitmap, &self.runtime))
    }

    /// Writes the slots first (read only for blocked attempts), then the
    /// port bitmap; each value the program reads is old or new on its own.
    fn write_runtime_config(&mut self, config: RuntimeConfig) -> Result<(), DataplaneError> {
        self.runtime.store(&config);
        let bitmap = op25b_common::abi::PortBitmap::from_ports(&config.blocked_ports);
        self.runtime_config_map()?
            .set(0, bitmap, 0)
            .map_err(map_err("BLOCKED_PORTS"))
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

    /// Runs `frame` through the program and tells what it decided and why.
    /// The reason is read from the counter that moved, so it is the
    /// kernel's own reason, not a host-side guess.
    pub fn judge(&self, frame: &[u8]) -> Result<Judgement, DataplaneError> {
        // Read before every run: anything else sharing the counters (other
        // test runs by fd, benchmarks) must not be blamed on this frame.
        let before = self.packet_counts()?;
        let outcome = self.test_run(frame)?;
        let after = self.packet_counts()?;
        let moved: Vec<Reason> = Reason::ALL
            .iter()
            .zip(before.iter().zip(after.iter()))
            .filter(|(_, (b, a))| a != b)
            .map(|(r, _)| *r)
            .collect();
        let [reason] = moved[..] else {
            return Err(DataplaneError::CountersMoved(moved));
        };
        Ok(Judgement { outcome, reason })
    }

    fn packet_counts(&self) -> Result<[u64; Reason::ALL.len()], DataplaneError> {
        let mut counts = [0; Reason::ALL.len()];
        for (slot, (_, counter)) in counts.iter_mut().zip(self.counters(self.slot)?) {
            *slot = counter.packets;
        }
        Ok(counts)
    }

    /// Runs `frame` through the program once.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRunOutcome, DataplaneError> {
        let mut out = vec![0u8; frame.len() + 256];
        let result = self.program().test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutcome {
            code: result.return_value,
            frame_out: out,
        })
    }
}

/// The maps a list lives in: its own tries for allowed destinations; the
/// class maps (shared by both lists) for dynamic and exempt.
pub const fn list_map_names(kind: ListKind) -> (&'static str, &'static str) {
    match kind {
        ListKind::Dynamic | ListKind::Exempt => (MAP_CLASS_V4, MAP_CLASS_V6),
        ListKind::AllowedDestinations => (MAP_ALLOWED_DST_V4, MAP_ALLOWED_DST_V6),
    }
}

fn key_prefix(addr: IpAddr, len: u32) -> Prefix {
    // The kernel only holds what we inserted: valid, host bits clear.
    Prefix::new(addr, u8::try_from(len).unwrap_or(u8::MAX)).expect("trie keys are valid prefixes")
}

fn trie_key<const N: usize>(prefix: &Prefix) -> Key<[u8; N]> {
    let bytes: [u8; N] = match prefix.addr() {
        IpAddr::V4(a) => a.octets().as_slice().try_into(),
        IpAddr::V6(a) => a.octets().as_slice().try_into(),
    }
    .expect("family matches the map");
    Key::new(u32::from(prefix.len()), bytes)
}

fn insert_all<'a, const N: usize>(
    trie: &mut LpmTrie<&mut MapData, [u8; N], u32>,
    name: &'static str,
    entries: impl Iterator<Item = (&'a Prefix, u32)>,
) -> Result<usize, DataplaneError> {
    let mut n = 0;
    for (prefix, value) in entries {
        trie.insert(&trie_key::<N>(prefix), value, 0)
            .map_err(map_err(name))?;
        n += 1;
    }
    Ok(n)
}

fn remove_all<'a, const N: usize>(
    trie: &mut LpmTrie<&mut MapData, [u8; N], u32>,
    name: &'static str,
    prefixes: impl Iterator<Item = &'a Prefix>,
) -> Result<usize, DataplaneError> {
    let mut n = 0;
    for prefix in prefixes {
        trie.remove(&trie_key::<N>(prefix)).map_err(map_err(name))?;
        n += 1;
    }
    Ok(n)
}
