//! The two builds of the XDP program in the object, and which one an
//! interface runs.
//!
//! A program loaded without `xdp.frags` only ever sees frames in one
//! buffer, so it needs no helper call to size the frame and no second
//! parse path: it is the cheaper one. Drivers refuse it (and refuse raising
//! the MTU under it) when the MTU needs more than one buffer per frame;
//! there the frags-aware one runs.

use std::{fmt, path::Path};

use aya::programs::links::{FdLink, PinnedLink};

use op25b_common::abi::{PROGRAM_NAME, PROGRAM_ONE_BUFFER_NAME};
use serde::Serialize;

/// Program names the kernel keeps (BPF_OBJ_NAME_LEN less the NUL).
const KERNEL_NAME_LEN: usize = 15;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgramKind {
    /// Without `xdp.frags`: frames in one buffer only.
    OneBuffer,
    /// With `xdp.frags`: any MTU (jumbo frames in several buffers).
    MultiBuffer,
}

impl ProgramKind {
    pub const ALL: [Self; 2] = [Self::OneBuffer, Self::MultiBuffer];

    /// The program's function (and section) name in the object.
    pub const fn function_name(self) -> &'static str {
        match self {
            Self::OneBuffer => PROGRAM_ONE_BUFFER_NAME,
            Self::MultiBuffer => PROGRAM_NAME,
        }
    }

    /// The label in logs, status and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::OneBuffer => "one_buffer",
            Self::MultiBuffer => "multi_buffer",
        }
    }

    /// The kinds to try on an interface, best first: `multi_buffer` set
    /// means the operator wants to be free to raise the MTU while attached.
    pub fn candidates(multi_buffer_only: bool) -> &'static [Self] {
        if multi_buffer_only {
            &[Self::MultiBuffer]
        } else {
            &Self::ALL
        }
    }
}

impl ProgramKind {
    /// The build running behind the link pinned at `pin`, if it is one of
    /// ours (read from the kernel: the program's name, which the kernel
    /// keeps to its first 15 bytes).
    pub fn behind_pinned_link(pin: &Path) -> Option<Self> {
        let link = FdLink::from(PinnedLink::from_pin(pin).ok()?);
        let id = link.info().ok()?.program_id();
        let program = aya::programs::loaded_programs()
            .flatten()
            .find(|p| p.id() == id)?;
        let name = program.name_as_str()?;
        Self::ALL.into_iter().find(|kind| {
            let full = kind.function_name();
            name == full || (name.len() == KERNEL_NAME_LEN && full.starts_with(name))
        })
    }
}

impl fmt::Display for ProgramKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
