//! A profile's fields and their rules.
//!
//! [`ProfileFields::parse`] is the only way from an API message to stored
//! values: every field is checked and every violation is reported with its
//! path, so a client can show them all at once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::FieldViolation;
use crate::pb::v1 as pb;
use crate::text::MAX_DISPLAY_NAME;
use crate::timestamps;

/// Allowed `onboarding.meeting_role` values.
pub const MEETING_ROLES: &[&str] = &[
    "facilitator",
    "presenter",
    "participant",
    "decision_maker",
    "note_taker",
    "other",
];
/// Allowed `onboarding.meeting_types` values.
pub const MEETING_TYPES: &[&str] = &[
    "one_on_one",
    "standup",
    "team_meeting",
    "client_call",
    "presentation",
    "interview",
    "workshop",
    "other",
];
/// Allowed `onboarding.experience_level` values.
pub const EXPERIENCE_LEVELS: &[&str] = &["beginner", "intermediate", "advanced"];

/// Stored onboarding answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Onboarding {
    /// Whether onboarding was finished.
    pub completed: bool,
    /// When it was finished.
    pub complete_time: Option<DateTime<Utc>>,
    /// Usual role in meetings.
    pub meeting_role: String,
    /// Meetings a week.
    pub meetings_per_week: i32,
    /// Goals.
    pub goals: Vec<String>,
    /// Answers by question id.
    pub answers: Vec<(String, String)>,
    /// Kinds of meetings attended.
    pub meeting_types: Vec<String>,
    /// Experience level.
    pub experience_level: String,
}

/// Stored preferences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    /// Emails about analyses and quotas.
    pub email_notifications: bool,
    /// Weekly summary email.
    pub weekly_summary: bool,
    /// Daily practice goal in minutes.
    pub daily_practice_goal_minutes: i32,
}

/// Every editable profile field, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileFields {
    /// Name shown in the product.
    pub display_name: String,
    /// Job title.
    pub job_title: String,
    /// IANA time zone or empty.
    pub time_zone: String,
    /// BCP 47 tag or empty.
    pub language: String,
    /// Skill names, e.g. `filler_words`.
    pub focus_skills: Vec<String>,
    /// Onboarding answers.
    pub onboarding: Onboarding,
    /// Preferences.
    pub preferences: Preferences,
}

/// The stored name of a skill (`SKILL_FILLER_WORDS` → `filler_words`).
pub fn skill_name(skill: pb::Skill) -> Option<String> {
    (skill != pb::Skill::Unspecified).then(|| {
        skill
            .as_str_name()
            .trim_start_matches("SKILL_")
            .to_ascii_lowercase()
    })
}

/// The skill with a stored name.
pub fn skill_from_name(name: &str) -> pb::Skill {
    pb::Skill::from_str_name(&format!("SKILL_{}", name.to_ascii_uppercase())).unwrap_or_default()
}

/// Collects violations under a path prefix such as `profile`.
struct Check<'a> {
    prefix: &'a str,
    violations: Vec<FieldViolation>,
}

impl Check<'_> {
    fn fail(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push(FieldViolation {
            field: format!("{}.{field}", self.prefix),
            description: description.into(),
        });
    }

    /// Trimmed text without control characters, at most `max` characters.
    fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        if value.chars().count() > max {
            self.fail(field, format!("must be at most {max} characters long"));
        } else if value.chars().any(char::is_control) {
            self.fail(field, "must not contain control characters");
        }
        value.to_owned()
    }

    fn one_of(&mut self, field: &str, value: &str, allowed: &[&str]) -> String {
        if !value.is_empty() && !allowed.contains(&value) {
            self.fail(field, format!("must be one of {}", allowed.join(", ")));
        }
        value.to_owned()
    }

    fn range(&mut self, field: &str, value: i32, max: i32) -> i32 {
        if !(0..=max).contains(&value) {
            self.fail(field, format!("must be between 0 and {max}"));
        }
        value
    }

    fn list<T>(&mut self, field: &str, values: &[T], max: usize) -> bool {
        if values.len() > max {
            self.fail(field, format!("must have at most {max} entries"));
            return false;
        }
        true
    }
}

