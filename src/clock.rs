//! The time. Everything that reasons about "today" (streaks) asks the
//! clock rather than the system, so a test (or a tool replaying history)
//! can set it.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

/// The time: the system's, unless set.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<RwLock<Option<DateTime<Utc>>>>);

impl Clock {
    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        self.0
            .read()
            .map(|fixed| fixed.unwrap_or_else(Utc::now))
            .unwrap_or_else(|_| Utc::now())
    }

    /// Stops the clock at `at` (None: the system's time again).
    pub fn set(&self, at: Option<DateTime<Utc>>) {
        if let Ok(mut fixed) = self.0.write() {
            *fixed = at;
        }
    }
}
