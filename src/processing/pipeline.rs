//! The stages of processing one meeting, run by a worker holding its job.
//!
//! Each stage is recorded in `processing_stage_runs` and announced as
//! events, and writes its results in the same transaction that marks it
//! succeeded, fenced by the job's lease. A run resumes at the first stage
//! whose latest run did not succeed, so a crash repeats at most the stage
//! it interrupted; every stage replaces its own results rather than adding
//! to them, so repeating one leaves no duplicates.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::analyze;
use super::entity::{RunState, Stage, audio as meeting_audio, job, segment, stage_run};
use super::jobs;
use super::sampling::{self, Piece};
use super::transcribe::{TranscribeError, Transcriber, Transcription};
use crate::audio::container;
use crate::audio::{self, convert, vad};
use crate::config::Config;
use crate::db::{Db, Scoped};
use crate::error::{AppError, AppResult};
use crate::events::model::{Payload, StagePhase};
use crate::meetings::entity::{self as meeting, Status};
use crate::meetings::results::{self, Line, analysis};
use crate::meetings::store;
use crate::storage::Storage;
use crate::usage::entity::metric;
use crate::usage::ledger;
use crate::usage::model::Category;

/// The stages in order.
pub const STAGES: [Stage; 7] = [
    Stage::Validate,
    Stage::Convert,
    Stage::Segment,
    Stage::Sample,
    Stage::Transcribe,
    Stage::Analyze,
    Stage::Cleanup,
];

/// Overall progress when `stage` starts, 0 to 100.
pub fn percent_at(stage: Stage) -> f64 {
    let index = STAGES.iter().position(|s| *s == stage).unwrap_or(0);
    index as f64 * 100.0 / STAGES.len() as f64
}

/// What the pipeline needs.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Settings.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// Object storage.
    pub storage: Storage,
    /// The transcription provider.
    pub transcriber: Arc<dyn Transcriber>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Transcript and analysis are ready.
    Ready,
    /// All but transcription is done; transcription is turned off.
    Parked,
    /// The meeting was deleted meanwhile (the job ends all the same).
    Gone,
}

/// A failed stage.
#[derive(Debug)]
pub struct Failure {
    /// The stage, when one had started.
    pub run: Option<(Stage, i32)>,
    /// Why, in words fit for the owner.
    pub message: String,
    /// Whether trying again cannot help.
    pub permanent: bool,
}

impl Failure {
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            run: None,
            message: message.into(),
            permanent: true,
        }
    }
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        let lost = matches!(
            error,
            AppError::Aborted {
                reason: "JOB_LEASE_LOST",
                ..
            }
        );
        if !lost {
            tracing::warn!(%error, "a processing stage failed");
        }
        Self {
            run: None,
            message: if lost {
                "another worker took over".into()
            } else {
                "an internal error interrupted processing".into()
            },
            permanent: false,
        }
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(error: sea_orm::DbErr) -> Self {
        AppError::from(error).into()
    }
}

impl From<TranscribeError> for Failure {
    fn from(error: TranscribeError) -> Self {
        let permanent = matches!(error, TranscribeError::Permanent(_));
        Self {
            run: None,
            message: error.to_string(),
            permanent,
        }
    }
}

/// One run of the pipeline for one job.
struct Run<'a> {
    pipeline: &'a Pipeline,
    job: &'a job::Model,
    worker: &'a str,
    meeting: meeting::Model,
    original: PathBuf,
    wav: PathBuf,
}

/// Storage prefix of a meeting's temporary objects.
pub fn work_prefix(meeting_id: Uuid) -> String {
    format!("meetings/{meeting_id}/work/")
}

fn audio_key(meeting_id: Uuid) -> String {
    format!("{}audio.wav", work_prefix(meeting_id))
}

