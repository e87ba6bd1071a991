//! The tables of the pipeline: jobs, stage runs, converted audio and its
//! segments, transcripts, analyses and sampling settings.

use sea_orm::entity::prelude::*;

/// The items every entity here shares: no navigated relations, default
/// behaviour, and (for user data) the owner column.
macro_rules! plain_entity {
    () => {
        /// No relations are navigated.
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
    (owned) => {
        plain_entity!();

        impl crate::db::Owned for Entity {
            fn owner_column() -> Column {
                Column::UserId
            }
        }
    };
}

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

/// A pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Stage {
    /// Checking the stored recording.
    #[sea_orm(string_value = "validate")]
    Validate,
    /// Decoding and resampling.
    #[sea_orm(string_value = "convert")]
    Convert,
    /// Voice activity detection and cutting.
    #[sea_orm(string_value = "segment")]
    Segment,
    /// Smart sampling.
    #[sea_orm(string_value = "sample")]
    Sample,
    /// Transcription.
    #[sea_orm(string_value = "transcribe")]
    Transcribe,
    /// Metrics.
    #[sea_orm(string_value = "analyze")]
    Analyze,
    /// Removing temporary objects.
    #[sea_orm(string_value = "cleanup")]
    Cleanup,
}

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

/// `processing_jobs`: the durable queue, one job per meeting.
pub mod job {
    use super::*;

    /// A job.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processing_jobs")]
    pub struct Model {
        /// Job id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The meeting's owner.
        pub user_id: Uuid,
        /// The meeting.
        pub meeting_id: Uuid,
        /// What it does: `process_meeting`.
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
        /// When it was queued.
        pub created_at: DateTimeUtc,
        /// When it last changed.
        pub updated_at: DateTimeUtc,
    }

    plain_entity!(owned);
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

    plain_entity!(owned);
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
        /// Row creation.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    plain_entity!(owned);
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

    plain_entity!(owned);
}

/// `meeting_transcripts`: one per transcribed meeting.
pub mod transcript {
    use super::*;

    /// A transcript's header.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "meeting_transcripts")]
    pub struct Model {
        /// The meeting.
        #[sea_orm(primary_key, auto_increment = false)]
        pub meeting_id: Uuid,
        /// Its owner.
        pub user_id: Uuid,
        /// Language, BCP 47.
        pub language: String,
        /// Provider and model.
        pub model: String,
        /// Share of speech transcribed, 0 to 100.
        pub coverage_percent: f64,
        /// When it was produced.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    plain_entity!(owned);
}

/// `transcript_segments`: the transcript's lines.
pub mod transcript_segment {
    use super::*;

    /// One stretch of transcribed speech.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "transcript_segments")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The meeting.
        pub meeting_id: Uuid,
        /// Its owner.
        pub user_id: Uuid,
        /// Order, from 0.
        pub position: i32,
        /// Start in meeting time.
        pub start_ms: i64,
        /// End in meeting time.
        pub end_ms: i64,
        /// The words.
        pub text: String,
        /// Provider's confidence.
        pub confidence: Option<f64>,
        /// Row creation.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    plain_entity!(owned);
}

/// `meeting_analyses`: the speaking metrics of a meeting.
pub mod analysis {
    use super::*;

    /// A meeting's metrics.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "meeting_analyses")]
    pub struct Model {
        /// The meeting.
        #[sea_orm(primary_key, auto_increment = false)]
        pub meeting_id: Uuid,
        /// Its owner.
        pub user_id: Uuid,
        /// Length of the meeting.
        pub total_ms: i64,
        /// Time with speech.
        pub speech_ms: i64,
        /// `speech_ms / total_ms`.
        pub speech_ratio: f64,
        /// Pauses at least the pause threshold long.
        pub pause_count: i32,
        /// Their mean length.
        pub average_pause_ms: i64,
        /// The longest.
        pub longest_pause_ms: i64,
        /// Longest speech without a pause.
        pub longest_monologue_ms: i64,
        /// Words per minute of transcribed speech.
        pub words_per_minute: Option<f64>,
        /// Filler words found.
        pub filler_word_count: Option<i32>,
        /// `[{"word": .., "count": ..}, ...]`, most frequent first.
        pub filler_words: Json,
        /// Questions asked.
        pub question_count: Option<i32>,
        /// Skill scores (not computed yet: `[]`).
        pub skill_scores: Json,
        /// Most words in one stretch of speech.
        pub longest_monologue_words: Option<i32>,
        /// When it was computed.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    plain_entity!(owned);
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

    plain_entity!(owned);
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

    plain_entity!();
}
