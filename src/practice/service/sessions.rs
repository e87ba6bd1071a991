//! The sessions' RPCs of PracticeService: recommendations, sessions and
//! attempts, each the caller's own.

use tonic::{Request, Response};

use super::modules::module_id;
use super::{PracticeApi, Reply};
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Violations};
use crate::pagination::PageRequest;
use crate::pb::v1 as pb;
use crate::practice::convert;
use crate::practice::entity::SessionState;
use crate::practice::run::{self, Start, TextAnswer};
use crate::practice::sessions;
use crate::uploads::lifecycle::NewUpload;

/// Longest written answer, in characters.
const MAX_RESPONSE: usize = 10_000;

/// The id of `practiceSessions/{id}`.
fn session_id(field: &str, name: &str) -> AppResult<uuid::Uuid> {
    crate::names::parse_name(field, name, "practiceSessions")
}

/// A spoken answer's recording, checked like any upload (its meeting is
/// made with the attempt); violations are reported under `recording`.
fn parse_recording(recording: pb::AttemptRecording) -> AppResult<NewUpload> {
    let pb::AttemptRecording {
        file_name,
        content_type,
        size_bytes,
        sha256,
    } = recording;
    let upload = pb::Upload {
        // Replaced by the recording's own meeting when it is made.
        meeting: format!("meetings/{}", uuid::Uuid::nil()),
        file_name,
        content_type,
        size_bytes,
        sha256,
        ..Default::default()
    };
    NewUpload::parse(Some(upload), String::new()).map_err(|error| match error {
        AppError::InvalidArgument(violations) => AppError::InvalidArgument(
            violations
                .into_iter()
                .map(|v| crate::error::FieldViolation {
                    field: v.field.replacen("upload.", "recording.", 1),
                    description: v.description,
                })
                .collect(),
        ),
        other => other,
    })
}

/// An idempotency key: at most 128 characters, none when empty.
fn request_id(bad: &mut Violations, request_id: String) -> Option<String> {
    if request_id.len() > 128 {
        bad.add("request_id", "must be at most 128 characters long");
    }
    (!request_id.is_empty()).then_some(request_id)
}

