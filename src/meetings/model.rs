//! A meeting's writable fields and their rules, and its status machine.

use chrono::{DateTime, Utc};

use crate::error::{AppError, AppResult, FieldViolation};
use crate::pb::v1 as pb;
use crate::timestamps;

/// Most tags on one meeting.
pub const MAX_TAGS: usize = 20;

/// The writable fields of a meeting, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeetingFields {
    /// 1 to 200 characters.
    pub title: String,
    /// At most 5000 characters.
    pub description: String,
    /// Not more than a day in the future.
    pub occurred_at: Option<DateTime<Utc>>,
    /// 0 to 1000; None when unknown.
    pub participant_count: Option<i32>,
    /// Up to 20 distinct tags of 1 to 50 characters, lower-cased.
    pub tags: Vec<String>,
}

impl MeetingFields {
    /// Validates the writable fields of `meeting`, reporting every bad one
    /// as `meeting.<field>`.
    pub fn parse(meeting: &pb::Meeting) -> AppResult<Self> {
        let (fields, violations) = Self::check(meeting);
        if violations.is_empty() {
            Ok(fields)
        } else {
            Err(AppError::InvalidArgument(violations))
        }
    }

    /// The writable fields of `meeting` (a bad one as its default), and
    /// what is wrong with each bad one.
    fn check(meeting: &pb::Meeting) -> (Self, Vec<FieldViolation>) {
        let mut violations = Vec::new();
        let mut bad = |field: &str, description: &str| {
            violations.push(FieldViolation {
                field: format!("meeting.{field}"),
                description: description.to_owned(),
            });
        };
        let title = meeting.title.trim().to_owned();
        if title.is_empty() {
            bad("title", "is required");
        } else if title.chars().count() > 200 || title.chars().any(char::is_control) {
            bad(
                "title",
                "must be at most 200 characters without control characters",
            );
        }
        let description = meeting.description.trim().to_owned();
        if description.chars().count() > 5000
            || description
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            bad(
                "description",
                "must be at most 5000 characters without control characters",
            );
        }
        let occurred_at = match &meeting.occurred_time {
            None => None,
            Some(ts) => match timestamps::from_proto("", ts) {
                Ok(at) if at <= Utc::now() + chrono::Duration::days(1) => Some(at),
                _ => {
                    bad("occurred_time", "must be a valid time, not more than a day ahead");
                    None
                }
            },
        };
        let participant_count = match meeting.participant_count {
            0 => None,
            n if (1..=1000).contains(&n) => Some(n),
            _ => {
                bad("participant_count", "must be between 0 (unknown) and 1000");
                None
            }
        };
        let mut tags: Vec<String> = Vec::new();
        if meeting.tags.len() > MAX_TAGS {
            bad("tags", "must have at most 20 entries");
        }
        for (i, tag) in meeting.tags.iter().take(MAX_TAGS).enumerate() {
            let tag = tag.trim().to_lowercase();
            if tag.is_empty() || tag.chars().count() > 50 || tag.chars().any(char::is_control) {
                bad(
                    &format!("tags[{i}]"),
                    "must be 1 to 50 characters without control characters",
                );
            } else if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let fields = Self {
            title,
            description,
            occurred_at,
            participant_count,
            tags,
        };
        (fields, violations)
    }
}

/// What an `UpdateMeeting` changes: the new value of each field it
/// changes, validated; None for a field it leaves alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeetingChanges {
    /// The new title.
    pub title: Option<String>,
    /// The new description.
    pub description: Option<String>,
    /// When it took place, now (None: unknown).
    pub occurred_at: Option<Option<DateTime<Utc>>>,
    /// How many took part, now (None: unknown).
    pub participant_count: Option<Option<i32>>,
    /// The new tags.
    pub tags: Option<Vec<String>>,
}

