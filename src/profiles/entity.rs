//! `profiles`: one row per account.

use sea_orm::entity::prelude::*;

/// A profile. `focus_skills`, `onboarding` and `preferences` are JSON of
/// [`super::model`] types.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "profiles")]
pub struct Model {
    /// The account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Name shown in the product.
    pub display_name: String,
    /// Job title.
    pub job_title: String,
    /// IANA time zone; empty when not set.
    pub time_zone: String,
    /// BCP 47 language tag; empty when not set.
    pub language: String,
    /// Skill names.
    pub focus_skills: Json,
    /// Onboarding answers.
    pub onboarding: Json,
    /// Product settings.
    pub preferences: Json,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
