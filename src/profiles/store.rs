//! Reading and writing profiles, and merging updates into them.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::entity;
use super::model::{Onboarding, Preferences, ProfileFields, skill_from_name};
use crate::db::Scoped;
use crate::error::{AppError, AppResult, Violations};
use crate::pb::v1 as pb;
use crate::timestamps;

/// Creates the profile of a new account.
pub async fn create(scoped: &Scoped, user_id: Uuid, display_name: &str) -> AppResult<entity::Model> {
    let now = Utc::now();
    let fields = ProfileFields {
        display_name: display_name.to_owned(),
        ..ProfileFields::default()
    };
    let mut row = active(&fields)?;
    row.user_id = Set(user_id);
    row.created_at = Set(now);
    row.updated_at = Set(now);
    scoped.insert(row).await
}

/// The profile of `user_id`, if the scope may see it.
pub async fn get(scoped: &Scoped, user_id: Uuid) -> AppResult<entity::Model> {
    scoped
        .find::<entity::Entity>()
        .filter(entity::Column::UserId.eq(user_id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("profile"))
}

/// Stores `fields` if they differ from `current`; returns the stored row.
pub async fn save(
    scoped: &Scoped,
    current: entity::Model,
    fields: &ProfileFields,
) -> AppResult<entity::Model> {
    if fields_of(&current) == *fields {
        return Ok(current);
    }
    let mut row = active(fields)?;
    row.updated_at = Set(Utc::now());
    scoped
        .update_many::<entity::Entity>()
        .set(row)
        .filter(entity::Column::UserId.eq(current.user_id))
        .exec()
        .await?;
    get(scoped, current.user_id).await
}

fn active(fields: &ProfileFields) -> AppResult<entity::ActiveModel> {
    let json = |value: serde_json::Result<serde_json::Value>| value.map_err(AppError::internal);
    Ok(entity::ActiveModel {
        display_name: Set(fields.display_name.clone()),
        job_title: Set(fields.job_title.clone()),
        time_zone: Set(fields.time_zone.clone()),
        language: Set(fields.language.clone()),
        focus_skills: Set(json(serde_json::to_value(&fields.focus_skills))?),
        onboarding: Set(json(serde_json::to_value(&fields.onboarding))?),
        preferences: Set(json(serde_json::to_value(&fields.preferences))?),
        ..Default::default()
    })
}

/// The stored fields of a row.
pub fn fields_of(row: &entity::Model) -> ProfileFields {
    let entity::Model {
        display_name,
        job_title,
        time_zone,
        language,
        focus_skills,
        onboarding,
        preferences,
        // Shown by the conversion to `pb::Profile`.
        user_id: _,
        created_at: _,
        updated_at: _,
    } = row;
    ProfileFields {
        display_name: display_name.clone(),
        job_title: job_title.clone(),
        time_zone: time_zone.clone(),
        language: language.clone(),
        focus_skills: serde_json::from_value(focus_skills.clone()).unwrap_or_default(),
        onboarding: serde_json::from_value::<Onboarding>(onboarding.clone()).unwrap_or_default(),
        preferences: serde_json::from_value::<Preferences>(preferences.clone()).unwrap_or_default(),
    }
}

/// A profile as the API shows it. [`fields_of`] destructures the row, so
/// a new column does not build until it is shown or left out there.
impl From<&entity::Model> for pb::Profile {
    fn from(row: &entity::Model) -> Self {
        let ProfileFields {
            display_name,
            job_title,
            time_zone,
            language,
            focus_skills,
            onboarding,
            preferences,
        } = fields_of(row);
        Self {
            name: format!("users/{}/profile", row.user_id),
            display_name,
            job_title,
            time_zone,
            language,
            focus_skills: focus_skills
                .iter()
                .map(|name| skill_from_name(name).into())
                .collect(),
            onboarding: Some(onboarding.to_proto()),
            create_time: Some(timestamps::to_proto(row.created_at)),
            update_time: Some(timestamps::to_proto(row.updated_at)),
            preferences: Some(preferences.to_proto()),
        }
    }
}

/// Copies the fields of `update` named by `paths` into `current`. Without
/// paths, every field of `update` that is not at its default is copied.
pub fn merge(current: &mut pb::Profile, update: pb::Profile, paths: &[String]) -> AppResult<()> {
    let defaults = pb::Profile::default();
    let all: Vec<String>;
    let paths = if paths.is_empty() {
        all = [
            ("display_name", update.display_name != defaults.display_name),
            ("job_title", update.job_title != defaults.job_title),
            ("time_zone", update.time_zone != defaults.time_zone),
            ("language", update.language != defaults.language),
            ("focus_skills", !update.focus_skills.is_empty()),
            ("onboarding", update.onboarding.is_some()),
            ("preferences", update.preferences.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(path, _)| path.to_owned())
        .collect();
        &all[..]
    } else if paths.iter().any(|p| p == "*") {
        all = [
            "display_name",
            "job_title",
            "time_zone",
            "language",
            "focus_skills",
            "onboarding",
            "preferences",
        ]
        .map(str::to_owned)
        .to_vec();
        &all[..]
    } else {
        paths
    };
    let onboarding = update.onboarding.clone().unwrap_or_default();
    let preferences = update.preferences.unwrap_or_default();
    let mut bad = Violations::default();
    for path in paths {
        let current_onboarding = current.onboarding.get_or_insert_default();
        let current_preferences = current.preferences.get_or_insert_default();
        match path.as_str() {
            "display_name" => current.display_name.clone_from(&update.display_name),
            "job_title" => current.job_title.clone_from(&update.job_title),
            "time_zone" => current.time_zone.clone_from(&update.time_zone),
            "language" => current.language.clone_from(&update.language),
            "focus_skills" => current.focus_skills.clone_from(&update.focus_skills),
            "onboarding" => *current_onboarding = onboarding.clone(),
            "preferences" => *current_preferences = preferences,
            "onboarding.completed" => current_onboarding.completed = onboarding.completed,
            "onboarding.complete_time" => current_onboarding.complete_time = onboarding.complete_time,
            "onboarding.meeting_role" => current_onboarding
                .meeting_role
                .clone_from(&onboarding.meeting_role),
            "onboarding.meetings_per_week" => {
                current_onboarding.meetings_per_week = onboarding.meetings_per_week
            }
            "onboarding.goals" => current_onboarding.goals.clone_from(&onboarding.goals),
            "onboarding.answers" => current_onboarding.answers.clone_from(&onboarding.answers),
            "onboarding.meeting_types" => current_onboarding
                .meeting_types
                .clone_from(&onboarding.meeting_types),
            "onboarding.experience_level" => {
                current_onboarding
                    .experience_level
                    .clone_from(&onboarding.experience_level);
            }
            "preferences.email_notifications" => {
                current_preferences.email_notifications = preferences.email_notifications;
            }
            "preferences.weekly_summary" => current_preferences.weekly_summary = preferences.weekly_summary,
            "preferences.daily_practice_goal_minutes" => {
                current_preferences.daily_practice_goal_minutes = preferences.daily_practice_goal_minutes;
            }
            other => bad.add(
                "update_mask",
                format!("`{other}` is not a field of the profile that can be changed"),
            ),
        }
    }
    bad.finish(|| Some(()))
}
