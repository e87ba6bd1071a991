//! Per-user rate limits by class of RPC (reads, writes, uploads), checked
//! in the auth layer once the caller is known, so gRPC, gRPC-Web and the
//! HTTP edge share them. Kept in memory per instance, like the per-address
//! limits of sign-in.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::caller::is_read;
use crate::config::UserLimits;
use crate::error::{AppError, AppResult};

/// A class of RPC with a limit of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Reads,
    Writes,
    Uploads,
}

impl Class {
    fn of(path: &str) -> Self {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or_default();
        if service == "debrief.v1.UploadService" {
            Self::Uploads
        } else if is_read(method) {
            Self::Reads
        } else {
            Self::Writes
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Reads => "reads",
            Self::Writes => "writes",
            Self::Uploads => "uploads",
        }
    }
}

/// The per-user limits: one keyed limiter per class.
pub struct RequestLimits {
    reads: DefaultKeyedRateLimiter<Uuid>,
    writes: DefaultKeyedRateLimiter<Uuid>,
    uploads: DefaultKeyedRateLimiter<Uuid>,
    limits: UserLimits,
}

impl std::fmt::Debug for RequestLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLimits")
            .field("limits", &self.limits)
            .finish()
    }
}

fn per_minute(calls: u32) -> DefaultKeyedRateLimiter<Uuid> {
    DefaultKeyedRateLimiter::keyed(Quota::per_minute(
        NonZeroU32::new(calls).unwrap_or(NonZeroU32::MIN),
    ))
}

impl RequestLimits {
    /// `limits` calls per minute per user and class.
    pub fn new(limits: UserLimits) -> Self {
        Self {
            reads: per_minute(limits.reads),
            writes: per_minute(limits.writes),
            uploads: per_minute(limits.uploads),
            limits,
        }
    }

    /// Counts a call of `user_id` to `path`; RESOURCE_EXHAUSTED with the
    /// wait when the user is over the class's limit.
    pub fn check(&self, user_id: Uuid, path: &str) -> AppResult<()> {
        let class = Class::of(path);
        let (rate, limit) = match class {
            Class::Reads => (&self.reads, self.limits.reads),
            Class::Writes => (&self.writes, self.limits.writes),
            Class::Uploads => (&self.uploads, self.limits.uploads),
        };
        super::throttle::take(rate, user_id).map_err(|wait| AppError::RateLimited {
            retry_after: wait,
            message: format!(
                "too many {} calls: at most {limit} a minute; try again in {} s",
                class.name(),
                wait.as_secs().max(1)
            ),
        })
    }
}
