//! The stages themselves: each does its work, then writes its results in
//! the transaction that marks it succeeded.

use chrono::Utc;
use sea_orm::ActiveValue::Set;

use super::progress::{StageEvent, announce};
use super::{Failure, Run};
use crate::audio::{self, container, convert, vad};
use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::events::model::StagePhase;
use crate::lifecycle::Stage;
use crate::meetings::results::{self, Line, TranscriptHeader, analysis};
use crate::processing::entity::{RunState, segment};
use crate::processing::sampling::{self, Piece};
use crate::processing::store::{self, Sampled};
use crate::processing::transcribe::Transcription;
use crate::processing::{analyze, jobs};
use crate::usage::entity::metric;
use crate::usage::ledger;
use crate::usage::model::Category;

impl Run<'_> {
    pub(super) async fn validate(&self, attempt: i32) -> Result<RunState, Failure> {
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

    pub(super) async fn convert(&self, attempt: i32) -> Result<RunState, Failure> {
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
        let key = super::audio_key(self.meeting.id);
        self.pipeline.storage.put_file(&key, &self.wav).await?;
        let scoped = self.pipeline.db.as_service().await?;
        let duration_ms = audio::frames_to_ms(converted.frames);
        store::replace_audio(&scoped, &self.meeting, key, duration_ms).await?;
        self.succeed(scoped, Stage::Convert, attempt).await
    }

    pub(super) async fn segment(&self, attempt: i32) -> Result<RunState, Failure> {
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
        let syllables = audio::syllables::count(&levels, &spans);
        store::replace_segments(&scoped, &self.meeting, &pieces, &spans, syllables).await?;
        self.succeed(scoped, Stage::Segment, attempt).await
    }

    pub(super) async fn sample(&self, attempt: i32) -> Result<RunState, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        let settings = sampling::for_user(&scoped, self.meeting.user_id).await?;
        let segments = store::segments(&scoped, self.meeting.id).await?;
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
        let sampled = Sampled {
            strategy: settings.strategy,
            positions: &choice.positions,
            coverage_percent: choice.coverage_percent,
            estimated_cost_micros: choice.estimated_cost_micros,
        };
        store::record_sampling(&scoped, self.meeting.id, sampled).await?;
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

    pub(super) async fn transcribe(&self, attempt: i32) -> Result<RunState, Failure> {
        let transcriber = &self.pipeline.transcriber;
        let Some(model) = transcriber.model() else {
            return self
                .end_alone(Stage::Transcribe, attempt, RunState::Skipped)
                .await;
        };
        let price = self.pipeline.config.processing.price_per_minute_micros;
        let pending: Vec<segment::Model> = {
            let scoped = self.pipeline.db.as_service().await?;
            store::segments(&scoped, self.meeting.id).await?
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
            store::record_heard(&scoped, self.meeting.id, piece.position, &heard).await?;
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
        let segments = store::segments(&scoped, self.meeting.id).await?;
        let heard: Vec<Transcription> = segments
            .iter()
            .filter_map(|s| s.transcript.clone())
            .filter_map(|t| serde_json::from_value(t).ok())
            .collect();
        let coverage = store::audio(&scoped, self.meeting.id)
            .await?
            .coverage_percent
            .unwrap_or(0.0);
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
        let header = TranscriptHeader {
            language,
            model,
            coverage_percent,
        };
        results::replace_transcript(scoped, &self.meeting, header, &lines).await
    }

    pub(super) async fn analyze(&self, attempt: i32) -> Result<RunState, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        let audio_row = store::audio(&scoped, self.meeting.id).await?;
        let spans: Vec<vad::Span> = audio_row
            .speech_spans
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let metrics = analyze::audio_metrics(audio_row.duration_ms, &spans);
        let estimated_wpm = audio_row
            .syllable_count
            .and_then(|syllables| analyze::estimated_words_per_minute(syllables, metrics.speech_ms));
        let text = if let Some(lines) = results::transcript_lines(&scoped, self.meeting.id).await? {
            let transcribed_speech: i64 = store::segments(&scoped, self.meeting.id)
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
        let stored = results::replace_analysis(
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
                word_count: Set(text.as_ref().map(|t| t.word_count)),
                estimated_words_per_minute: Set(estimated_wpm),
                ..Default::default()
            },
        )
        .await?;
        crate::processing::scores::score(&scoped, &self.meeting, &stored).await?;
        self.succeed(scoped, Stage::Analyze, attempt).await
    }

    pub(super) async fn cleanup(&self, attempt: i32, parked: bool) -> Result<RunState, Failure> {
        if parked {
            // The converted audio waits for transcription.
            return self.end_alone(Stage::Cleanup, attempt, RunState::Skipped).await;
        }
        self.pipeline
            .storage
            .delete_prefix(&super::work_prefix(self.meeting.id))
            .await?;
        self.end_alone(Stage::Cleanup, attempt, RunState::Succeeded).await
    }
}
