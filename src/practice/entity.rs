//! The practice tables: modules (shared content: a head row, every
//! version's fields, their exercises), and each person's sessions,
//! attempts and difficulty levels.

use sea_orm::entity::prelude::*;

/// Lifecycle of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ModuleState {
    /// Never published; admins only.
    #[sea_orm(string_value = "draft")]
    Draft,
    /// Offered to everyone.
    #[sea_orm(string_value = "published")]
    Published,
    /// No longer offered.
    #[sea_orm(string_value = "archived")]
    Archived,
}

/// What an exercise asks for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize, serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum ExerciseKind {
    /// Said aloud.
    #[sea_orm(string_value = "speaking")]
    Speaking,
    /// A passage rewritten.
    #[sea_orm(string_value = "rewrite")]
    Rewrite,
    /// A written reflection.
    #[sea_orm(string_value = "reflection")]
    Reflection,
    /// A generated role-play, said aloud.
    #[sea_orm(string_value = "scenario")]
    Scenario,
}

impl ExerciseKind {
    /// Whether it is answered aloud (with a recording or a transcript).
    pub fn is_spoken(self) -> bool {
        matches!(self, Self::Speaking | Self::Scenario)
    }
}

/// Lifecycle of a practice session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum SessionState {
    /// Attempts may be submitted.
    #[sea_orm(string_value = "active")]
    Active,
    /// Scored and recorded.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Left unfinished past the configured time.
    #[sea_orm(string_value = "abandoned")]
    Abandoned,
}

/// Where an attempt is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum AttemptState {
    /// Spoken: its recording has not arrived.
    #[sea_orm(string_value = "awaiting_recording")]
    AwaitingRecording,
    /// Spoken: its recording is being processed.
    #[sea_orm(string_value = "processing")]
    Processing,
    /// Scored.
    #[sea_orm(string_value = "scored")]
    Scored,
    /// Its recording could not be processed.
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// `modules`: a module's head, with the fields of its listed version.
pub mod module {
    use super::*;

    /// A module.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "modules")]
    pub struct Model {
        /// The slug.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Lifecycle state.
        pub state: ModuleState,
        /// Published version; 0 before the first publish.
        pub version: i32,
        /// The draft's version, if there is a draft.
        pub draft_version: Option<i32>,
        /// Title of the listed version.
        pub title: String,
        /// Description of the listed version.
        pub description: String,
        /// Skill names of the listed version, the main one first.
        pub skills: Json,
        /// Difficulty of the listed version.
        pub difficulty: i32,
        /// Estimated duration of the listed version.
        pub estimated_duration_ms: i64,
        /// The admin who created it (none for seed modules).
        pub created_by: Option<Uuid>,
        /// When the current version was published.
        pub published_at: Option<DateTimeUtc>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!();
}

/// `module_skills`: the skills of a module's listed version.
pub mod module_skill {
    use super::*;

    /// One skill of a module.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "module_skills")]
    pub struct Model {
        /// The module.
        #[sea_orm(primary_key, auto_increment = false)]
        pub module_id: String,
        /// The skill.
        #[sea_orm(primary_key, auto_increment = false)]
        pub skill: crate::skills::Skill,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!();
}

/// `module_versions`: a version's fields.
pub mod version {
    use super::*;

    /// One version of a module.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "module_versions")]
    pub struct Model {
        /// The module.
        #[sea_orm(primary_key, auto_increment = false)]
        pub module_id: String,
        /// The version number, from 1.
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        /// Title.
        pub title: String,
        /// Description.
        pub description: String,
        /// Skill names, the main one first.
        pub skills: Json,
        /// Difficulty 1–5.
        pub difficulty: i32,
        /// Roughly how long it takes.
        pub estimated_duration_ms: i64,
        /// When it was published; none while it is a draft.
        pub published_at: Option<DateTimeUtc>,
        /// The admin who last edited it.
        pub edited_by: Option<Uuid>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!();
}

/// `exercises`: the exercises of a module version.
pub mod exercise {
    use super::*;

    /// One exercise.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "exercises")]
    pub struct Model {
        /// The module.
        #[sea_orm(primary_key, auto_increment = false)]
        pub module_id: String,
        /// The version.
        #[sea_orm(primary_key, auto_increment = false)]
        pub module_version: i32,
        /// Id within the module.
        #[sea_orm(primary_key, auto_increment = false)]
        pub exercise_id: String,
        /// Order, from 0.
        pub position: i32,
        /// Title.
        pub title: String,
        /// What it asks for.
        pub kind: ExerciseKind,
        /// The prompt's template.
        pub prompt_template: String,
        /// Difficulty 1–5.
        pub difficulty: i32,
        /// [`super::super::rubric::Rubric`] as JSON.
        pub rubric: Json,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!();
}

/// `practice_sessions`: one run through a module.
pub mod session {
    use super::*;

    /// A session.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "practice_sessions")]
    pub struct Model {
        /// Session id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// The module.
        pub module_id: String,
        /// The version it pinned.
        pub module_version: i32,
        /// Lifecycle state.
        pub state: SessionState,
        /// Difficulty the exercises were chosen for.
        pub difficulty: i32,
        /// The meeting that personalised the prompts.
        pub meeting_id: Option<Uuid>,
        /// [`super::super::model::SessionExercise`]s as JSON.
        pub exercises: Json,
        /// Overall score, once completed.
        pub score: Option<f64>,
        /// Per-skill scores, once completed.
        pub skill_scores: Option<Json>,
        /// The practice session held from the plan.
        pub reservation_id: Option<Uuid>,
        /// Idempotency key.
        pub request_id: Option<String>,
        /// When it started.
        pub started_at: DateTimeUtc,
        /// When it was completed (or abandoned).
        pub completed_at: Option<DateTimeUtc>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `exercise_attempts`: one attempt at an exercise.
pub mod attempt {
    use super::*;

    /// An attempt.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "exercise_attempts")]
    pub struct Model {
        /// Attempt id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The session.
        pub session_id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// The exercise's id.
        pub exercise_id: String,
        /// Where it is in its life.
        pub state: AttemptState,
        /// What was written or said.
        pub response_text: String,
        /// How long speaking took.
        pub duration_ms: Option<i64>,
        /// Score, once scored.
        pub score: Option<f64>,
        /// [`super::super::model::Feedback`] as JSON, once scored.
        pub feedback: Option<Json>,
        /// [`super::super::scoring::Metrics`] as JSON, once measured.
        pub metrics: Option<Json>,
        /// A spoken attempt's recording (a meeting of kind `practice`).
        pub recording_meeting_id: Option<Uuid>,
        /// The upload that carries that recording.
        pub upload_id: Option<Uuid>,
        /// Whether AI feedback was asked for.
        pub ai_requested: bool,
        /// Why processing failed.
        pub failure_reason: Option<String>,
        /// Idempotency key.
        pub request_id: Option<String>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `user_skill_levels`: a person's difficulty level per skill.
pub mod level {
    use super::*;

    /// A level.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_skill_levels")]
    pub struct Model {
        /// Owner.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        /// The skill.
        #[sea_orm(primary_key, auto_increment = false)]
        pub skill: crate::skills::Skill,
        /// Level 1–5.
        pub level: i32,
        /// Strong sessions in a row.
        pub strong_run: i32,
        /// Weak sessions in a row.
        pub weak_run: i32,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}
