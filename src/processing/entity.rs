//! The tables of the pipeline: jobs, stage runs, converted audio and its
//! segments, and sampling settings. What it produces for the owner
//! (transcripts, analyses) is the meetings domain's.

use sea_orm::entity::prelude::*;

/// Queue state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum JobState {
    /// Waiting for `run_at`.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Held by a worker until `lease_until`.
    #[sea_orm(string_value = "running")]
    Running,
    /// Done.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Failed too often (dead letter).
    #[sea_orm(string_value = "dead")]
    Dead,
}

pub use crate::lifecycle::Stage;

/// Outcome of a stage run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum RunState {
    /// Running now (or its worker died).
    #[sea_orm(string_value = "running")]
    Running,
    /// Finished.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Failed.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Not needed this time.
    #[sea_orm(string_value = "skipped")]
    Skipped,
}

/// A sampling strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Strategy {
    /// Everything.
    #[sea_orm(string_value = "full")]
    Full,
    /// Spread evenly within the budget.
    #[sea_orm(string_value = "uniform")]
    Uniform,
    /// Most speech first within the budget.
    #[sea_orm(string_value = "speech_dense")]
    SpeechDense,
}

/// `processing_jobs`: the durable queue: one job per meeting, and jobs of
/// other domains' tasks (practice feedback, scenario generation) about a
/// subject of theirs.
pub mod job {
    use super::*;

    /// A job.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processing_jobs")]
    pub struct Model {
        /// Job id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The owner of what it works on.
        pub user_id: Uuid,
        /// The meeting, for `process_meeting` jobs.
        pub meeting_id: Option<Uuid>,
        /// What it does: `process_meeting`, or a task's kind.
        pub kind: String,
        /// Queue state.
        pub state: JobState,
        /// Attempts started so far.
        pub attempts: i32,
        /// Attempts allowed before it is dead.
        pub max_attempts: i32,
        /// When it may run next.
        pub run_at: DateTimeUtc,
        /// Until when its worker holds it.
        pub lease_until: Option<DateTimeUtc>,
        /// The worker holding it.
        pub worker: Option<String>,
        /// The last failure.
        pub last_error: Option<String>,
        /// The analysis minutes held for the meeting.
        pub reservation_id: Option<Uuid>,
        /// What a task works on (an attempt, a session).
        pub subject_id: Option<Uuid>,
        /// When it was queued.
        pub created_at: DateTimeUtc,
        /// When it last changed.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `processing_stage_runs`: one row per run of a stage.
pub mod stage_run {
    use super::*;

    /// A stage run.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processing_stage_runs")]
    pub struct Model {
        /// Run id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The meeting.
        pub meeting_id: Uuid,
        /// Its owner.
        pub user_id: Uuid,
        /// The stage.
        pub stage: Stage,
        /// Which attempt of the stage, from 1.
        pub attempt: i32,
        /// Outcome.
        pub state: RunState,
        /// Start.
        pub started_at: DateTimeUtc,
        /// End.
        pub finished_at: Option<DateTimeUtc>,
        /// Why it failed, for the owner.
        pub error: Option<String>,
        /// Row creation.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `meeting_audio`: the converted recording and what was learnt from it.
pub mod audio {
    use super::*;

    /// A meeting's converted audio.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "meeting_audio")]
    pub struct Model {
        /// The meeting.
        #[sea_orm(primary_key, auto_increment = false)]
        pub meeting_id: Uuid,
        /// Its owner.
        pub user_id: Uuid,
        /// Storage key of the 16 kHz mono WAV.
        pub audio_object: String,
        /// Its length.
        pub duration_ms: i64,
        /// Speech spans, `[[start_ms, end_ms], ...]`.
        pub speech_spans: Option<Json>,
        /// The sampling strategy applied.
        pub strategy: Option<Strategy>,
        /// Share of speech chosen for transcription, 0 to 100.
        pub coverage_percent: Option<f64>,
        /// Estimated transcription cost.
        pub estimated_cost_micros: Option<i64>,
        /// Syllable nuclei found in the speech (for a pace estimate).
        pub syllable_count: Option<i32>,
        /// Row creation.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `meeting_segments`: the pieces the audio was cut into.
pub mod segment {
    use super::*;

    /// A piece of a meeting's audio.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "meeting_segments")]
    pub struct Model {
        /// The meeting.
        #[sea_orm(primary_key, auto_increment = false)]
        pub meeting_id: Uuid,
        /// Order, from 0.
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i32,
        /// Its owner.
        pub user_id: Uuid,
        /// Start in meeting time.
        pub start_ms: i64,
        /// End in meeting time.
        pub end_ms: i64,
        /// Speech inside it.
        pub speech_ms: i64,
        /// Chosen for transcription by sampling.
        pub selected: bool,
        /// The provider's pieces of text, in meeting time.
        pub transcript: Option<Json>,
        /// Row creation.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `user_sampling_configs`: a user's own sampling settings.
pub mod user_sampling {
    use super::*;

    /// A user's settings.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_sampling_configs")]
    pub struct Model {
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        /// Strategy.
        pub strategy: Strategy,
        /// Most audio transcribed per meeting; None: no budget.
        pub budget_ms: Option<i64>,
        /// Longest piece per request.
        pub max_segment_ms: i64,
        /// Row creation.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `plan_sampling_configs`: a plan's default sampling settings.
pub mod plan_sampling {
    use super::*;

    /// A plan's defaults.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plan_sampling_configs")]
    pub struct Model {
        /// The plan.
        #[sea_orm(primary_key, auto_increment = false)]
        pub plan_id: String,
        /// Strategy.
        pub strategy: Strategy,
        /// Most audio transcribed per meeting; None: no budget.
        pub budget_ms: Option<i64>,
        /// Longest piece per request.
        pub max_segment_ms: i64,
        /// Row creation.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!();
}
