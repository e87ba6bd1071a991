//! Sign-in protection: a per-IP request rate for the public auth RPCs, and
//! lockouts after consecutive failed sign-ins per email and per IP.
//!
//! The rate is kept in memory (governor), per instance. Failures are kept in
//! the database, so every instance sees the same lockout; an email is stored
//! only as its hash.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entity::sign_in_failure as failure;
use super::secret;
use crate::config::AuthConfig;
use crate::error::{AppError, AppResult};

/// Longest lockout.
const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// Failures older than this no longer count.
const FAILURE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// An IP address may fail this many times more than one email.
const IP_FACTOR: u32 = 4;

/// Throttling state of one instance.
pub struct Throttle {
    rate: DefaultKeyedRateLimiter<IpAddr>,
    max_failures: u32,
    lockout: Duration,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("max_failures", &self.max_failures)
            .finish_non_exhaustive()
    }
}

/// Takes one cell of `key`'s rate, or says how long until one is free.
pub(super) fn take<K: std::hash::Hash + Eq + Clone>(
    rate: &DefaultKeyedRateLimiter<K>,
    key: K,
) -> Result<(), Duration> {
    if rate.len() > 100_000 {
        rate.retain_recent();
    }
    rate.check_key(&key).map_err(|not_until| {
        not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ))
    })
}

/// The lockout keys of one sign-in attempt.
#[derive(Debug, Clone)]
pub struct FailureKeys {
    email: String,
    ip: Option<String>,
}

impl FailureKeys {
    /// Keys for an (already normalised) email and the client's address.
    pub fn new(email: &str, ip: Option<IpAddr>) -> Self {
        Self {
            email: format!("email:{}", secret::hash(email)),
            ip: ip.map(|ip| format!("ip:{ip}")),
        }
    }
}

impl Throttle {
    /// Throttling as configured.
    pub fn new(config: &AuthConfig) -> Self {
        let per_minute = NonZeroU32::new(config.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            rate: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            max_failures: config.max_sign_in_failures,
            lockout: config.lockout,
        }
    }

    /// Counts one request from `ip` against its rate.
    pub fn check_rate(&self, ip: Option<IpAddr>) -> AppResult<()> {
        let Some(ip) = ip else { return Ok(()) };
        take(&self.rate, ip).map_err(|wait| AppError::RateLimited {
            retry_after: wait.max(Duration::from_secs(1)),
            message: "too many requests from this address; try again later".into(),
        })
    }

    /// Refuses the attempt while its email or address is locked.
    pub async fn check_locked(&self, conn: &impl ConnectionTrait, keys: &FailureKeys) -> AppResult<()> {
        let now = Utc::now();
        let locked_until = failure::Entity::find()
            .filter(failure::Column::Key.is_in(keys.all()))
            .filter(failure::Column::LockedUntil.gt(now))
            .all(conn)
            .await?
            .into_iter()
            .filter_map(|row| row.locked_until)
            .max();
        match locked_until {
            Some(until) => Err(locked(until, now)),
            None => Ok(()),
        }
    }

    /// Records a failed attempt; the attempt that reaches the limit locks.
    pub async fn record_failure(&self, conn: &impl ConnectionTrait, keys: &FailureKeys) -> AppResult<()> {
        self.bump(conn, &keys.email, self.max_failures).await?;
        if let Some(ip) = &keys.ip {
            self.bump(conn, ip, self.max_failures.saturating_mul(IP_FACTOR))
                .await?;
        }
        Ok(())
    }

    /// Forgets the email's failures after a successful sign-in. The address
    /// keeps its count, so one good account cannot unlock an attacker's IP.
    pub async fn clear(&self, conn: &impl ConnectionTrait, keys: &FailureKeys) -> AppResult<()> {
        failure::Entity::delete_by_id(keys.email.clone())
            .exec(conn)
            .await?;
        Ok(())
    }

