//! `sign_in_failures`: consecutive failed sign-ins per email hash or IP.

use sea_orm::entity::prelude::*;

/// Failures for one key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sign_in_failures")]
pub struct Model {
    /// `email:<sha256>` or `ip:<address>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Consecutive failures.
    pub failures: i32,
    /// The latest failure.
    pub last_failure_at: DateTimeUtc,
    /// Refused until then.
    pub locked_until: Option<DateTimeUtc>,
}

crate::db::entity_tail!();
