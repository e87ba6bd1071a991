//! Practice's work on the durable job queue, plugged into the processing
//! workers by `server.rs`:
//!
//! - [`Recordings`] hears when a spoken attempt's recording (a meeting of
//!   kind `practice`) starts and ends processing, and queues its feedback;
//! - [`FeedbackTask`] (`practice_feedback`) scores a spoken attempt from
//!   what processing measured, adds AI feedback when it was asked for, and
//!   announces the result;
//! - [`ScenarioTask`] (`generate_scenario`) writes a session's scenario
//!   exercises for the person, with the AI provider when it is enabled and
//!   from their templates otherwise.

use std::sync::Arc;

use uuid::Uuid;

use super::ai::{Ai, Unavailable};
use super::entity::{AttemptState, attempt};
use super::model::{ExerciseState, SessionExercise};
use super::personal::Person;
use super::run;
use super::scoring::{Answer, Audio, Feedback, LONG_PAUSE_MS, Metrics, Scored, Scorer};
use super::sessions::{self, AttemptUpdate};
use crate::audio::vad;
use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::events::model::Payload;
use crate::lifecycle::Status;
use crate::meetings::entity::{self as meeting, Kind};
use crate::meetings::results;
use crate::processing::entity::job;
use crate::processing::jobs;
use crate::processing::pipeline::Failure;
use crate::processing::tasks::{OnProcessed, Task};
use crate::shared::Shared;

/// The job kind that scores a spoken attempt (and adds AI feedback).
pub const FEEDBACK: &str = "practice_feedback";
/// The job kind that writes a session's scenarios.
pub const SCENARIOS: &str = "generate_scenario";

/// What practice's jobs share.
#[derive(Debug)]
pub struct Practice {
    shared: Shared,
    scorer: Scorer,
    ai: Ai,
}

impl Practice {
    /// Practice's jobs over the shared state and an AI provider.
    pub fn new(shared: &Shared, provider: Arc<dyn super::ai::AiProvider>) -> Arc<Self> {
        Arc::new(Self {
            scorer: Scorer::new(&shared.config.processing.filler_words),
            ai: Ai {
                db: shared.db.clone(),
                provider,
                upgrade_url: shared.config.upgrade_url.clone(),
            },
            shared: shared.clone(),
        })
    }
}

/// Queues the feedback job of an attempt (in `scoped`).
pub async fn queue_feedback(scoped: &Scoped, shared: &Shared, attempt: &attempt::Model) -> AppResult<()> {
    jobs::enqueue_task(
        scoped,
        attempt.user_id,
        FEEDBACK,
        attempt.id,
        shared.config.processing.max_attempts,
    )
    .await
}

/// Hears about spoken attempts' recordings.
#[derive(Debug)]
pub struct Recordings(pub Arc<Practice>);

#[tonic::async_trait]
impl OnProcessed for Recordings {
    async fn processed(&self, scoped: &Scoped, meeting: &meeting::Model, status: Status) -> AppResult<()> {
        if meeting.kind != Kind::Practice {
            return Ok(());
        }
        let Some(attempt) = sessions::attempt_of_recording(scoped, meeting.id).await? else {
            return Ok(());
        };
        match status {
            Status::Processing => {
                sessions::update_attempt(
                    scoped,
                    attempt.id,
                    AttemptUpdate {
                        state: Some(AttemptState::Processing),
                        ..Default::default()
                    },
                )
                .await
            }
            Status::Ready | Status::AwaitingTranscription => {
                queue_feedback(scoped, &self.0.shared, &attempt).await
            }
            Status::Failed => {
                let reason = crate::meetings::store::get(scoped, meeting.id)
                    .await?
                    .failure_reason
                    .unwrap_or_else(|| "the recording could not be processed".into());
                fail(scoped, &attempt, &reason).await
            }
            _ => Ok(()),
        }
    }
}

/// Marks an attempt failed and says so on the person's stream.
async fn fail(scoped: &Scoped, attempt: &attempt::Model, reason: &str) -> AppResult<()> {
    sessions::update_attempt(
        scoped,
        attempt.id,
        AttemptUpdate {
            state: Some(AttemptState::Failed),
            failure_reason: Some(reason.to_owned()),
            ..Default::default()
        },
    )
    .await?;
    run::announce_feedback(scoped, &sessions::attempt(scoped, attempt.id).await?).await
}

/// Scores spoken attempts and adds AI feedback.
#[derive(Debug)]
pub struct FeedbackTask(pub Arc<Practice>);