impl Pipeline {
    /// Runs the job's remaining stages; on success the job has ended.
    pub async fn run(&self, job: &job::Model, worker: &str) -> Result<Outcome, Failure> {
        let scoped = self.db.as_service().await?;
        jobs::fence(&scoped, job.id, worker).await?;
        let meeting = match store::get(&scoped, job.meeting_id).await {
            Ok(meeting) => meeting,
            Err(AppError::NotFound { .. }) => {
                release_reservation(&scoped, job).await?;
                jobs::succeed(&scoped, job.id, worker).await?;
                scoped.commit().await?;
                return Ok(Outcome::Gone);
            }
            Err(e) => return Err(e.into()),
        };
        fail_interrupted_runs(&scoped, meeting.id).await?;
        if meeting.status == Status::Queued {
            store::transition(&scoped, meeting.id, &[Status::Queued], Status::Processing).await?;
        }
        let runs = scoped
            .find::<stage_run::Entity>()
            .filter(stage_run::Column::MeetingId.eq(meeting.id))
            .order_by_asc(stage_run::Column::Attempt)
            .all(scoped.txn())
            .await?;
        scoped.commit().await?;

        let done = |stage: Stage| {
            runs.iter()
                .rfind(|r| r.stage == stage)
                .is_some_and(|r| r.state == RunState::Succeeded)
        };
        let first = STAGES.iter().position(|s| !done(*s)).unwrap_or(STAGES.len());
        // Local copies live in a directory of this run alone, locked while
        // it runs (removed when it ends; a killed worker's is swept by
        // housekeeping), so a run never trusts a file another one left
        // half-written.
        let tmp = crate::scratch::dir(&self.config.data_dir)
            .await
            .map_err(AppError::internal)?;
        let work = crate::scratch::ScratchDir::create(&tmp, &format!("work-{}-", meeting.id))
            .map_err(AppError::internal)?;
        let run = Run {
            pipeline: self,
            job,
            worker,
            original: work.path().join("original"),
            wav: work.path().join("audio.wav"),
            meeting,
        };
        run.stages(&STAGES[first..]).await
    }
}