#[tracing::instrument(skip_all)]
pub(super) async fn recommendations(
    api: &PracticeApi,
    request: Request<pb::ListRecommendationsRequest>,
) -> Reply<pb::ListRecommendationsResponse> {
    let user_id = Caller::of(&request)?.user_id;
    let limit = match request.get_ref().page_size {
        0 => 5,
        n if n < 0 => return Err(AppError::invalid("page_size", "must not be negative").into()),
        n => usize::try_from(n).unwrap_or(50).min(50),
    };
    let scoped = api.state.db.read_as_user(user_id).await?;
    let recommendations =
        crate::practice::recommend::recommend(&scoped, user_id, limit, api.state.clock.now()).await?;
    Ok(Response::new(pb::ListRecommendationsResponse { recommendations }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn start(
    api: &PracticeApi,
    request: Request<pb::StartSessionRequest>,
) -> Reply<pb::StartSessionResponse> {
    let user_id = Caller::of(&request)?.user_id;
    let pb::StartSessionRequest {
        module,
        request_id: key,
        meeting,
    } = request.into_inner();
    let mut bad = Violations::default();
    let module_id = bad.check(module_id("module", &module))?;
    let meeting_id = if meeting.is_empty() {
        Some(None)
    } else {
        bad.check(crate::names::parse_name("meeting", &meeting, "meetings"))?
            .map(Some)
    };
    let key = request_id(&mut bad, key);
    let (module_id, meeting_id) = bad.finish(|| Some((module_id?, meeting_id?)))?;
    let scoped = api.state.db.as_user(user_id).await?;
    let start = Start {
        module_id,
        meeting_id,
        request_id: key,
    };
    let session = run::start(&scoped, &api.state, user_id, start).await?;
    let attempts = sessions::attempts(&scoped, session.id).await?;
    scoped.commit().await?;
    Ok(Response::new(pb::StartSessionResponse {
        session: Some(convert::session(&session, &attempts)?),
    }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn get(
    api: &PracticeApi,
    request: Request<pb::GetSessionRequest>,
) -> Reply<pb::GetSessionResponse> {
    let user_id = Caller::of(&request)?.user_id;
    let id = session_id("name", &request.get_ref().name)?;
    let scoped = api.state.db.read_as_user(user_id).await?;
    let session = sessions::get(&scoped, id).await?;
    let attempts = sessions::attempts(&scoped, id).await?;
    Ok(Response::new(pb::GetSessionResponse {
        session: Some(convert::session(&session, &attempts)?),
    }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn list(
    api: &PracticeApi,
    request: Request<pb::PracticeServiceListSessionsRequest>,
) -> Reply<pb::PracticeServiceListSessionsResponse> {
    let user_id = Caller::of(&request)?.user_id;
    let pb::PracticeServiceListSessionsRequest {
        page_size,
        page_token,
        state,
    } = request.into_inner();
    let mut bad = Violations::default();
    let page = bad.check(PageRequest::parse(page_size, &page_token, 50, 200))?;
    let state = match pb::SessionState::try_from(state) {
        Ok(pb::SessionState::Unspecified) => None,
        Ok(pb::SessionState::Active) => Some(SessionState::Active),
        Ok(pb::SessionState::Completed) => Some(SessionState::Completed),
        Ok(pb::SessionState::Abandoned) => Some(SessionState::Abandoned),
        Err(_) => {
            bad.add("state", "must be a session state");
            None
        }
    };
    let page = bad.finish(|| page)?;
    let scoped = api.state.db.read_as_user(user_id).await?;
    let (rows, next) = sessions::list(&scoped, &page, state).await?;
    Ok(Response::new(pb::PracticeServiceListSessionsResponse {
        sessions: rows
            .iter()
            .map(|s| convert::session(s, &[]))
            .collect::<AppResult<_>>()?,
        next_page_token: PageRequest::token(next.as_ref()),
    }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn submit(
    api: &PracticeApi,
    request: Request<pb::SubmitAttemptRequest>,
) -> Reply<pb::SubmitAttemptResponse> {
    let user_id = Caller::of(&request)?.user_id;
    let pb::SubmitAttemptRequest {
        session,
        exercise_id,
        response_text,
        duration,
        request_ai_feedback,
        request_id: key,
        recording,
    } = request.into_inner();
    let mut bad = Violations::default();
    let id = bad.check(session_id("session", &session))?;
    if exercise_id.is_empty() {
        bad.add("exercise_id", "is required");
    }
    let text = response_text.trim().to_owned();
    if text.chars().count() > MAX_RESPONSE {
        bad.add(
            "response_text",
            format!("must be at most {MAX_RESPONSE} characters long"),
        );
    } else if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        bad.add(
            "response_text",
            "must not contain control characters other than line breaks and tabs",
        );
    }
    let duration_ms = match &duration {
        Some(d) => bad.check(crate::timestamps::duration_to_ms("duration", d))?,
        None => None,
    };
    if duration_ms.is_some_and(|ms| ms > 30 * 60 * 1000) {
        bad.add("duration", "must be at most 30 minutes");
    }
    let key = request_id(&mut bad, key);
    if recording.is_none() && text.is_empty() {
        bad.add("response_text", "is required unless a recording is sent");
    }
    let recording = match recording {
        Some(recording) => bad.check(parse_recording(recording))?.map(Some),
        None => Some(None),
    };
    let (id, recording) = bad.finish(|| Some((id?, recording?)))?;
    let scoped = api.state.db.as_user(user_id).await?;
    if let Some(key) = &key
        && let Some(earlier) = sessions::attempt_by_request(&scoped, key).await?
    {
        return Ok(Response::new(pb::SubmitAttemptResponse {
            attempt: Some(convert::attempt(&earlier)?),
        }));
    }
    let (session, exercise) = run::attemptable(&scoped, id, &exercise_id).await?;
    if let Some(recording) = recording {
        if !exercise.kind.is_spoken() {
            return Err(AppError::invalid(
                "recording",
                format!("exercise {exercise_id} is answered in writing; send the answer as response_text"),
            )
            .into());
        }
        let attempt = run::submit_recording(
            &scoped,
            &api.state,
            &session,
            &exercise,
            recording,
            request_ai_feedback,
            key,
        )
        .await?;
        scoped.commit().await?;
        return Ok(Response::new(pb::SubmitAttemptResponse {
            attempt: Some(convert::attempt(&attempt)?),
        }));
    }
    let attempt = run::submit_text(
        &scoped,
        &api.state,
        &api.scorer,
        &session,
        &exercise,
        TextAnswer {
            text,
            duration_ms,
            ai_requested: request_ai_feedback,
            request_id: key,
        },
    )
    .await?;
    scoped.commit().await?;
    Ok(Response::new(pb::SubmitAttemptResponse {
        attempt: Some(convert::attempt(&attempt)?),
    }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn complete(
    api: &PracticeApi,
    request: Request<pb::CompleteSessionRequest>,
) -> Reply<pb::CompleteSessionResponse> {
    let user_id = Caller::of(&request)?.user_id;
    let id = session_id("name", &request.get_ref().name)?;
    let scoped = api.state.db.as_user(user_id).await?;
    let session = run::complete(&scoped, id, api.state.clock.now()).await?;
    let attempts = sessions::attempts(&scoped, id).await?;
    scoped.commit().await?;
    Ok(Response::new(pb::CompleteSessionResponse {
        session: Some(convert::session(&session, &attempts)?),
    }))
}