/// What scoring an attempt found.
struct Outcome {
    scored: Scored,
    /// The transcript and length of a recording, to store on the attempt.
    heard: Option<(String, i64)>,
}

impl FeedbackTask {
    /// Scores a spoken attempt from its recording's processing.
    async fn measure(
        &self,
        scoped: &Scoped,
        attempt: &attempt::Model,
        exercise: &SessionExercise,
    ) -> Result<Outcome, Failure> {
        let meeting_id = attempt
            .recording_meeting_id
            .ok_or_else(|| Failure::permanent("the attempt has no recording"))?;
        let (_, analysis) = results::analysed(scoped, meeting_id).await?;
        let text = results::transcript_lines(scoped, meeting_id).await?.map(|lines| {
            lines
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        });
        let spans: Vec<vad::Span> = crate::processing::store::audio(scoped, meeting_id)
            .await?
            .speech_spans
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let long_pauses = vad::pauses(&spans)
            .iter()
            .filter(|(s, e)| e - s >= LONG_PAUSE_MS)
            .count();
        let scored = self.0.scorer.score(&Answer {
            kind: exercise.kind,
            rubric: &exercise.rubric,
            text: text.as_deref(),
            duration_ms: Some(analysis.total_ms),
            audio: Some(Audio {
                speech_ms: analysis.speech_ms,
                words_per_minute: analysis.words_per_minute.or(analysis.estimated_words_per_minute),
                estimated: analysis.words_per_minute.is_none(),
                long_pauses: i32::try_from(long_pauses).unwrap_or(i32::MAX),
                longest_pause_ms: analysis.longest_pause_ms,
            }),
        });
        Ok(Outcome {
            scored,
            heard: Some((text.unwrap_or_default(), analysis.total_ms)),
        })
    }
}

fn stored(attempt: &attempt::Model) -> Result<Scored, Failure> {
    let json = |value: &Option<serde_json::Value>| value.clone().unwrap_or_default();
    Ok(Scored {
        score: attempt.score.unwrap_or(0.0),
        feedback: serde_json::from_value::<Feedback>(json(&attempt.feedback)).map_err(AppError::internal)?,
        metrics: serde_json::from_value::<Metrics>(json(&attempt.metrics)).map_err(AppError::internal)?,
    })
}