    async fn bump(&self, conn: &impl ConnectionTrait, key: &str, limit: u32) -> AppResult<()> {
        let now = Utc::now();
        failure::Entity::delete_many()
            .filter(failure::Column::Key.eq(key))
            .filter(failure::Column::LastFailureAt.lt(now - FAILURE_WINDOW))
            .exec(conn)
            .await?;
        // One atomic increment, whatever other instances do meanwhile.
        failure::Entity::insert(failure::ActiveModel {
            key: Set(key.to_owned()),
            failures: Set(1),
            last_failure_at: Set(now),
            locked_until: Set(None),
        })
        .on_conflict(
            OnConflict::column(failure::Column::Key)
                .value(
                    failure::Column::Failures,
                    Expr::col((failure::Entity, failure::Column::Failures)).add(1),
                )
                .value(failure::Column::LastFailureAt, now)
                .to_owned(),
        )
        .exec(conn)
        .await?;
        let failures = failure::Entity::find_by_id(key.to_owned())
            .one(conn)
            .await?
            .map_or(1, |row| row.failures);
        let over = u32::try_from(failures).unwrap_or(0).checked_sub(limit);
        if let Some(over) = over {
            // The first lockout is the configured one; each failure after it doubles it.
            let lockout = self
                .lockout
                .saturating_mul(1 << Ord::min(over, 16))
                .min(MAX_LOCKOUT);
            let until = now + chrono::Duration::from_std(lockout).unwrap_or(FAILURE_WINDOW);
            failure::Entity::update_many()
                .col_expr(failure::Column::LockedUntil, Expr::value(until))
                .filter(failure::Column::Key.eq(key))
                .exec(conn)
                .await?;
        }
        Ok(())
    }
}

/// Failed authentications per IP address (bad tokens, unknown API keys):
/// past the limit, the address is refused for a while before any lookup.
pub struct FailureGate {
    rate: DefaultKeyedRateLimiter<IpAddr>,
    blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
}

impl std::fmt::Debug for FailureGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureGate").finish_non_exhaustive()
    }
}

fn too_many_failures(wait: Duration) -> AppError {
    AppError::RateLimited {
        retry_after: wait.max(Duration::from_secs(1)),
        message: "too many failed authentications from this address; try again later".into(),
    }
}

impl FailureGate {
    /// A gate allowing `per_minute` failures per address.
    pub fn new(per_minute: u32) -> Self {
        Self {
            rate: DefaultKeyedRateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            blocked: Default::default(),
        }
    }

    /// Refuses an address that failed too often, until its wait is over.
    pub fn check(&self, ip: Option<IpAddr>) -> AppResult<()> {
        let Some(ip) = ip else { return Ok(()) };
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        match blocked.get(&ip).copied() {
            Some(until) if until > std::time::Instant::now() => {
                Err(too_many_failures(until - std::time::Instant::now()))
            }
            Some(_) => {
                blocked.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failure; the one over the limit blocks the address.
    pub fn failed(&self, ip: Option<IpAddr>) -> AppResult<()> {
        let Some(ip) = ip else { return Ok(()) };
        take(&self.rate, ip).map_err(|wait| {
            let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
            if blocked.len() > 100_000 {
                blocked.retain(|_, until| *until > std::time::Instant::now());
            }
            blocked.insert(ip, std::time::Instant::now() + wait);
            too_many_failures(wait)
        })
    }
}

impl FailureKeys {
    fn all(&self) -> Vec<String> {
        std::iter::once(self.email.clone())
            .chain(self.ip.clone())
            .collect()
    }
}

fn locked(until: DateTime<Utc>, now: DateTime<Utc>) -> AppError {
    let wait = (until - now)
        .to_std()
        .unwrap_or_default()
        .max(Duration::from_secs(1));
    AppError::RateLimited {
        retry_after: wait,
        message: format!(
            "too many failed sign-ins; try again in {} seconds",
            wait.as_secs_f64().ceil()
        ),
    }
}