impl ProfileFields {
    /// Validates every field of `profile`; violations name `prefix.field`.
    pub fn parse(profile: &pb::Profile, prefix: &str) -> Result<Self, Vec<FieldViolation>> {
        let mut check = Check {
            prefix,
            violations: Vec::new(),
        };
        let fields = Self {
            display_name: check.text("display_name", &profile.display_name, MAX_DISPLAY_NAME),
            job_title: check.text("job_title", &profile.job_title, 100),
            time_zone: {
                let tz = profile.time_zone.trim();
                if !tz.is_empty() && tz.parse::<chrono_tz::Tz>().is_err() {
                    check.fail("time_zone", "must be an IANA time zone such as Europe/Berlin");
                }
                tz.to_owned()
            },
            language: {
                let tag = profile.language.trim();
                if !tag.is_empty() && !is_language_tag(tag) {
                    check.fail("language", "must be a BCP 47 language tag such as en-GB");
                }
                tag.to_owned()
            },
            focus_skills: focus_skills(&mut check, &profile.focus_skills),
            onboarding: onboarding(&mut check, profile.onboarding.as_ref()),
            preferences: {
                let p = profile.preferences.unwrap_or_default();
                Preferences {
                    email_notifications: p.email_notifications,
                    weekly_summary: p.weekly_summary,
                    daily_practice_goal_minutes: check.range(
                        "preferences.daily_practice_goal_minutes",
                        p.daily_practice_goal_minutes,
                        240,
                    ),
                }
            },
        };
        if check.violations.is_empty() {
            Ok(fields)
        } else {
            Err(check.violations)
        }
    }
}

fn focus_skills(check: &mut Check<'_>, skills: &[i32]) -> Vec<String> {
    let mut names = Vec::new();
    if !check.list("focus_skills", skills, 7) {
        return names;
    }
    for (i, value) in skills.iter().enumerate() {
        match pb::Skill::try_from(*value).ok().and_then(skill_name) {
            Some(name) if !names.contains(&name) => names.push(name),
            Some(_) => check.fail(&format!("focus_skills[{i}]"), "is listed twice"),
            None => check.fail(&format!("focus_skills[{i}]"), "is not a skill"),
        }
    }
    names
}

