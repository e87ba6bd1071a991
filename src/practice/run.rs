//! A session's course: starting one (the plan's practice session held, the
//! version pinned, exercises picked at the person's level and rendered for
//! them), attempting its exercises, and completing it (the session counted,
//! its per-skill scores recorded, the level moved).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::catalog::{self, Which};
use super::entity::{ModuleState, SessionState, attempt, session};
use super::levels;
use super::model::{ExerciseState, SessionExercise};
use super::personal::Person;
use super::scoring::{Answer, Feedback, Scored, Scorer};
use super::sessions::{self, Completion, NewAttempt, NewSession};
use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::events::model::Payload;
use crate::pb::v1 as pb;
use crate::progress::store::{self as progress, NewScore};
use crate::skills::Skill;
use crate::usage::ledger;
use crate::usage::model::Category;

/// Most attempts one session takes.
pub const MAX_ATTEMPTS_PER_SESSION: usize = 60;

/// What `StartSession` asks for, validated.
#[derive(Debug)]
pub struct Start {
    /// The module's id.
    pub module_id: String,
    /// The meeting to personalise with (else the latest analysed one).
    pub meeting_id: Option<Uuid>,
    /// Idempotency key.
    pub request_id: Option<String>,
}

/// Starts a session of `user_id` in `scoped` (the caller commits). A
/// repeated request id returns the first session.
pub async fn start(
    scoped: &Scoped,
    user_id: Uuid,
    start: Start,
    timeout: Duration,
    upgrade_url: &str,
) -> AppResult<session::Model> {
    if let Some(request_id) = &start.request_id
        && let Some(earlier) = sessions::by_request(scoped, request_id).await?
    {
        return Ok(earlier);
    }
    let module = catalog::get(scoped.txn(), &start.module_id, Which::Listed).await?;
    if module.head.state != ModuleState::Published || !module.is_published() {
        return Err(AppError::not_found("module"));
    }
    let fields = module.fields()?;
    let person = Person::load(scoped, user_id, start.meeting_id).await?;
    let skill = fields.skills.first().copied().unwrap_or(Skill::Clarity);
    let level = levels::all(scoped, user_id)
        .await?
        .get(&skill)
        .copied()
        .unwrap_or_else(|| levels::starting(&person.profile.onboarding.experience_level));
    let exercises = sessions::pick(&fields.exercises, level)
        .into_iter()
        .map(|exercise| person.render(exercise))
        .collect::<AppResult<Vec<_>>>()?;
    let now = Utc::now();
    // Held until completed; an abandoned session gives it back, and the
    // hold outlives abandonment by an hour in case housekeeping is late.
    let reservation = ledger::reserve(
        scoped,
        user_id,
        Category::PracticeSessions,
        1,
        timeout + Duration::from_secs(3600),
        upgrade_url,
        now,
    )
    .await?;
    sessions::create(
        scoped,
        NewSession {
            user_id,
            module_id: start.module_id,
            module_version: module.version.version,
            difficulty: level,
            meeting_id: person.meeting.as_ref().map(|(m, _)| m.id),
            exercises,
            reservation_id: reservation.id,
            request_id: start.request_id,
        },
        now,
    )
    .await
}

