//! Wakes the agent loop before its next tick: a link notification (an
//! interface to attach), a RADIUS request waiting for its change to reach
//! the maps, or a fleet policy accepted from etcd. One condition variable,
//! whoever rings it.

use std::{
    sync::{Condvar, Mutex},
    time::Duration,
};

/// Why the loop woke up; several at once are folded together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reasons {
    pub link: bool,
    pub radius: bool,
    pub fleet: bool,
}

#[derive(Debug, Default)]
pub struct Waker {
    pending: Mutex<Reasons>,
    rung: Condvar,
}

impl Waker {
    pub fn wake(&self, mark: impl FnOnce(&mut Reasons)) {
        mark(&mut self.pending.lock().expect("not poisoned"));
        self.rung.notify_all();
    }

    /// Waits up to `timeout` for a wake-up; returns (and clears) the reasons.
    pub fn wait(&self, timeout: Duration) -> Reasons {
        let pending = self.pending.lock().expect("not poisoned");
        let (mut pending, _) = self
            .rung
            .wait_timeout_while(pending, timeout, |r| *r == Reasons::default())
            .expect("not poisoned");
        std::mem::take(&mut *pending)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_wake_up_ends_the_wait_with_its_reason_and_is_consumed() {
        let waker = Arc::new(Waker::default());
        assert_eq!(waker.wait(Duration::from_millis(1)), Reasons::default());
        let ringer = Arc::clone(&waker);
        let thread = std::thread::spawn(move || ringer.wake(|r| r.link = true));
        let woke = waker.wait(Duration::from_secs(10));
        thread.join().unwrap();
        assert!(woke.link && !woke.radius);
        assert_eq!(waker.wait(Duration::from_millis(1)), Reasons::default());
    }
}
