//! `ImportLocalState`: the browser-only app's localStorage export into an
//! account. The format is described in `docs/local-state-import.md`.
//!
//! Everything is validated before anything is written, and everything is
//! written in one transaction. Practice records are keyed by their local id,
//! so importing the same export again adds nothing; the profile is written
//! only if it changes.

use std::collections::HashSet;

use chrono::Utc;
use prost::Message as _;
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::model::{ProfileFields, skill_name};
use super::store;
use crate::db::Db;
use crate::error::{AppError, AppResult, FieldViolation};
use crate::pb::v1 as pb;
use crate::progress::entity as progress;
use crate::timestamps;

/// Largest export accepted (encoded size).
pub const MAX_EXPORT_BYTES: usize = 1 << 20;
/// Most practice records in one export.
pub const MAX_RECORDS: usize = 5_000;

/// A validated practice record.
struct Record {
    import_key: String,
    module_id: String,
    skill: String,
    score: f64,
    recorded_at: chrono::DateTime<Utc>,
    duration_ms: Option<i64>,
}

/// Validates and imports `state` for `user_id`.
pub async fn run(db: &Db, user_id: Uuid, state: pb::LocalState) -> AppResult<pb::ImportLocalStateResponse> {
    if state.encoded_len() > MAX_EXPORT_BYTES {
        return Err(AppError::invalid(
            "state",
            format!(
                "is larger than the {} KiB an export may have",
                MAX_EXPORT_BYTES >> 10
            ),
        ));
    }
    let pb::LocalState {
        schema_version,
        profile,
        practice_history,
    } = state;
    let mut violations = Vec::new();
    if schema_version != 1 {
        violations.push(violation("state.schema_version", "must be 1"));
    }
    let records = records(&practice_history, &mut violations);

    let scoped = db.as_user(user_id).await?;
    let current = store::get(&scoped, user_id).await?;
    let mut merged = pb::Profile::from(&current);
    if let Some(profile) = profile {
        store::merge(&mut merged, profile, &[])?;
    }
    let fields = ProfileFields::parse(&merged, "state.profile").unwrap_or_else(|bad| {
        violations.extend(bad);
        ProfileFields::default()
    });
    if !violations.is_empty() {
        return Err(AppError::InvalidArgument(violations));
    }

    let saved = store::save(&scoped, current, &fields).await?;
    let keys: Vec<String> = records.iter().map(|r| r.import_key.clone()).collect();
    let mut existing: HashSet<String> = HashSet::new();
    // Chunked, to stay under the backends' limits on bound parameters.
    for chunk in keys.chunks(500) {
        let found: Vec<Option<String>> = scoped
            .find::<progress::Entity>()
            .select_only()
            .column(progress::Column::ImportKey)
            .filter(progress::Column::ImportKey.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(scoped.txn())
            .await?;
        existing.extend(found.into_iter().flatten());
    }
    let new_rows: Vec<progress::ActiveModel> = records
        .into_iter()
        .filter(|r| !existing.contains(&r.import_key))
        .map(|r| progress::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            skill: Set(r.skill),
            score: Set(r.score),
            source: Set("import".into()),
            import_key: Set(Some(r.import_key)),
            duration_ms: Set(r.duration_ms),
            recorded_at: Set(r.recorded_at),
            module_id: Set((!r.module_id.is_empty()).then_some(r.module_id)),
            ..Default::default()
        })
        .collect();
    // A concurrent import of the same records is absorbed by the unique key.
    let imported = scoped
        .insert_many_or_ignore(new_rows, [progress::Column::UserId, progress::Column::ImportKey])
        .await?;
    let imported = usize::try_from(imported).unwrap_or(usize::MAX);
    scoped.commit().await?;
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(pb::ImportLocalStateResponse {
        profile: Some(pb::Profile::from(&saved)),
        practice_records_imported: count(imported),
        practice_records_skipped: count(keys.len() - imported),
    })
}

fn violation(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.into(),
        description: description.into(),
    }
}

fn records(history: &[pb::LocalPracticeRecord], violations: &mut Vec<FieldViolation>) -> Vec<Record> {
    if history.len() > MAX_RECORDS {
        violations.push(violation(
            "state.practice_history",
            format!("must have at most {MAX_RECORDS} entries"),
        ));
        return Vec::new();
    }
    let now = Utc::now();
    let mut seen = HashSet::new();
    let mut records = Vec::with_capacity(history.len());
    for (i, record) in history.iter().enumerate() {
        let path = |field: &str| format!("state.practice_history[{i}].{field}");
        let before = violations.len();
        let local_id = &record.local_id;
        let valid_id = (1..=128).contains(&local_id.len())
            && local_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !valid_id {
            violations.push(violation(
                path("local_id"),
                "must be 1 to 128 characters of A-Z, a-z, 0-9, -, _, . and :",
            ));
        } else if !seen.insert(local_id.clone()) {
            violations.push(violation(path("local_id"), "is used by an earlier record"));
        }
        let module_ok = record.module_id.len() <= 100
            && record
                .module_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !module_ok {
            violations.push(violation(
                path("module_id"),
                "must be at most 100 characters of A-Z, a-z, 0-9, - and _",
            ));
        }
        let skill = pb::Skill::try_from(record.skill).ok().and_then(skill_name);
        if skill.is_none() {
            violations.push(violation(path("skill"), "must be a skill"));
        }
        if !(0.0..=100.0).contains(&record.score) {
            violations.push(violation(path("score"), "must be between 0 and 100"));
        }
        let recorded_at = match &record.complete_time {
            None => {
                violations.push(violation(path("complete_time"), "is required"));
                None
            }
            Some(ts) => match timestamps::from_proto("", ts) {
                Ok(at) if at <= now + chrono::Duration::minutes(5) && at.timestamp() > 946_684_800 => {
                    Some(at)
                }
                _ => {
                    violations.push(violation(
                        path("complete_time"),
                        "must be a time after 2000 and not in the future",
                    ));
                    None
                }
            },
        };
        let duration_ms = match &record.duration {
            None => None,
            Some(d) if d.seconds >= 0 && d.nanos >= 0 && d.seconds <= 86_400 => {
                Some(d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
            }
            Some(_) => {
                violations.push(violation(path("duration"), "must be between 0 and 24 hours"));
                None
            }
        };
        if violations.len() == before
            && let (Some(skill), Some(recorded_at)) = (skill, recorded_at)
        {
            records.push(Record {
                import_key: format!("local:{local_id}"),
                module_id: record.module_id.clone(),
                skill,
                score: record.score,
                recorded_at,
                duration_ms,
            });
        }
    }
    records
}