fn onboarding(check: &mut Check<'_>, onboarding: Option<&pb::Onboarding>) -> Onboarding {
    let Some(o) = onboarding else {
        return Onboarding::default();
    };
    let complete_time = match &o.complete_time {
        None => None,
        Some(ts) => match timestamps::from_proto("", ts) {
            Ok(time) if time <= Utc::now() + chrono::Duration::minutes(5) => Some(time),
            _ => {
                check.fail(
                    "onboarding.complete_time",
                    "must be a valid time, not in the future",
                );
                None
            }
        },
    };
    let mut goals = Vec::new();
    if check.list("onboarding.goals", &o.goals, 10) {
        for (i, goal) in o.goals.iter().enumerate() {
            let goal = check.text(&format!("onboarding.goals[{i}]"), goal, 200);
            if goal.is_empty() {
                check.fail(&format!("onboarding.goals[{i}]"), "must not be empty");
            }
            goals.push(goal);
        }
    }
    let mut answers = Vec::new();
    if check.list("onboarding.answers", &o.answers, 50) {
        for (i, answer) in o.answers.iter().enumerate() {
            let id = &answer.question_id;
            let valid_id = (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid_id {
                check.fail(
                    &format!("onboarding.answers[{i}].question_id"),
                    "must be 1 to 64 characters of a-z, 0-9 and _",
                );
            }
            let text = check.text(&format!("onboarding.answers[{i}].answer"), &answer.answer, 2000);
            answers.push((id.clone(), text));
        }
    }
    let mut meeting_types = Vec::new();
    if check.list("onboarding.meeting_types", &o.meeting_types, MEETING_TYPES.len()) {
        for (i, kind) in o.meeting_types.iter().enumerate() {
            let field = format!("onboarding.meeting_types[{i}]");
            if kind.is_empty() || !MEETING_TYPES.contains(&kind.as_str()) {
                check.fail(&field, format!("must be one of {}", MEETING_TYPES.join(", ")));
            } else if meeting_types.contains(kind) {
                check.fail(&field, "is listed twice");
            } else {
                meeting_types.push(kind.clone());
            }
        }
    }
    Onboarding {
        completed: o.completed,
        complete_time,
        meeting_role: check.one_of("onboarding.meeting_role", &o.meeting_role, MEETING_ROLES),
        meetings_per_week: check.range("onboarding.meetings_per_week", o.meetings_per_week, 100),
        goals,
        answers,
        meeting_types,
        experience_level: check.one_of(
            "onboarding.experience_level",
            &o.experience_level,
            EXPERIENCE_LEVELS,
        ),
    }
}

/// A plausible BCP 47 tag: a 2–3 letter language, then subtags of 1–8
/// letters or digits.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let language_ok = parts
        .next()
        .is_some_and(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphabetic()));
    language_ok
        && tag.len() <= 35
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Onboarding {
    /// The API message.
    pub fn to_proto(&self) -> pb::Onboarding {
        pb::Onboarding {
            completed: self.completed,
            complete_time: timestamps::opt_to_proto(self.complete_time),
            meeting_role: self.meeting_role.clone(),
            meetings_per_week: self.meetings_per_week,
            goals: self.goals.clone(),
            answers: self
                .answers
                .iter()
                .map(|(question_id, answer)| pb::OnboardingAnswer {
                    question_id: question_id.clone(),
                    answer: answer.clone(),
                })
                .collect(),
            meeting_types: self.meeting_types.clone(),
            experience_level: self.experience_level.clone(),
        }
    }
}

impl Preferences {
    /// The API message.
    pub fn to_proto(&self) -> pb::Preferences {
        pb::Preferences {
            email_notifications: self.email_notifications,
            weekly_summary: self.weekly_summary,
            daily_practice_goal_minutes: self.daily_practice_goal_minutes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let profile = pb::Profile {
            display_name: "x".repeat(101),
            time_zone: "Mars/Olympus".into(),
            language: "english!".into(),
            focus_skills: vec![pb::Skill::Pacing as i32, pb::Skill::Pacing as i32, 99],
            onboarding: Some(pb::Onboarding {
                meeting_role: "boss".into(),
                meetings_per_week: 1000,
                answers: vec![pb::OnboardingAnswer {
                    question_id: "Bad Id".into(),
                    answer: "ok".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let violations = ProfileFields::parse(&profile, "profile").unwrap_err();
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "profile.display_name",
                "profile.time_zone",
                "profile.language",
                "profile.focus_skills[1]",
                "profile.focus_skills[2]",
                "profile.onboarding.answers[0].question_id",
                "profile.onboarding.meeting_role",
                "profile.onboarding.meetings_per_week",
            ]
        );
    }

    #[test]
    fn good_fields_parse_and_skills_round_trip() {
        let profile = pb::Profile {
            display_name: " Ada ".into(),
            time_zone: "Europe/Berlin".into(),
            language: "en-GB".into(),
            focus_skills: vec![pb::Skill::FillerWords as i32],
            ..Default::default()
        };
        let fields = ProfileFields::parse(&profile, "profile").unwrap();
        assert_eq!(fields.display_name, "Ada");
        assert_eq!(fields.focus_skills, ["filler_words"]);
        assert_eq!(skill_from_name("filler_words"), pb::Skill::FillerWords);
    }
}