impl Run<'_> {
    async fn stages(&self, stages: &[Stage]) -> Result<Outcome, Failure> {
        let mut parked = false;
        for &stage in stages {
            let attempt = self.begin(stage).await?;
            let state = self.stage(stage, attempt, parked).await.map_err(|mut failure| {
                failure.run = Some((stage, attempt));
                failure
            })?;
            if stage == Stage::Transcribe && state == RunState::Skipped {
                parked = true;
            }
        }
        self.finish(parked).await
    }

    async fn stage(&self, stage: Stage, attempt: i32, parked: bool) -> Result<RunState, Failure> {
        match stage {
            Stage::Validate => self.validate(attempt).await,
            Stage::Convert => self.convert(attempt).await,
            Stage::Segment => self.segment(attempt).await,
            Stage::Sample => self.sample(attempt).await,
            Stage::Transcribe => self.transcribe(attempt).await,
            Stage::Analyze => self.analyze(attempt).await,
            Stage::Cleanup => self.cleanup(attempt, parked).await,
        }
    }

    /// Records the start of a stage: its run, the meeting's current stage,
    /// and an event. Returns the attempt number.
    async fn begin(&self, stage: Stage) -> Result<i32, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        jobs::fence(&scoped, self.job.id, self.worker).await?;
        let attempt = scoped
            .find::<stage_run::Entity>()
            .filter(stage_run::Column::MeetingId.eq(self.meeting.id))
            .filter(stage_run::Column::Stage.eq(stage))
            .order_by_desc(stage_run::Column::Attempt)
            .one(scoped.txn())
            .await?
            .map_or(1, |r| r.attempt + 1);
        let now = Utc::now();
        scoped
            .insert(stage_run::ActiveModel {
                id: Set(Uuid::now_v7()),
                meeting_id: Set(self.meeting.id),
                user_id: Set(self.meeting.user_id),
                stage: Set(stage),
                attempt: Set(attempt),
                state: Set(RunState::Running),
                started_at: Set(now),
                finished_at: Set(None),
                error: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .await?;
        scoped
            .update_many::<meeting::Entity>()
            .col_expr(meeting::Column::CurrentStage, Expr::value(stage))
            .col_expr(meeting::Column::UpdatedAt, Expr::value(now))
            .filter(meeting::Column::Id.eq(self.meeting.id))
            .exec()
            .await?;
        announce(
            &scoped,
            &self.meeting,
            StageEvent::new(stage, attempt, StagePhase::Started),
        )
        .await?;
        scoped.commit().await?;
        Ok(attempt)
    }

    /// Marks the stage's run ended with `state`, in the transaction that
    /// writes its results, and announces it.
    async fn end(&self, scoped: &Scoped, stage: Stage, attempt: i32, state: RunState) -> AppResult<()> {
        jobs::fence(scoped, self.job.id, self.worker).await?;
        end_run(scoped, self.meeting.id, stage, attempt, state, None).await?;
        let phase = if state == RunState::Skipped {
            StagePhase::Skipped
        } else {
            StagePhase::Completed
        };
        announce(scoped, &self.meeting, StageEvent::new(stage, attempt, phase)).await
    }

    /// Ends the stage as succeeded in `scoped`, the transaction holding
    /// its results, and commits them together.
    async fn succeed(&self, scoped: Scoped, stage: Stage, attempt: i32) -> Result<RunState, Failure> {
        self.end(&scoped, stage, attempt, RunState::Succeeded).await?;
        scoped.commit().await?;
        Ok(RunState::Succeeded)
    }

    /// A stage that only writes its run.
    async fn end_alone(&self, stage: Stage, attempt: i32, state: RunState) -> Result<RunState, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        self.end(&scoped, stage, attempt, state).await?;
        scoped.commit().await?;
        Ok(state)
    }

    /// Runs blocking audio `work` for `stage` and publishes its progress
    /// (the share done, 0 to 1, that `work` reports) as events: at most one
    /// per whole percent and per `DEBRIEF_PROGRESS_INTERVAL`.
    async fn blocking_with_progress<T, F>(&self, stage: Stage, attempt: i32, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn FnMut(f64)) -> T + Send + 'static,
    {
        let interval = self.pipeline.config.processing.progress_interval;
        let (tx, mut rx) = tokio::sync::watch::channel(0.0);
        let mut task = tokio::task::spawn_blocking(move || {
            let (mut last, mut reported) = (std::time::Instant::now(), 0.0);
            let mut report = |done: f64| {
                let percent = (done * 100.0).floor();
                if percent > reported && percent < 100.0 && last.elapsed() >= interval {
                    (last, reported) = (std::time::Instant::now(), percent);
                    let _ = tx.send(percent);
                }
            };
            work(&mut report)
        });
        loop {
            tokio::select! {
                done = &mut task => return done.map_err(|e| AppError::internal(e).into()),
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The work is ending: nothing more will be reported.
                        return (&mut task).await.map_err(|e| AppError::internal(e).into());
                    }
                    let percent = *rx.borrow_and_update();
                    if let Err(error) = self.progress(stage, attempt, percent).await {
                        tracing::debug!(%error, "could not report a stage's progress");
                    }
                }
            }
        }
    }

    /// Publishes that `stage_percent` of the stage is done.
    async fn progress(&self, stage: Stage, attempt: i32, stage_percent: f64) -> AppResult<()> {
        let scoped = self.pipeline.db.as_service().await?;
        jobs::fence(&scoped, self.job.id, self.worker).await?;
        let event = StageEvent {
            stage_percent,
            ..StageEvent::new(stage, attempt, StagePhase::Progress)
        };
        announce(&scoped, &self.meeting, event).await?;
        scoped.commit().await
    }

    /// The original, downloaded once per run.
    async fn original(&self) -> Result<&PathBuf, Failure> {
        if tokio::fs::metadata(&self.original).await.is_err() {
            let key = self
                .meeting
                .original_object
                .as_deref()
                .ok_or_else(|| Failure::permanent("the meeting has no stored recording"))?;
            self.pipeline.storage.get_to_file(key, &self.original).await?;
        }
        Ok(&self.original)
    }

    /// The converted audio, downloaded once per run.
    async fn converted(&self) -> Result<&PathBuf, Failure> {
        if tokio::fs::metadata(&self.wav).await.is_err() {
            self.pipeline
                .storage
                .get_to_file(&audio_key(self.meeting.id), &self.wav)
                .await?;
        }
        Ok(&self.wav)
    }

    async fn validate(&self, attempt: i32) -> Result<RunState, Failure> {
        let path = self.original().await?;
        let size = tokio::fs::metadata(path).await.map_err(AppError::internal)?.len();
        if Some(i64::try_from(size).unwrap_or(-1)) != self.meeting.size_bytes {
            return Err(Failure::permanent(
                "the stored recording is damaged (its size changed); upload it again",
            ));
        }
        self.end_alone(Stage::Validate, attempt, RunState::Succeeded)
            .await
    }

    async fn convert(&self, attempt: i32) -> Result<RunState, Failure> {
        let input = self.original().await?.clone();
        let extension = self
            .meeting
            .content_type
            .as_deref()
            .and_then(container::declared)
            .map_or("wav", |(declared, _)| declared.extension());
        let output = self.wav.clone();
        let converted = self
            .blocking_with_progress(Stage::Convert, attempt, move |progress| {
                convert::convert(&input, extension, &output, progress)
            })
            .await?
            .map_err(|e| match e {
                convert::ConvertError::Unplayable(u) => Failure::permanent(u.message),
                convert::ConvertError::Write(e) => AppError::internal(e).into(),
            })?;
        let key = audio_key(self.meeting.id);
        self.pipeline.storage.put_file(&key, &self.wav).await?;
        let scoped = self.pipeline.db.as_service().await?;
        clear::<meeting_audio::Entity>(&scoped, meeting_audio::Column::MeetingId, self.meeting.id).await?;
        let now = Utc::now();
        scoped
            .insert(meeting_audio::ActiveModel {
                meeting_id: Set(self.meeting.id),
                user_id: Set(self.meeting.user_id),
                audio_object: Set(key),
                duration_ms: Set(audio::frames_to_ms(converted.frames)),
                speech_spans: Set(None),
                strategy: Set(None),
                coverage_percent: Set(None),
                estimated_cost_micros: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .await?;
        self.succeed(scoped, Stage::Convert, attempt).await
    }

    async fn audio_row(&self, scoped: &Scoped) -> AppResult<meeting_audio::Model> {
        scoped
            .find::<meeting_audio::Entity>()
            .filter(meeting_audio::Column::MeetingId.eq(self.meeting.id))
            .one(scoped.txn())
            .await?
            .ok_or_else(|| AppError::internal("the converted audio's row is missing"))
    }

    async fn segment(&self, attempt: i32) -> Result<RunState, Failure> {
        let path = self.converted().await?.clone();
        let (levels, total_ms) = self
            .blocking_with_progress(Stage::Segment, attempt, move |progress| {
                vad::frame_levels(&path, progress)
            })
            .await?
            .map_err(AppError::internal)?;
        let spans = vad::speech_spans(&levels, total_ms);
        let scoped = self.pipeline.db.as_service().await?;
        let settings = sampling::for_user(&scoped, self.meeting.user_id).await?;
        let max_ms = settings.max_segment_ms.min(sampling::PROVIDER_MAX_SEGMENT_MS);
        let pieces = vad::cut(total_ms, &spans, max_ms);
        clear::<segment::Entity>(&scoped, segment::Column::MeetingId, self.meeting.id).await?;
        let now = Utc::now();
        for (position, piece) in pieces.iter().enumerate() {
            scoped
                .insert(segment::ActiveModel {
                    meeting_id: Set(self.meeting.id),
                    position: Set(i32::try_from(position).unwrap_or(i32::MAX)),
                    user_id: Set(self.meeting.user_id),
                    start_ms: Set(piece.0),
                    end_ms: Set(piece.1),
                    speech_ms: Set(vad::speech_within(&spans, *piece)),
                    selected: Set(false),
                    transcript: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                })
                .await?;
        }
        scoped
            .update_many::<meeting_audio::Entity>()
            .col_expr(
                meeting_audio::Column::SpeechSpans,
                Expr::value(serde_json::json!(spans)),
            )
            .col_expr(meeting_audio::Column::UpdatedAt, Expr::value(now))
            .filter(meeting_audio::Column::MeetingId.eq(self.meeting.id))
            .exec()
            .await?;
        self.succeed(scoped, Stage::Segment, attempt).await
    }

    async fn segments(&self, scoped: &Scoped) -> AppResult<Vec<segment::Model>> {
        Ok(scoped
            .find::<segment::Entity>()
            .filter(segment::Column::MeetingId.eq(self.meeting.id))
            .order_by_asc(segment::Column::Position)
            .all(scoped.txn())
            .await?)
    }

    async fn sample(&self, attempt: i32) -> Result<RunState, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        let settings = sampling::for_user(&scoped, self.meeting.user_id).await?;
        let segments = self.segments(&scoped).await?;
        let pieces: Vec<Piece> = segments
            .iter()
            .map(|s| Piece {
                position: s.position,
                duration_ms: s.end_ms - s.start_ms,
                speech_ms: s.speech_ms,
            })
            .collect();
        let price = self.pipeline.config.processing.price_per_minute_micros;
        let choice = sampling::choose(settings.strategy, settings.budget_ms, &pieces, price);
        let now = Utc::now();
        for selected in [false, true] {
            let mut update = scoped
                .update_many::<segment::Entity>()
                .col_expr(segment::Column::Selected, Expr::value(selected))
                .col_expr(segment::Column::UpdatedAt, Expr::value(now))
                .filter(segment::Column::MeetingId.eq(self.meeting.id));
            if selected {
                update = update.filter(segment::Column::Position.is_in(choice.positions.iter().copied()));
            }
            update.exec().await?;
        }
        scoped
            .update_many::<meeting_audio::Entity>()
            .col_expr(meeting_audio::Column::Strategy, Expr::value(settings.strategy))
            .col_expr(
                meeting_audio::Column::CoveragePercent,
                Expr::value(choice.coverage_percent),
            )
            .col_expr(
                meeting_audio::Column::EstimatedCostMicros,
                Expr::value(choice.estimated_cost_micros),
            )
            .col_expr(meeting_audio::Column::UpdatedAt, Expr::value(now))
            .filter(meeting_audio::Column::MeetingId.eq(self.meeting.id))
            .exec()
            .await?;
        if choice.estimated_cost_micros > 0 {
            ledger::record(
                &scoped,
                self.meeting.user_id,
                Category::AiCostMicros,
                choice.estimated_cost_micros,
                Some(self.meeting.id),
                metric::Kind::Estimate,
                now,
            )
            .await?;
        }
        self.succeed(scoped, Stage::Sample, attempt).await
    }

    async fn transcribe(&self, attempt: i32) -> Result<RunState, Failure> {
        let transcriber = &self.pipeline.transcriber;
        let Some(model) = transcriber.model() else {
            return self
                .end_alone(Stage::Transcribe, attempt, RunState::Skipped)
                .await;
        };
        let price = self.pipeline.config.processing.price_per_minute_micros;
        let pending: Vec<segment::Model> = {
            let scoped = self.pipeline.db.as_service().await?;
            self.segments(&scoped).await?
        };
        let selected_ms: i64 = pending
            .iter()
            .filter(|s| s.selected)
            .map(|s| s.end_ms - s.start_ms)
            .sum();
        let mut done_ms: i64 = pending
            .iter()
            .filter(|s| s.selected && s.transcript.is_some())
            .map(|s| s.end_ms - s.start_ms)
            .sum();
        for piece in pending.iter().filter(|s| s.selected && s.transcript.is_none()) {
            let path = self.converted().await?.clone();
            let (start, end) = (piece.start_ms, piece.end_ms);
            let wav = tokio::task::spawn_blocking(move || audio::cut(&path, start, end))
                .await
                .map_err(AppError::internal)?
                .map_err(AppError::internal)?;
            let mut heard = transcriber.transcribe(wav).await?;
            for line in &mut heard.lines {
                line.start_ms = (line.start_ms + start).min(end);
                line.end_ms = (line.end_ms + start).min(end);
            }
            let scoped = self.pipeline.db.as_service().await?;
            jobs::fence(&scoped, self.job.id, self.worker).await?;
            let now = Utc::now();
            scoped
                .update_many::<segment::Entity>()
                .col_expr(
                    segment::Column::Transcript,
                    Expr::value(serde_json::to_value(&heard).map_err(AppError::internal)?),
                )
                .col_expr(segment::Column::UpdatedAt, Expr::value(now))
                .filter(segment::Column::MeetingId.eq(self.meeting.id))
                .filter(segment::Column::Position.eq(piece.position))
                .exec()
                .await?;
            ledger::record(
                &scoped,
                self.meeting.user_id,
                Category::AiCostMicros,
                sampling::cost_micros(end - start, price),
                Some(self.meeting.id),
                metric::Kind::Actual,
                now,
            )
            .await?;
            done_ms += end - start;
            if done_ms < selected_ms {
                let event = StageEvent {
                    stage_percent: (done_ms as f64 * 100.0 / selected_ms as f64).floor(),
                    ..StageEvent::new(Stage::Transcribe, attempt, StagePhase::Progress)
                };
                announce(&scoped, &self.meeting, event).await?;
            }
            scoped.commit().await?;
        }

        let scoped = self.pipeline.db.as_service().await?;
        let segments = self.segments(&scoped).await?;
        let heard: Vec<Transcription> = segments
            .iter()
            .filter_map(|s| s.transcript.clone())
            .filter_map(|t| serde_json::from_value(t).ok())
            .collect();
        let coverage = self.audio_row(&scoped).await?.coverage_percent.unwrap_or(0.0);
        self.store_transcript(&scoped, &model, &heard, coverage).await?;
        self.succeed(scoped, Stage::Transcribe, attempt).await
    }

    async fn store_transcript(
        &self,
        scoped: &Scoped,
        model: &str,
        heard: &[Transcription],
        coverage_percent: f64,
    ) -> AppResult<()> {
        let mut languages: Vec<&str> = heard.iter().map(|t| t.language.as_str()).collect();
        languages.sort_unstable();
        let language = languages
            .chunk_by(|a, b| a == b)
            .max_by_key(|run| run.len())
            .and_then(|run| run.first())
            .copied()
            .unwrap_or("");
        let lines: Vec<Line> = heard.iter().flat_map(|t| t.lines.iter().cloned()).collect();
        results::replace_transcript(scoped, &self.meeting, (language, model, coverage_percent), &lines).await
    }

    async fn analyze(&self, attempt: i32) -> Result<RunState, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        let audio_row = self.audio_row(&scoped).await?;
        let spans: Vec<vad::Span> = audio_row
            .speech_spans
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let metrics = analyze::audio_metrics(audio_row.duration_ms, &spans);
        let text = if let Some(lines) = results::transcript_lines(&scoped, self.meeting.id).await? {
            let transcribed_speech: i64 = self
                .segments(&scoped)
                .await?
                .iter()
                .filter(|s| s.selected)
                .map(|s| s.speech_ms)
                .sum();
            Some(analyze::text_metrics(
                &lines,
                transcribed_speech,
                &self.pipeline.config.processing.filler_words,
            ))
        } else {
            None
        };
        let now = Utc::now();
        results::replace_analysis(
            &scoped,
            analysis::ActiveModel {
                meeting_id: Set(self.meeting.id),
                user_id: Set(self.meeting.user_id),
                total_ms: Set(metrics.total_ms),
                speech_ms: Set(metrics.speech_ms),
                speech_ratio: Set(metrics.speech_ratio),
                pause_count: Set(metrics.pause_count),
                average_pause_ms: Set(metrics.average_pause_ms),
                longest_pause_ms: Set(metrics.longest_pause_ms),
                longest_monologue_ms: Set(metrics.longest_monologue_ms),
                words_per_minute: Set(text.as_ref().map(|t| t.words_per_minute)),
                filler_word_count: Set(text.as_ref().map(|t| t.fillers.iter().map(|(_, c)| c).sum())),
                filler_words: Set(serde_json::json!(
                    text.as_ref()
                        .map(|t| t
                            .fillers
                            .iter()
                            .map(|(word, count)| serde_json::json!({"word": word, "count": count}))
                            .collect::<Vec<_>>())
                        .unwrap_or_default()
                )),
                question_count: Set(text.as_ref().map(|t| t.question_count)),
                skill_scores: Set(serde_json::json!([])),
                longest_monologue_words: Set(text.as_ref().map(|t| t.longest_monologue_words)),
                created_at: Set(now),
                updated_at: Set(now),
            },
        )
        .await?;
        self.succeed(scoped, Stage::Analyze, attempt).await
    }

    async fn cleanup(&self, attempt: i32, parked: bool) -> Result<RunState, Failure> {
        if parked {
            // The converted audio waits for transcription.
            return self.end_alone(Stage::Cleanup, attempt, RunState::Skipped).await;
        }
        self.pipeline
            .storage
            .delete_prefix(&work_prefix(self.meeting.id))
            .await?;
        self.end_alone(Stage::Cleanup, attempt, RunState::Succeeded).await
    }

    /// The meeting is ready (or parked): settle its analysis minutes and
    /// end the job, in one transaction.
    async fn finish(&self, parked: bool) -> Result<Outcome, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        let now = Utc::now();
        let to = if parked {
            Status::AwaitingTranscription
        } else {
            Status::Ready
        };
        if !store::transition(&scoped, self.meeting.id, &[Status::Processing], to).await? {
            // Deleted while it was processed: nothing to announce.
            release_reservation(&scoped, self.job).await?;
            jobs::succeed(&scoped, self.job.id, self.worker).await?;
            scoped.commit().await?;
            return Ok(Outcome::Gone);
        }
        scoped
            .update_many::<meeting::Entity>()
            .col_expr(meeting::Column::CurrentStage, Expr::value(None::<String>))
            .col_expr(meeting::Column::FailureReason, Expr::value(None::<String>))
            .col_expr(meeting::Column::ProcessedAt, Expr::value(now))
            .filter(meeting::Column::Id.eq(self.meeting.id))
            .exec()
            .await?;
        settle_reservation(&scoped, self.job, &self.meeting, now).await?;
        let has_transcript = !parked && self.pipeline.transcriber.model().is_some();
        let (owner, id) = (self.meeting.user_id, Some(self.meeting.id));
        if !parked {
            crate::events::publish(&scoped, owner, id, Payload::MeetingReady { has_transcript }).await?;
        }
        let ended = Payload::ProcessingEnded {
            status: to,
            failure_reason: String::new(),
            has_transcript,
        };
        crate::events::publish(&scoped, owner, id, ended).await?;
        jobs::succeed(&scoped, self.job.id, self.worker).await?;
        scoped.commit().await?;
        Ok(if parked { Outcome::Parked } else { Outcome::Ready })
    }
}

