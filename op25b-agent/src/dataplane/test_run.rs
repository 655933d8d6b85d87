//! Running frames through the loaded program with `BPF_PROG_TEST_RUN`, and
//! telling which reason the kernel counted them under.

use aya::programs::{TestRun, TestRunOptions};
use op25b_common::{Action, Reason};

use super::{Dataplane, DataplaneError, ProgramKind};

/// Largest frame `BPF_PROG_TEST_RUN` accepts for XDP without fragments:
/// a page less the kernel's XDP headroom and the skb_shared_info tailroom.
pub const TEST_RUN_MAX_FRAME: usize = 4096 - 256 - 320;
/// Smallest: the kernel refuses test runs shorter than an Ethernet header.
pub const TEST_RUN_MIN_FRAME: usize = 14;

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

/// A test run's result with the reason the program counted it under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub outcome: TestRunOutcome,
    pub reason: Reason,
}

/// Can the `kind` program be test-run with a frame of `len` bytes? The
/// one-buffer one only takes frames that fit one buffer.
fn takes(kind: ProgramKind, len: usize) -> bool {
    kind == ProgramKind::MultiBuffer || len <= TEST_RUN_MAX_FRAME
}

impl Dataplane {
    /// Runs `frame` through every program build that can take it (both,
    /// unless it needs more than one buffer) and tells what they decided
    /// and why; builds that disagree in the slightest are an error.
    pub fn judge(&self, frame: &[u8]) -> Result<Judgement, DataplaneError> {
        let multi = self.judge_with(ProgramKind::MultiBuffer, frame)?;
        if takes(ProgramKind::OneBuffer, frame.len()) {
            let one = self.judge_with(ProgramKind::OneBuffer, frame)?;
            if one != multi {
                return Err(DataplaneError::ProgramsDisagree {
                    first: (ProgramKind::OneBuffer, one.reason, one.outcome.code),
                    second: (ProgramKind::MultiBuffer, multi.reason, multi.outcome.code),
                });
            }
        }
        Ok(multi)
    }

    /// [`Dataplane::judge`] with one build of the program. The reason is
    /// read from the counter that moved, so it is the kernel's own reason,
    /// not a host-side guess.
    pub fn judge_with(&self, kind: ProgramKind, frame: &[u8]) -> Result<Judgement, DataplaneError> {
        // Read before every run: anything else sharing the counters (other
        // test runs by fd, benchmarks) must not be blamed on this frame.
        let before = self.packet_counts()?;
        let outcome = self.test_run_with(kind, frame)?;
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

    /// Runs `frame` once through the build an interface of matching MTU
    /// would run: the one-buffer one if the frame fits one buffer.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRunOutcome, DataplaneError> {
        let kind = if takes(ProgramKind::OneBuffer, frame.len()) {
            ProgramKind::OneBuffer
        } else {
            ProgramKind::MultiBuffer
        };
        self.test_run_with(kind, frame)
    }

    /// Runs `frame` through the `kind` program once.
    pub fn test_run_with(
        &self,
        kind: ProgramKind,
        frame: &[u8],
    ) -> Result<TestRunOutcome, DataplaneError> {
        let mut out = vec![0u8; frame.len() + 256];
        let result = self.program(kind).test_run(TestRunOptions {
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
