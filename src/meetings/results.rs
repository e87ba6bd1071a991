//! What processing learned about a meeting, owned here: its transcript
//! (a header and ordered lines) and its analysis. Processing writes them
//! through [`replace_transcript`] and [`replace_analysis`]; every read goes
//! through the caller's scope, so another user's meeting is NOT_FOUND.

// The entities below take the prelude through `use super::*`.
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder};

use super::store;
use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::pb::v1 as pb;
use crate::skills::Skill;

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

    crate::db::entity_tail!(owned by UserId);
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

    crate::db::entity_tail!(owned by UserId);
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
        /// Skill scores by the scoring model, `[{"skill": .., "score": ..}]`.
        pub skill_scores: Json,
        /// Most words in one stretch of speech.
        pub longest_monologue_words: Option<i32>,
        /// Words transcribed.
        pub word_count: Option<i32>,
        /// Speaking rate estimated from the audio alone.
        pub estimated_words_per_minute: Option<f64>,
        /// When it was computed.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// One stretch of transcribed text: in the piece's own time as a provider
/// answers, in meeting time once stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Line {
    /// Start.
    pub start_ms: i64,
    /// End.
    pub end_ms: i64,
    /// The words.
    pub text: String,
    /// The provider's confidence, when it gives one.
    pub confidence: Option<f64>,
}

/// What a transcript says about itself.
#[derive(Debug, Clone, Copy)]
pub struct TranscriptHeader<'a> {
    /// The language heard most.
    pub language: &'a str,
    /// The provider's model.
    pub model: &'a str,
    /// Share of the meeting transcribed.
    pub coverage_percent: f64,
}

/// Replaces the transcript of `meeting` (in the scope) with `lines`, in
/// one statement per table.
pub async fn replace_transcript(
    scoped: &Scoped,
    meeting: &super::entity::Model,
    header: TranscriptHeader<'_>,
    lines: &[Line],
) -> AppResult<()> {
    let TranscriptHeader {
        language,
        model,
        coverage_percent,
    } = header;
    clear(scoped, meeting.id).await?;
    scoped
        .insert(transcript::ActiveModel {
            meeting_id: Set(meeting.id),
            user_id: Set(meeting.user_id),
            language: Set(language.to_owned()),
            model: Set(model.to_owned()),
            coverage_percent: Set(coverage_percent),
            ..Default::default()
        })
        .await?;
    let rows = lines
        .iter()
        .enumerate()
        .map(|(position, line)| transcript_segment::ActiveModel {
            meeting_id: Set(meeting.id),
            user_id: Set(meeting.user_id),
            position: Set(i32::try_from(position).unwrap_or(i32::MAX)),
            start_ms: Set(line.start_ms),
            end_ms: Set(line.end_ms),
            text: Set(line.text.clone()),
            confidence: Set(line.confidence),
            ..Default::default()
        });
    scoped.insert_many(rows).await
}

/// Removes the transcript of a meeting of the scope.
async fn clear(scoped: &Scoped, meeting_id: Uuid) -> AppResult<()> {
    scoped
        .delete_many::<transcript_segment::Entity>()
        .filter(transcript_segment::Column::MeetingId.eq(meeting_id))
        .exec()
        .await?;
    scoped
        .delete_many::<transcript::Entity>()
        .filter(transcript::Column::MeetingId.eq(meeting_id))
        .exec()
        .await?;
    Ok(())
}