/// Deletes the meeting's rows of `E` (`column` holds the meeting id): a
/// stage replaces its results rather than adding to them.
async fn clear<E>(scoped: &Scoped, column: E::Column, meeting_id: Uuid) -> AppResult<()>
where
    E: crate::db::Owned,
{
    scoped
        .delete_many::<E>()
        .filter(column.eq(meeting_id))
        .exec()
        .await?;
    Ok(())
}

/// Commits the analysis minutes held for the meeting on its real length.
async fn settle_reservation(
    scoped: &Scoped,
    job: &job::Model,
    meeting: &meeting::Model,
    now: chrono::DateTime<Utc>,
) -> AppResult<()> {
    let Some(id) = job.reservation_id else {
        return Ok(());
    };
    if let Some(reservation) = ledger::find(scoped, id).await? {
        let minutes = super::minutes(meeting.duration_ms.unwrap_or(0));
        reservation.commit(scoped, minutes, Some(meeting.id), now).await?;
    }
    jobs::clear_reservation(scoped, job.id).await
}

/// Gives back the analysis minutes held for a job that will not finish
/// (dead, or its meeting deleted); a retry holds them again.
pub async fn release_reservation(scoped: &Scoped, job: &job::Model) -> AppResult<()> {
    let Some(id) = job.reservation_id else {
        return Ok(());
    };
    if let Some(reservation) = ledger::find(scoped, id).await? {
        reservation.release(scoped, Utc::now()).await?;
    }
    jobs::clear_reservation(scoped, job.id).await
}