/// An active session of the scope and the exercise `exercise_id` of it,
/// ready to be attempted.
pub async fn attemptable(
    scoped: &Scoped,
    session_id: Uuid,
    exercise_id: &str,
) -> AppResult<(session::Model, SessionExercise)> {
    let session = sessions::get(scoped, session_id).await?;
    if session.state != SessionState::Active {
        return Err(AppError::FailedPrecondition {
            reason: "SESSION_NOT_ACTIVE",
            message: format!(
                "practiceSessions/{session_id} is {}; start a new session to practise again",
                if session.state == SessionState::Completed {
                    "completed"
                } else {
                    "abandoned"
                }
            ),
            metadata: Default::default(),
        });
    }
    let exercises = sessions::exercises(&session)?;
    let Some(exercise) = exercises.iter().find(|e| e.id == exercise_id).cloned() else {
        let ids: Vec<&str> = exercises.iter().map(|e| e.id.as_str()).collect();
        return Err(AppError::invalid(
            "exercise_id",
            format!(
                "is not an exercise of this session; its exercises are {}",
                ids.join(", ")
            ),
        ));
    };
    if exercise.state != ExerciseState::Ready {
        return Err(AppError::FailedPrecondition {
            reason: "EXERCISE_NOT_READY",
            message: format!(
                "exercise {exercise_id} is {}; a PRACTICE_EXERCISE_UPDATED event says when it is ready",
                if exercise.state == ExerciseState::Generating {
                    "still being generated for you"
                } else {
                    "unavailable: its scenario could not be generated"
                }
            ),
            metadata: Default::default(),
        });
    }
    if sessions::attempts(scoped, session_id).await?.len() >= MAX_ATTEMPTS_PER_SESSION {
        return Err(AppError::FailedPrecondition {
            reason: "SESSION_ATTEMPT_LIMIT",
            message: format!(
                "a session takes at most {MAX_ATTEMPTS_PER_SESSION} attempts; complete it and start another"
            ),
            metadata: Default::default(),
        });
    }
    Ok((session, exercise))
}

/// An answer given as text (written, or a transcript made elsewhere).
#[derive(Debug)]
pub struct TextAnswer {
    /// What was written or said.
    pub text: String,
    /// How long speaking took.
    pub duration_ms: Option<i64>,
    /// Whether AI feedback was asked for.
    pub ai_requested: bool,
    /// Idempotency key.
    pub request_id: Option<String>,
}

/// Scores a text answer to `exercise` and stores it as a scored attempt
/// with its feedback event, in `scoped`.
pub async fn submit_text(
    scoped: &Scoped,
    scorer: &Scorer,
    session: &session::Model,
    exercise: &SessionExercise,
    answer: TextAnswer,
) -> AppResult<attempt::Model> {
    let scored = scorer.score(&Answer {
        kind: exercise.kind,
        rubric: &exercise.rubric,
        text: Some(&answer.text),
        duration_ms: answer.duration_ms,
        audio: None,
    });
    let Scored {
        score,
        metrics,
        feedback,
    } = scored;
    let row = sessions::create_attempt(
        scoped,
        NewAttempt {
            session_id: session.id,
            user_id: session.user_id,
            exercise_id: exercise.id.clone(),
            state: super::entity::AttemptState::Scored,
            response_text: answer.text,
            duration_ms: answer.duration_ms,
            score: Some(score),
            feedback: Some(serde_json::to_value(&feedback).map_err(AppError::internal)?),
            metrics: Some(serde_json::to_value(&metrics).map_err(AppError::internal)?),
            recording_meeting_id: None,
            upload_id: None,
            ai_requested: answer.ai_requested,
            request_id: answer.request_id,
        },
    )
    .await?;
    announce_feedback(scoped, &row).await?;
    Ok(row)
}

/// Publishes the feedback of a scored attempt as a PRACTICE_FEEDBACK event.
pub async fn announce_feedback(scoped: &Scoped, row: &attempt::Model) -> AppResult<()> {
    use base64::Engine as _;
    use prost::Message as _;
    let shown = super::convert::attempt(row)?;
    let message = pb::PracticeFeedback {
        attempt: shown.name.clone(),
        feedback: shown.feedback,
        score: shown.score,
        metrics: shown.metrics,
    };
    let payload = Payload::PracticeFeedback {
        attempt: shown.name,
        message: base64::engine::general_purpose::STANDARD.encode(message.encode_to_vec()),
    };
    crate::events::publish(scoped, row.user_id, None, payload).await?;
    Ok(())
}