/// Whether a meeting of the scope has a transcript.
pub async fn has_transcript(scoped: &Scoped, meeting_id: Uuid) -> AppResult<bool> {
    Ok(scoped
        .find::<transcript::Entity>()
        .filter(transcript::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?
        .is_some())
}

/// The transcript's lines of a meeting of the scope, in order; None when it
/// has no transcript.
pub async fn transcript_lines(scoped: &Scoped, meeting_id: Uuid) -> AppResult<Option<Vec<Line>>> {
    if !has_transcript(scoped, meeting_id).await? {
        return Ok(None);
    }
    let rows = scoped
        .find::<transcript_segment::Entity>()
        .filter(transcript_segment::Column::MeetingId.eq(meeting_id))
        .order_by_asc(transcript_segment::Column::Position)
        .all(scoped.txn())
        .await?;
    Ok(Some(rows.into_iter().map(Line::from).collect()))
}

impl From<transcript_segment::Model> for Line {
    fn from(row: transcript_segment::Model) -> Self {
        let transcript_segment::Model {
            start_ms,
            end_ms,
            text,
            confidence,
            // Its place is its index in the transcript.
            id: _,
            meeting_id: _,
            user_id: _,
            position: _,
            created_at: _,
            updated_at: _,
        } = row;
        Self {
            start_ms,
            end_ms,
            text,
            confidence,
        }
    }
}

/// Replaces the analysis of a meeting of the scope; returns it.
pub async fn replace_analysis(scoped: &Scoped, row: analysis::ActiveModel) -> AppResult<analysis::Model> {
    let Set(meeting_id) = row.meeting_id else {
        return Err(AppError::internal("an analysis names its meeting"));
    };
    scoped
        .delete_many::<analysis::Entity>()
        .filter(analysis::Column::MeetingId.eq(meeting_id))
        .exec()
        .await?;
    scoped.insert(row).await
}

/// Keeps the skill scores of a meeting's analysis (`[{"skill", "score"}]`).
pub async fn set_skill_scores(scoped: &Scoped, meeting_id: Uuid, scores: &[(Skill, f64)]) -> AppResult<()> {
    let json: Vec<serde_json::Value> = scores
        .iter()
        .map(|(skill, score)| serde_json::json!({"skill": skill, "score": score}))
        .collect();
    scoped
        .update_many::<analysis::Entity>()
        .col_expr(
            analysis::Column::SkillScores,
            sea_orm::sea_query::Expr::value(serde_json::json!(json)),
        )
        .filter(analysis::Column::MeetingId.eq(meeting_id))
        .exec()
        .await?;
    Ok(())
}

/// The skill scores kept on an analysis.
pub fn skill_scores(json: &serde_json::Value) -> Vec<(Skill, f64)> {
    json.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| Some((Skill::parse(e["skill"].as_str()?)?, e["score"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The transcript of a meeting of the scope.
pub async fn transcript(scoped: &Scoped, meeting_id: Uuid) -> AppResult<pb::Transcript> {
    store::get(scoped, meeting_id).await?;
    let header = scoped
        .find::<transcript::Entity>()
        .filter(transcript::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("transcript"))?;
    let lines = scoped
        .find::<transcript_segment::Entity>()
        .filter(transcript_segment::Column::MeetingId.eq(meeting_id))
        .order_by_asc(transcript_segment::Column::Position)
        .all(scoped.txn())
        .await?;
    Ok(pb::Transcript::from((header, lines)))
}

/// The analysis of a meeting of the scope.
pub async fn analysis(scoped: &Scoped, meeting_id: Uuid) -> AppResult<pb::Analysis> {
    store::get(scoped, meeting_id).await?;
    let a = scoped
        .find::<analysis::Entity>()
        .filter(analysis::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("analysis"))?;
    Ok(pb::Analysis::from(a))
}

/// The analysed meetings of `user_id` (of kind meeting, not deleted),
/// newest first, each with its analysis: at most `limit`, in two queries.
pub async fn recent_analyses(
    scoped: &Scoped,
    user_id: Uuid,
    limit: u64,
) -> AppResult<Vec<(super::entity::Model, analysis::Model)>> {
    use super::entity::{self as meeting, Kind};
    use sea_orm::QuerySelect;
    let meetings = scoped
        .find::<meeting::Entity>()
        .filter(meeting::Column::UserId.eq(user_id))
        .filter(meeting::Column::Kind.eq(Kind::Meeting))
        .filter(meeting::Column::DeletedAt.is_null())
        .filter(meeting::Column::ProcessedAt.is_not_null())
        .order_by_desc(meeting::Column::Id)
        .limit(limit)
        .all(scoped.txn())
        .await?;
    with_analyses(scoped, meetings).await
}

/// A meeting of the scope with its analysis, or NOT_FOUND.
pub async fn analysed(
    scoped: &Scoped,
    meeting_id: Uuid,
) -> AppResult<(super::entity::Model, analysis::Model)> {
    let meeting = store::get(scoped, meeting_id).await?;
    with_analyses(scoped, vec![meeting])
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("analysis"))
}

async fn with_analyses(
    scoped: &Scoped,
    meetings: Vec<super::entity::Model>,
) -> AppResult<Vec<(super::entity::Model, analysis::Model)>> {
    let mut analyses = scoped
        .find::<analysis::Entity>()
        .filter(analysis::Column::MeetingId.is_in(meetings.iter().map(|m| m.id)))
        .all(scoped.txn())
        .await?;
    Ok(meetings
        .into_iter()
        .filter_map(|m| {
            let at = analyses.iter().position(|a| a.meeting_id == m.id)?;
            Some((m, analyses.swap_remove(at)))
        })
        .collect())
}

impl From<&analysis::Model> for crate::skills::scoring::Measured {
    fn from(a: &analysis::Model) -> Self {
        let top_fillers = a
            .filler_words
            .as_array()
            .map(|words| {
                words
                    .iter()
                    .filter_map(|w| w["word"].as_str().map(str::to_owned))
                    .take(3)
                    .collect()
            })
            .unwrap_or_default();
        let fillers_per_100_words = match (a.filler_word_count, a.word_count) {
            (Some(fillers), Some(words)) if words > 0 => Some(f64::from(fillers) * 100.0 / f64::from(words)),
            _ => None,
        };
        let minutes = a.total_ms as f64 / 60_000.0;
        Self {
            words_per_minute: a.words_per_minute.or(a.estimated_words_per_minute),
            pace_estimated: a.words_per_minute.is_none() && a.estimated_words_per_minute.is_some(),
            fillers_per_100_words,
            filler_count: a.filler_word_count,
            top_fillers,
            pause_count: a.pause_count,
            longest_pause_ms: a.longest_pause_ms,
            speech_ms: a.speech_ms,
            longest_monologue_ms: a.longest_monologue_ms,
            longest_monologue_words: a.longest_monologue_words,
            questions: a.question_count,
            questions_per_10_minutes: a
                .question_count
                .filter(|_| minutes >= 1.0)
                .map(|q| f64::from(q) * 10.0 / minutes),
            speech_ratio: a.speech_ratio,
            total_ms: a.total_ms,
        }
    }
}