/// Marks the runs a dead worker left `running` as failed.
pub async fn fail_interrupted_runs(scoped: &Scoped, meeting_id: Uuid) -> AppResult<()> {
    let now = Utc::now();
    scoped
        .update_many::<stage_run::Entity>()
        .col_expr(stage_run::Column::State, Expr::value(RunState::Failed))
        .col_expr(stage_run::Column::FinishedAt, Expr::value(now))
        .col_expr(
            stage_run::Column::Error,
            Expr::value("interrupted: the worker processing it stopped"),
        )
        .col_expr(stage_run::Column::UpdatedAt, Expr::value(now))
        .filter(stage_run::Column::MeetingId.eq(meeting_id))
        .filter(stage_run::Column::State.eq(RunState::Running))
        .exec()
        .await?;
    Ok(())
}

/// Ends a stage run with `state` (and an error).
pub async fn end_run(
    scoped: &Scoped,
    meeting_id: Uuid,
    stage: Stage,
    attempt: i32,
    state: RunState,
    error: Option<&str>,
) -> AppResult<()> {
    let now = Utc::now();
    scoped
        .update_many::<stage_run::Entity>()
        .col_expr(stage_run::Column::State, Expr::value(state))
        .col_expr(stage_run::Column::FinishedAt, Expr::value(now))
        .col_expr(stage_run::Column::Error, Expr::value(error))
        .col_expr(stage_run::Column::UpdatedAt, Expr::value(now))
        .filter(stage_run::Column::MeetingId.eq(meeting_id))
        .filter(stage_run::Column::Stage.eq(stage))
        .filter(stage_run::Column::Attempt.eq(attempt))
        .exec()
        .await?;
    Ok(())
}

