//! Profiles: display name, onboarding answers, goals, and the import of the browser-only app's localStorage.

pub mod entity;
pub mod export;
pub mod import;
pub mod model;
pub mod service;
pub mod store;

pub use service::ProfileApi;

/// The time zone of a person's profile, for progress's streaks.
#[derive(Debug)]
pub struct ProfileZones;

#[tonic::async_trait]
impl crate::progress::TimeZones for ProfileZones {
    async fn zone(
        &self,
        scoped: &crate::db::Scoped,
        user_id: uuid::Uuid,
    ) -> crate::error::AppResult<chrono_tz::Tz> {
        let profile = store::get(scoped, user_id).await?;
        Ok(profile.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC))
    }
}
