//! Readiness as its own small handle: the agent says whether it enforces
//! what it was asked to, `/readyz` and systemd read it.

use std::sync::RwLock;

/// Not ready until told otherwise; the reason is what `/readyz` answers.
#[derive(Debug)]
pub struct Readiness(RwLock<Result<(), String>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(RwLock::new(Err("starting".into())))
    }
}

impl Readiness {
    pub fn set_ready(&self) {
        *self.0.write().expect("not poisoned") = Ok(());
    }

    pub fn set_not_ready(&self, why: impl Into<String>) {
        *self.0.write().expect("not poisoned") = Err(why.into());
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        self.0.read().expect("not poisoned").clone()
    }

    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_not_ready_and_says_why_when_not() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready());
        readiness.set_ready();
        assert_eq!(readiness.check(), Ok(()));
        readiness.set_not_ready("eth1 is not attached");
        assert_eq!(readiness.check(), Err("eth1 is not attached".into()));
    }
}