/// What a stage event says.
#[derive(Debug, Clone)]
pub struct StageEvent {
    /// The stage.
    pub stage: Stage,
    /// Which attempt.
    pub attempt: i32,
    /// What happened.
    pub phase: StagePhase,
    /// How much of the stage is done, 0 to 100.
    pub stage_percent: f64,
    /// Why it failed.
    pub error: String,
    /// Whether a failed stage will be tried again by itself.
    pub will_retry: bool,
}

impl StageEvent {
    /// The event of `phase`: nothing done when it starts or fails, all of
    /// it once completed or skipped.
    pub fn new(stage: Stage, attempt: i32, phase: StagePhase) -> Self {
        let done = matches!(phase, StagePhase::Completed | StagePhase::Skipped);
        Self {
            stage,
            attempt,
            phase,
            stage_percent: if done { 100.0 } else { 0.0 },
            error: String::new(),
            will_retry: false,
        }
    }

    fn into_payload(self) -> Payload {
        let share = 100.0 / STAGES.len() as f64;
        Payload::ProcessingStage {
            phase: self.phase,
            stage: self.stage,
            attempt: self.attempt,
            percent: percent_at(self.stage) + share * self.stage_percent / 100.0,
            stage_percent: self.stage_percent,
            error: self.error,
            will_retry: self.will_retry,
        }
    }
}

/// Publishes a stage event for the meeting's owner.
pub async fn announce(scoped: &Scoped, meeting: &meeting::Model, event: StageEvent) -> AppResult<()> {
    crate::events::publish(scoped, meeting.user_id, Some(meeting.id), event.into_payload())
        .await
        .map(|_| ())
}
