//! The debrief schema, as an ordered list of migrations.
//!
//! Migrations use sea-query's schema builders rather than the application's
//! entities: they are history, and must keep producing the same schema when
//! the entities change. Postgres also gets Row Level Security, enabled and
//! forced on every table that holds a user's data (see [`rls`]).

pub use sea_orm_migration::MigrationStatus;
pub use sea_orm_migration::prelude::*;

mod m20261127_000001_identity;
mod m20261127_000002_meetings;
mod m20261127_000003_practice;
mod m20261127_000004_usage_events_audit;
mod m20261127_000005_identity_hardening;
mod m20261127_000006_usage_reservations;
mod m20261127_000007_upload_reservations;
mod m20261127_000008_event_sequences;
mod m20261127_000009_processing;
mod m20261201_000010_upload_completion;
mod m20261201_000011_stream_tickets;
mod m20261202_000012_practice_versions;
mod m20261202_000013_account_deletion;
mod m20261202_000014_analytics_indexes;
mod m20261203_000015_upload_digest;
pub mod rls;
mod util;

/// Every migration, oldest first.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_identity::Migration),
            Box::new(m20261127_000002_meetings::Migration),
            Box::new(m20261127_000003_practice::Migration),
            Box::new(m20261127_000004_usage_events_audit::Migration),
            Box::new(m20261127_000005_identity_hardening::Migration),
            Box::new(m20261127_000006_usage_reservations::Migration),
            Box::new(m20261127_000007_upload_reservations::Migration),
            Box::new(m20261127_000008_event_sequences::Migration),
            Box::new(m20261127_000009_processing::Migration),
            Box::new(m20261201_000010_upload_completion::Migration),
            Box::new(m20261201_000011_stream_tickets::Migration),
            Box::new(m20261202_000012_practice_versions::Migration),
            Box::new(m20261202_000013_account_deletion::Migration),
            Box::new(m20261202_000014_analytics_indexes::Migration),
            Box::new(m20261203_000015_upload_digest::Migration),
        ]
    }
}
