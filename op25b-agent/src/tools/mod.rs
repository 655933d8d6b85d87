//! Operator tools around the real program: reading captures (`capture`),
//! judging every frame of one (`replay`), and the SYN `explain` runs (`syn`).

pub mod capture;
pub mod replay;
pub mod syn;
