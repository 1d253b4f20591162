//! A caller's way to stop a read that is busy inside one record (a Shapefile polygon of a
//! hundred thousand rings): a flag another thread can raise, and an optional deadline.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::ReadError;

/// Polled by readers in loops that can run long within a single record. Clones share the
/// flag: raise it with [`Cancel::cancel`] from any thread. A read stopped this way ends with
/// [`ReadError::Io`] of kind [`io::ErrorKind::Interrupted`] (the input is not at fault).
///
/// The default never cancels.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Cancel {
    /// A token that cancels when [`Cancel::cancel`] is called on it or a clone.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// The same token, also cancelled once `deadline` has passed.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Asks every read using this token (or a clone) to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is raised or the deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// The error a cancelled read ends with.
pub(crate) fn cancelled() -> ReadError {
    ReadError::Io(io::Error::new(
        io::ErrorKind::Interrupted,
        "reading cancelled by the caller (cancel flag or deadline)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clones_share_the_flag() {
        let a = Cancel::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
        let err = cancelled();
        assert!(err.is_io());
        assert_eq!(
            err.to_string(),
            "read error: reading cancelled by the caller (cancel flag or deadline)"
        );
    }

    #[test]
    fn a_past_deadline_cancels_a_future_one_does_not() {
        let now = Instant::now();
        assert!(Cancel::new().with_deadline(now).is_cancelled());
        let later = now.checked_add(Duration::from_secs(3600));
        assert!(later.is_some_and(|t| !Cancel::new().with_deadline(t).is_cancelled()));
    }
}
