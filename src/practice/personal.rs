//! What practice knows of a person: their profile and what their meetings'
//! analyses measured, read through the profiles and meetings stores, and
//! turned into the context prompts are rendered with.

use uuid::Uuid;

use super::model::{ExerciseFields, SessionExercise};
use super::templates::{self, ExerciseContext, MeetingContext, PromptContext, Signals, Targets, UserContext};
use crate::db::Scoped;
use crate::error::AppResult;
use crate::meetings::entity as meeting;
use crate::meetings::results::{self, analysis};
use crate::profiles::model::ProfileFields;
use crate::skills::Skill;
use crate::skills::scoring::Measured;

/// A person as practice sees them.
#[derive(Debug, Clone)]
pub struct Person {
    /// Their profile's fields.
    pub profile: ProfileFields,
    /// The meeting prompts are about, with its analysis, if any.
    pub meeting: Option<(meeting::Model, analysis::Model)>,
}

impl Person {
    /// The person of the scope, with `meeting` (or, when None, their latest
    /// analysed meeting) to personalise prompts with.
    pub async fn load(scoped: &Scoped, user_id: Uuid, meeting: Option<Uuid>) -> AppResult<Self> {
        let profile = crate::profiles::store::get(scoped, user_id).await?;
        let meeting = match meeting {
            Some(id) => Some(results::analysed(scoped, id).await?),
            None => results::recent_analyses(scoped, user_id, 1).await?.pop(),
        };
        Ok(Self {
            profile: crate::profiles::store::fields_of(&profile),
            meeting,
        })
    }

    /// The focus skills of their profile.
    pub fn focus_skills(&self) -> Vec<Skill> {
        self.profile
            .focus_skills
            .iter()
            .filter_map(|name| Skill::parse(name))
            .collect()
    }

    /// The context to render `exercise`'s prompt with.
    pub fn context(&self, exercise: &ExerciseFields) -> PromptContext {
        let p = &self.profile;
        let first_name = p.display_name.split_whitespace().next().unwrap_or_default();
        PromptContext {
            context_version: templates::CONTEXT_VERSION,
            user: UserContext {
                display_name: p.display_name.clone(),
                first_name: first_name.to_owned(),
                job_title: p.job_title.clone(),
                meeting_role: p.onboarding.meeting_role.clone(),
                goals: p.onboarding.goals.clone(),
                meeting_types: p.onboarding.meeting_types.clone(),
                experience_level: p.onboarding.experience_level.clone(),
                locale: p.language.clone(),
                focus_skills: p.focus_skills.clone(),
            },
            signals: self
                .meeting
                .as_ref()
                .map(|(_, a)| signals(&Measured::from(a)))
                .unwrap_or_default(),
            meeting: self
                .meeting
                .as_ref()
                .map(|(m, _)| MeetingContext {
                    available: true,
                    title: m.title.clone(),
                    date: m
                        .occurred_at
                        .unwrap_or(m.created_at)
                        .format("%Y-%m-%d")
                        .to_string(),
                    name: format!("meetings/{}", m.id),
                })
                .unwrap_or_default(),
            targets: Targets::from(&exercise.rubric),
            exercise: ExerciseContext {
                id: exercise.id.clone(),
                title: exercise.title.clone(),
                difficulty: exercise.difficulty,
                kind: kind_name(exercise.kind),
            },
        }
    }

    /// `exercise` rendered for this person, as a session keeps it.
    pub fn render(&self, exercise: &ExerciseFields) -> AppResult<SessionExercise> {
        let prompt =
            templates::render(&exercise.prompt_template, &self.context(exercise)).map_err(|error| {
                crate::error::AppError::internal(format!(
                    "exercise {} cannot be rendered: {error}",
                    exercise.id
                ))
            })?;
        Ok(SessionExercise {
            id: exercise.id.clone(),
            title: exercise.title.clone(),
            kind: exercise.kind,
            prompt,
            difficulty: exercise.difficulty,
            rubric: exercise.rubric.clone(),
            state: super::model::ExerciseState::Ready,
        })
    }
}

fn kind_name(kind: super::entity::ExerciseKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What an analysis measured, as template variables rounded as a person
/// reads them.
pub fn signals(m: &Measured) -> Signals {
    let tenth = |x: f64| (x * 10.0).round() / 10.0;
    Signals {
        available: true,
        words_per_minute: m.words_per_minute.map(|w| w.round() as i64),
        pace_estimated: m.pace_estimated,
        fillers_per_100_words: m.fillers_per_100_words.map(tenth),
        filler_count: m.filler_count,
        top_fillers: m.top_fillers.clone(),
        pause_count: m.pause_count,
        longest_pause_seconds: tenth(m.longest_pause_ms as f64 / 1000.0),
        longest_monologue_seconds: (m.longest_monologue_ms + 500) / 1000,
        longest_monologue_words: m.longest_monologue_words,
        questions: m.questions,
        questions_per_10_minutes: m.questions_per_10_minutes.map(tenth),
        speech_percent: (m.speech_ratio * 100.0).round() as i64,
        duration_minutes: (m.total_ms + 30_000) / 60_000,
    }
}