/// Completes an active session of the scope: scores it from the best
/// scored attempt at each exercise, counts it against the plan, records its
/// per-skill scores and moves the level of its main skill. A completed
/// session is returned as it is (a retried call).
pub async fn complete(scoped: &Scoped, session_id: Uuid, now: DateTime<Utc>) -> AppResult<session::Model> {
    let session = sessions::get(scoped, session_id).await?;
    match session.state {
        SessionState::Completed => return Ok(session),
        SessionState::Abandoned => {
            return Err(AppError::FailedPrecondition {
                reason: "SESSION_NOT_ACTIVE",
                message: format!("practiceSessions/{session_id} was abandoned; start a new session"),
                metadata: Default::default(),
            });
        }
        SessionState::Active => {}
    }
    let attempts = sessions::attempts(scoped, session_id).await?;
    let Some(summary) = summarise(&attempts)? else {
        return Err(AppError::FailedPrecondition {
            reason: "SESSION_HAS_NO_SCORED_ATTEMPTS",
            message: "no attempt of this session has been scored yet: submit one (a spoken one is \
                      scored once its recording is processed) before completing"
                .into(),
            metadata: Default::default(),
        });
    };
    let module = catalog::get(
        scoped.txn(),
        &session.module_id,
        Which::Version(session.module_version),
    )
    .await?;
    let skills = module.fields()?.skills;
    let recorded: Vec<(Skill, f64)> = skills
        .iter()
        .filter_map(|skill| summary.skills.get(skill).map(|score| (*skill, *score)))
        .collect();
    let completion = Completion {
        score: summary.score,
        skill_scores: serde_json::json!(
            recorded
                .iter()
                .map(|(skill, score)| serde_json::json!({"skill": skill, "score": score}))
                .collect::<Vec<_>>()
        ),
    };
    if !sessions::complete(scoped, session_id, completion, now).await? {
        return Err(AppError::Aborted {
            reason: "SESSION_CHANGED",
            message: "the session changed while it was being completed; try again".into(),
            metadata: Default::default(),
        });
    }
    if let Some(id) = session.reservation_id
        && let Some(reservation) = ledger::find(scoped, id).await?
    {
        reservation.commit(scoped, 1, None, now).await?;
    }
    let duration_ms = (now - session.started_at).num_milliseconds().max(0);
    progress::record(
        scoped,
        session.user_id,
        recorded
            .iter()
            .map(|(skill, score)| NewScore {
                skill: *skill,
                score: *score,
                source: format!("practiceSessions/{session_id}"),
                duration_ms: Some(duration_ms),
                module_id: Some(session.module_id.clone()),
                recorded_at: now,
            })
            .collect(),
    )
    .await?;
    if let Some(main) = skills.first() {
        let person = Person::load(scoped, session.user_id, None).await?;
        let start = levels::starting(&person.profile.onboarding.experience_level);
        levels::record(scoped, session.user_id, *main, start, summary.score).await?;
    }
    sessions::get(scoped, session_id).await
}

/// A session's score and per-skill scores, from the best scored attempt at
/// each exercise; None when nothing was scored.
struct Summary {
    score: f64,
    skills: BTreeMap<Skill, f64>,
}

fn summarise(attempts: &[attempt::Model]) -> AppResult<Option<Summary>> {
    let mut best: BTreeMap<&str, &attempt::Model> = BTreeMap::new();
    for attempt in attempts {
        let Some(score) = attempt.score else { continue };
        let better = best
            .get(attempt.exercise_id.as_str())
            .is_none_or(|b| b.score.unwrap_or(0.0) < score);
        if better {
            best.insert(&attempt.exercise_id, attempt);
        }
    }
    if best.is_empty() {
        return Ok(None);
    }
    let score = best.values().filter_map(|a| a.score).sum::<f64>() / best.len() as f64;
    let mut sums: BTreeMap<Skill, (f64, f64)> = BTreeMap::new();
    for attempt in best.values() {
        let feedback: Feedback = attempt
            .feedback
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(AppError::internal)?
            .unwrap_or_default();
        for (skill, value) in feedback.skills {
            let entry = sums.entry(skill).or_default();
            entry.0 += value;
            entry.1 += 1.0;
        }
    }
    Ok(Some(Summary {
        score: (score * 10.0).round() / 10.0,
        skills: sums
            .into_iter()
            .map(|(skill, (sum, n))| (skill, (sum / n * 10.0).round() / 10.0))
            .collect(),
    }))
}
