//! `replay`: every frame of a capture through the real program, one JSON
//! verdict line per frame, so a policy can be checked before it is deployed.

use std::io::Write;

use op25b_common::{Action, Reason};

use super::capture::{Capture, CaptureError};
use crate::dataplane::{
    test_run::{TEST_RUN_MAX_FRAME, TEST_RUN_MIN_FRAME},
    Dataplane, DataplaneError,
};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("frame {frame}: {source}")]
    Kernel {
        frame: u64,
        #[source]
        source: DataplaneError,
    },
    #[error("writing verdicts: {0}")]
    Output(#[from] std::io::Error),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    pub frames: u64,
    pub by_reason: [u64; Reason::ALL.len()],
    /// Shorter than an Ethernet header: malformed by definition (the kernel
    /// refuses to test-run them, and no NIC delivers them).
    pub shorter_than_ethernet: u64,
    /// Longer than a test run takes: cut to [`TEST_RUN_MAX_FRAME`] bytes,
    /// which keeps every header op25b reads.
    pub cut_for_test_run: u64,
    /// Cut by the capture's snap length: judged on what was captured.
    pub cut_by_snaplen: u64,
}

impl ReplaySummary {
    pub fn count(&self, reason: Reason) -> u64 {
        self.by_reason[reason.index() as usize]
    }
}

/// The JSON line for one verdict, exactly as documented.
pub fn verdict_line(frame: u64, action: Action, reason: Reason) -> String {
    format!(
        r#"{{"frame":{frame},"action":"{}","reason":"{}"}}"#,
        action.name(),
        reason.name()
    )
}

pub fn replay(
    dataplane: &mut Dataplane,
    capture: &mut Capture,
    out: &mut impl Write,
) -> Result<ReplaySummary, ReplayError> {
    let mut summary = ReplaySummary::default();
    while let Some(frame) = capture.next_frame() {
        let frame = frame?;
        summary.frames += 1;
        if frame.data.len() < frame.original_len as usize {
            summary.cut_by_snaplen += 1;
        }
        let reason = if frame.data.len() < TEST_RUN_MIN_FRAME {
            summary.shorter_than_ethernet += 1;
            Reason::Malformed
        } else {
            let data = if frame.data.len() > TEST_RUN_MAX_FRAME {
                summary.cut_for_test_run += 1;
                &frame.data[..TEST_RUN_MAX_FRAME]
            } else {
                &frame.data[..]
            };
            dataplane
                .judge(data)
                .map_err(|source| ReplayError::Kernel {
                    frame: frame.number,
                    source,
                })?
                .reason
        };
        summary.by_reason[reason.index() as usize] += 1;
        writeln!(
            out,
            "{}",
            verdict_line(frame.number, reason.action(), reason)
        )?;
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_lines_are_exactly_the_documented_json() {
        assert_eq!(
            verdict_line(1, Action::Drop, Reason::Blocked),
            r#"{"frame":1,"action":"drop","reason":"blocked"}"#
        );
        let parsed: serde_json::Value =
            serde_json::from_str(&verdict_line(7, Action::Pass, Reason::SrcNotDynamic)).unwrap();
        assert_eq!(parsed["frame"], 7);
        assert_eq!(parsed["reason"], "src_not_dynamic");
    }
}