#[tonic::async_trait]
impl Task for FeedbackTask {
    fn kind(&self) -> &'static str {
        FEEDBACK
    }

    async fn run(&self, job: &job::Model, subject: Uuid, worker: &str) -> Result<(), Failure> {
        let db = &self.0.shared.db;
        let scoped = db.as_service().await?;
        jobs::fence(&scoped, job.id, worker).await?;
        let attempt = match sessions::attempt(&scoped, subject).await {
            Ok(attempt) if attempt.state != AttemptState::Failed => attempt,
            // Gone with its account, or failed for good: nothing to do.
            Ok(_) | Err(AppError::NotFound { .. }) => {
                jobs::succeed(&scoped, job.id, worker).await?;
                scoped.commit().await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let session = sessions::get(&scoped, attempt.session_id).await?;
        let exercise = sessions::exercises(&session)?
            .into_iter()
            .find(|e| e.id == attempt.exercise_id)
            .ok_or_else(|| Failure::permanent("the attempt's exercise is not in its session"))?;
        let mut outcome = match attempt.state {
            AttemptState::Scored => Outcome {
                scored: stored(&attempt)?,
                heard: None,
            },
            _ => self.measure(&scoped, &attempt, &exercise).await?,
        };
        drop(scoped);
        if attempt.ai_requested && !outcome.scored.feedback.ai_generated {
            let answer = outcome
                .heard
                .as_ref()
                .map_or(attempt.response_text.as_str(), |(text, _)| text.as_str());
            let answer = if answer.is_empty() {
                "(spoken; no transcript, since transcription is turned off)"
            } else {
                answer
            };
            let Scored {
                metrics, feedback, ..
            } = &mut outcome.scored;
            self.0
                .ai
                .add_feedback(attempt.user_id, &exercise, answer, metrics, feedback)
                .await;
        }
        let scoped = db.as_service().await?;
        jobs::fence(&scoped, job.id, worker).await?;
        let Outcome { scored, heard } = outcome;
        let (response_text, duration_ms) = heard.map_or((None, None), |(text, ms)| (Some(text), Some(ms)));
        sessions::update_attempt(
            &scoped,
            attempt.id,
            AttemptUpdate {
                state: Some(AttemptState::Scored),
                score: Some(scored.score),
                feedback: Some(serde_json::to_value(&scored.feedback).map_err(AppError::internal)?),
                metrics: Some(serde_json::to_value(&scored.metrics).map_err(AppError::internal)?),
                response_text,
                duration_ms,
                failure_reason: None,
            },
        )
        .await?;
        run::announce_feedback(&scoped, &sessions::attempt(&scoped, attempt.id).await?).await?;
        jobs::succeed(&scoped, job.id, worker).await?;
        scoped.commit().await?;
        Ok(())
    }

    async fn gave_up(&self, scoped: &Scoped, subject: Uuid, reason: &str) -> AppResult<()> {
        match sessions::attempt(scoped, subject).await {
            // A written attempt keeps its rule-based score.
            Ok(attempt) if attempt.state == AttemptState::Scored => {
                run::announce_feedback(scoped, &attempt).await
            }
            Ok(attempt) => fail(scoped, &attempt, reason).await,
            Err(AppError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Writes scenario exercises.
#[derive(Debug)]
pub struct ScenarioTask(pub Arc<Practice>);

/// Announces that an exercise of `session` is `state`.
pub async fn announce_exercise(
    scoped: &Scoped,
    user_id: Uuid,
    session: Uuid,
    exercise: &SessionExercise,
    message: &str,
) -> AppResult<()> {
    let state = match exercise.state {
        ExerciseState::Ready => "ready",
        ExerciseState::Generating => "generating",
        ExerciseState::Failed => "failed",
    };
    let payload = Payload::PracticeExercise {
        session,
        exercise_id: exercise.id.clone(),
        state: state.into(),
        message: message.into(),
    };
    crate::events::publish(scoped, user_id, None, payload).await?;
    Ok(())
}

#[tonic::async_trait]
impl Task for ScenarioTask {
    fn kind(&self) -> &'static str {
        SCENARIOS
    }

    async fn run(&self, job: &job::Model, subject: Uuid, worker: &str) -> Result<(), Failure> {
        let db = &self.0.shared.db;
        let scoped = db.as_service().await?;
        jobs::fence(&scoped, job.id, worker).await?;
        let session = match sessions::get(&scoped, subject).await {
            Ok(session) => session,
            Err(AppError::NotFound { .. }) => {
                jobs::succeed(&scoped, job.id, worker).await?;
                scoped.commit().await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let person = Person::load(&scoped, session.user_id, session.meeting_id).await?;
        drop(scoped);
        let about = serde_json::json!({
            "job_title": person.profile.job_title,
            "meeting_role": person.profile.onboarding.meeting_role,
            "meeting_types": person.profile.onboarding.meeting_types,
            "goals": person.profile.onboarding.goals,
            "meeting": person.meeting.as_ref().map(|(m, _)| m.title.clone()),
        });
        let mut exercises = sessions::exercises(&session)?;
        let mut written = Vec::new();
        for exercise in exercises
            .iter_mut()
            .filter(|e| e.state == ExerciseState::Generating)
        {
            // The rendered template is the brief, and the scenario when the
            // AI provider is off or fails.
            match self
                .0
                .ai
                .scenario(session.user_id, &exercise.prompt, &about)
                .await
            {
                Ok(scenario) => exercise.prompt = scenario,
                Err(Unavailable::Off) => {}
                Err(why) => tracing::warn!(?why, "no AI scenario; the template's stands"),
            }
            exercise.state = ExerciseState::Ready;
            written.push(exercise.clone());
        }
        let scoped = db.as_service().await?;
        jobs::fence(&scoped, job.id, worker).await?;
        sessions::set_exercises(&scoped, session.id, &exercises).await?;
        for exercise in &written {
            announce_exercise(&scoped, session.user_id, session.id, exercise, "").await?;
        }
        jobs::succeed(&scoped, job.id, worker).await?;
        scoped.commit().await?;
        Ok(())
    }

    async fn gave_up(&self, scoped: &Scoped, subject: Uuid, reason: &str) -> AppResult<()> {
        let session = match sessions::get(scoped, subject).await {
            Ok(session) => session,
            Err(AppError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut exercises = sessions::exercises(&session)?;
        let mut failed = Vec::new();
        for exercise in exercises
            .iter_mut()
            .filter(|e| e.state == ExerciseState::Generating)
        {
            exercise.state = ExerciseState::Failed;
            failed.push(exercise.clone());
        }
        sessions::set_exercises(scoped, session.id, &exercises).await?;
        for exercise in &failed {
            announce_exercise(scoped, session.user_id, session.id, exercise, reason).await?;
        }
        Ok(())
    }
}