impl MeetingChanges {
    /// The fields of `update` named by `paths` (checked with
    /// [`check_mask`]), every one for `*`, and without paths those set to a
    /// non-default value; reporting every bad one among them as
    /// `meeting.<field>`. The fields left alone are neither read nor
    /// checked.
    pub fn parse(update: &pb::Meeting, paths: &[String]) -> AppResult<Self> {
        let set = [
            !update.title.is_empty(),
            !update.description.is_empty(),
            update.occurred_time.is_some(),
            update.participant_count != 0,
            !update.tags.is_empty(),
        ];
        let chosen = crate::update_mask::chosen(paths, &UPDATABLE, &set);
        let (mut fields, mut violations) = MeetingFields::check(update);
        // `meeting.tags[3]` is a problem of `tags`.
        violations.retain(|v| {
            let field = v.field.trim_start_matches("meeting.");
            chosen.contains(&field.split('[').next().unwrap_or(field))
        });
        if !violations.is_empty() {
            return Err(AppError::InvalidArgument(violations));
        }
        let mut changes = Self::default();
        for path in chosen {
            match path {
                "title" => changes.title = Some(std::mem::take(&mut fields.title)),
                "description" => changes.description = Some(std::mem::take(&mut fields.description)),
                "occurred_time" => changes.occurred_at = Some(fields.occurred_at),
                "participant_count" => changes.participant_count = Some(fields.participant_count),
                "tags" => changes.tags = Some(std::mem::take(&mut fields.tags)),
                _ => {}
            }
        }
        Ok(changes)
    }
}

/// The field mask paths `UpdateMeeting` accepts.
pub const UPDATABLE: [&str; 5] = [
    "title",
    "description",
    "occurred_time",
    "participant_count",
    "tags",
];

/// Checks that every path of an update mask names a field `UpdateMeeting`
/// may change, reporting each one that does not.
pub fn check_mask(paths: &[String]) -> AppResult<()> {
    crate::update_mask::check(paths, &UPDATABLE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Status;

    #[test]
    fn fields_are_validated_together() {
        let err = MeetingFields::parse(&pb::Meeting {
            title: " ".into(),
            participant_count: -2,
            tags: vec!["ok".into(), "".into()],
            ..Default::default()
        })
        .unwrap_err();
        let AppError::InvalidArgument(v) = err else {
            panic!()
        };
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["meeting.title", "meeting.participant_count", "meeting.tags[1]"]
        );
        let ok = MeetingFields::parse(&pb::Meeting {
            title: " Weekly sync ".into(),
            tags: vec!["Team".into(), "team".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (ok.title.as_str(), ok.tags.as_slice()),
            ("Weekly sync", &["team".to_owned()][..])
        );
    }

    #[test]
    fn an_update_checks_and_changes_only_the_fields_it_names() {
        let update = pb::Meeting {
            title: String::new(),
            participant_count: -2,
            tags: vec!["Design".into(), "".into()],
            ..Default::default()
        };
        let fields_of = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
            match MeetingChanges::parse(&update, &paths) {
                Err(AppError::InvalidArgument(v)) => Err(v.into_iter().map(|v| v.field).collect::<Vec<_>>()),
                other => Ok(other.unwrap()),
            }
        };
        // Without paths only what is set counts: the bad count and tag.
        assert_eq!(
            fields_of(&[]).unwrap_err(),
            ["meeting.participant_count", "meeting.tags[1]"]
        );
        // Naming the title makes the empty one a problem.
        assert_eq!(fields_of(&["title"]).unwrap_err(), ["meeting.title"]);
        assert_eq!(fields_of(&["*"]).unwrap_err().len(), 3);
        // A field that is named and valid is changed, to its default too.
        assert_eq!(
            fields_of(&["description", "occurred_time"]).unwrap(),
            MeetingChanges {
                description: Some(String::new()),
                occurred_at: Some(None),
                ..Default::default()
            }
        );
        let tags = MeetingChanges::parse(
            &pb::Meeting {
                tags: vec!["Design".into(), "design".into()],
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!(tags.tags, Some(vec!["design".to_owned()]));
        assert_eq!(tags.title, None);
    }

    #[test]
    fn the_status_machine_moves_forward_only() {
        assert_eq!(Status::AwaitingUpload.next(), [Status::Uploading]);
        assert!(Status::Ready.next().is_empty());
        assert!(Status::Failed.next().contains(&Status::Queued));
    }
}
