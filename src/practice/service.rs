//! The gRPC PracticeService: validate, call the stores, answer.

use tonic::{Request, Response, Status};

use super::catalog::{self, AfterId, ListFilter, Loaded, Which};
use super::convert;
use super::entity::SessionState;
use super::model::{self, ModuleFields, is_slug};
use super::personal::Person;
use super::run::{self, Start, TextAnswer};
use super::scoring::Scorer;
use super::sessions;
use crate::audit::{self, Entry};
use crate::caller::{Caller, Role};
use crate::context::RequestMeta;
use crate::db::Scoped;
use crate::error::{AppError, AppResult, Violations};
use crate::pagination::PageRequest;
use crate::pb::v1 as pb;
use crate::pb::v1::practice_service_server::PracticeService;
use crate::shared::Shared;
use crate::skills::Skill;
use crate::uploads::lifecycle::NewUpload;

/// PracticeService.
#[derive(Clone, Debug)]
pub struct PracticeApi {
    state: Shared,
    scorer: Scorer,
}

impl PracticeApi {
    /// The service over the shared state.
    pub fn new(state: Shared) -> Self {
        let scorer = Scorer::new(&state.config.processing.filler_words);
        Self { state, scorer }
    }
}

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

fn request_id(bad: &mut Violations, request_id: String) -> Option<String> {
    if request_id.len() > 128 {
        bad.add("request_id", "must be at most 128 characters long");
    }
    (!request_id.is_empty()).then_some(request_id)
}

type Reply<T> = Result<Response<T>, Status>;

/// A module reference: `modules/{id}`, `modules/{id}@draft` or
/// `modules/{id}@{version}`.
fn parse_module(field: &str, name: &str) -> AppResult<(String, Option<Which>)> {
    let invalid = || {
        AppError::invalid(
            field,
            "must be `modules/{module}`, optionally with `@draft` or `@{version}`",
        )
    };
    let rest = name.strip_prefix("modules/").ok_or_else(invalid)?;
    let (id, which) = match rest.split_once('@') {
        None => (rest, None),
        Some((id, "draft")) => (id, Some(Which::Draft)),
        Some((id, number)) => {
            let number: i32 = number.parse().ok().filter(|n| *n > 0).ok_or_else(invalid)?;
            (id, Some(Which::Version(number)))
        }
    };
    if !is_slug(id) {
        return Err(invalid());
    }
    Ok((id.to_owned(), which))
}

/// The id of a plain `modules/{id}` (the admin RPCs act on the module).
fn module_id(field: &str, name: &str) -> AppResult<String> {
    match parse_module(field, name)? {
        (id, None) => Ok(id),
        _ => Err(AppError::invalid(field, "must be `modules/{module}`")),
    }
}

/// The version `which` of module `id` as `caller` may see it: admins see
/// everything; others the published version, or any version once published.
async fn visible(scoped: &Scoped, caller: &Caller, id: &str, which: Option<Which>) -> AppResult<Loaded> {
    let admin = caller.role == Role::Admin;
    let loaded = catalog::get(scoped.txn(), id, which.unwrap_or(Which::Listed)).await?;
    let hidden = !admin
        && (!loaded.is_published()
            || (which.is_none() && loaded.head.state != super::entity::ModuleState::Published));
    if hidden {
        return Err(AppError::not_found("module"));
    }
    Ok(loaded)
}

/// `loaded` as `caller` sees it, with every prompt rendered for them.
async fn module_view(scoped: &Scoped, caller: &Caller, loaded: &Loaded) -> AppResult<pb::Module> {
    let person = Person::load(scoped, caller.user_id, None).await?;
    let prompts = loaded
        .fields()?
        .exercises
        .iter()
        .map(|exercise| person.render(exercise).map(|rendered| rendered.prompt))
        .collect::<AppResult<Vec<_>>>()?;
    convert::version(loaded, caller.role == Role::Admin, prompts)
}

#[tonic::async_trait]
impl PracticeService for PracticeApi {
    #[tracing::instrument(skip_all)]
    async fn list_modules(&self, request: Request<pb::ListModulesRequest>) -> Reply<pb::ListModulesResponse> {
        let caller = Caller::of(&request)?.clone();
        let pb::ListModulesRequest {
            page_size,
            page_token,
            skill,
            show_unpublished,
        } = request.into_inner();
        let mut bad = Violations::default();
        let page = bad.check(PageRequest::<AfterId>::parse(page_size, &page_token, 50, 200))?;
        let skill = match pb::Skill::try_from(skill) {
            Ok(pb::Skill::Unspecified) => None,
            Ok(skill) => Skill::from_proto(skill),
            Err(_) => {
                bad.add("skill", "must be a skill");
                None
            }
        };
        let page = bad.finish(|| page)?;
        let admin = caller.role == Role::Admin;
        if show_unpublished {
            caller.require_admin()?;
        }
        let scoped = self.state.db.as_user(caller.user_id).await?;
        let filter = ListFilter {
            skill,
            unpublished: show_unpublished,
        };
        let (modules, next) = catalog::list(scoped.txn(), filter, &page).await?;
        Ok(Response::new(pb::ListModulesResponse {
            modules: modules
                .iter()
                .map(|m| convert::listed(m, admin))
                .collect::<AppResult<_>>()?,
            next_page_token: PageRequest::token(next.as_ref()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_module(&self, request: Request<pb::GetModuleRequest>) -> Reply<pb::GetModuleResponse> {
        let caller = Caller::of(&request)?.clone();
        let (id, which) = parse_module("name", &request.get_ref().name)?;
        let scoped = self.state.db.as_user(caller.user_id).await?;
        let loaded = visible(&scoped, &caller, &id, which).await?;
        Ok(Response::new(pb::GetModuleResponse {
            module: Some(module_view(&scoped, &caller, &loaded).await?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_module(
        &self,
        request: Request<pb::CreateModuleRequest>,
    ) -> Reply<pb::CreateModuleResponse> {
        let meta = RequestMeta::of(&request);
        let caller = Caller::of(&request)?.clone();
        caller.require_admin()?;
        let pb::CreateModuleRequest { module, module_id } = request.into_inner();
        let mut bad = Violations::default();
        if !is_slug(&module_id) {
            bad.add(
                "module_id",
                "must be 3 to 64 lower-case letters, digits and dashes, starting with a letter",
            );
        }
        let fields = match &module {
            Some(module) => bad.check(ModuleFields::parse(module, "module"))?,
            None => {
                bad.add("module", "is required");
                None
            }
        };
        let fields = bad.finish(|| fields)?;
        let scoped = self.state.db.as_admin(caller.user_id).await?;
        if !catalog::create(scoped.txn(), &module_id, &fields, Some(caller.user_id)).await? {
            return Err(AppError::AlreadyExists {
                reason: "MODULE_EXISTS",
                message: format!("modules/{module_id} already exists; edit it with UpdateModule"),
            }
            .into());
        }
        audit::record(
            &scoped,
            &meta,
            Entry::own("module.create", caller.user_id).target(format!("modules/{module_id}")),
        )
        .await?;
        let loaded = catalog::get(scoped.txn(), &module_id, Which::Draft).await?;
        let module = module_view(&scoped, &caller, &loaded).await?;
        scoped.commit().await?;
        Ok(Response::new(pb::CreateModuleResponse { module: Some(module) }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_module(
        &self,
        request: Request<pb::UpdateModuleRequest>,
    ) -> Reply<pb::UpdateModuleResponse> {
        let meta = RequestMeta::of(&request);
        let caller = Caller::of(&request)?.clone();
        caller.require_admin()?;
        let pb::UpdateModuleRequest { module, update_mask } = request.into_inner();
        let update = module.ok_or_else(|| AppError::invalid("module", "is required"))?;
        let id = module_id("module.name", &update.name)?;
        let paths = update_mask.map(|m| m.paths).unwrap_or_default();
        model::check_mask(&paths)?;
        let scoped = self.state.db.as_admin(caller.user_id).await?;
        let current = catalog::get(scoped.txn(), &id, Which::Listed).await?;
        let base = match current.head.draft_version {
            Some(_) => catalog::get(scoped.txn(), &id, Which::Draft).await?,
            None => current,
        };
        let mut merged = base.fields()?.to_proto();
        model::merge(&mut merged, update, &paths);
        let fields = ModuleFields::parse(&merged, "module")?;
        catalog::update(scoped.txn(), &id, &fields, caller.user_id).await?;
        audit::record(
            &scoped,
            &meta,
            Entry::own("module.update", caller.user_id)
                .target(format!("modules/{id}"))
                .details(serde_json::json!({ "fields": paths })),
        )
        .await?;
        let draft = catalog::get(scoped.txn(), &id, Which::Draft).await?;
        let module = module_view(&scoped, &caller, &draft).await?;
        scoped.commit().await?;
        Ok(Response::new(pb::UpdateModuleResponse { module: Some(module) }))
    }

    #[tracing::instrument(skip_all)]
    async fn publish_module(
        &self,
        request: Request<pb::PublishModuleRequest>,
    ) -> Reply<pb::PublishModuleResponse> {
        let meta = RequestMeta::of(&request);
        let caller = Caller::of(&request)?.clone();
        caller.require_admin()?;
        let id = module_id("name", &request.get_ref().name)?;
        let scoped = self.state.db.as_admin(caller.user_id).await?;
        catalog::publish(scoped.txn(), &id, |draft| {
            if draft.exercises.is_empty() {
                return Err(AppError::FailedPrecondition {
                    reason: "MODULE_HAS_NO_EXERCISES",
                    message: format!("modules/{id} has no exercises to practise; add one before publishing"),
                    metadata: Default::default(),
                });
            }
            // The rules (and the prompt context) may have changed since the
            // draft was saved.
            ModuleFields::parse(&draft.fields()?.to_proto(), "module").map(|_| ())
        })
        .await?;
        let published = catalog::get(scoped.txn(), &id, Which::Listed).await?;
        audit::record(
            &scoped,
            &meta,
            Entry::own("module.publish", caller.user_id)
                .target(format!("modules/{id}"))
                .details(serde_json::json!({ "version": published.version.version })),
        )
        .await?;
        let module = module_view(&scoped, &caller, &published).await?;
        scoped.commit().await?;
        Ok(Response::new(pb::PublishModuleResponse { module: Some(module) }))
    }

    #[tracing::instrument(skip_all)]
    async fn archive_module(
        &self,
        request: Request<pb::ArchiveModuleRequest>,
    ) -> Reply<pb::ArchiveModuleResponse> {
        let meta = RequestMeta::of(&request);
        let caller = Caller::of(&request)?.clone();
        caller.require_admin()?;
        let id = module_id("name", &request.get_ref().name)?;
        let scoped = self.state.db.as_admin(caller.user_id).await?;
        catalog::archive(scoped.txn(), &id).await?;
        audit::record(
            &scoped,
            &meta,
            Entry::own("module.archive", caller.user_id).target(format!("modules/{id}")),
        )
        .await?;
        let archived = catalog::get(scoped.txn(), &id, Which::Listed).await?;
        let module = module_view(&scoped, &caller, &archived).await?;
        scoped.commit().await?;
        Ok(Response::new(pb::ArchiveModuleResponse { module: Some(module) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_recommendations(
        &self,
        request: Request<pb::ListRecommendationsRequest>,
    ) -> Reply<pb::ListRecommendationsResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let limit = match request.get_ref().page_size {
            0 => 5,
            n if n < 0 => return Err(AppError::invalid("page_size", "must not be negative").into()),
            n => usize::try_from(n).unwrap_or(50).min(50),
        };
        let scoped = self.state.db.as_user(user_id).await?;
        let recommendations =
            super::recommend::recommend(&scoped, user_id, limit, chrono::Utc::now()).await?;
        Ok(Response::new(pb::ListRecommendationsResponse { recommendations }))
    }

    #[tracing::instrument(skip_all)]
    async fn start_session(
        &self,
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
        let scoped = self.state.db.as_user(user_id).await?;
        let start = Start {
            module_id,
            meeting_id,
            request_id: key,
        };
        let session = run::start(&scoped, &self.state, user_id, start).await?;
        let attempts = sessions::attempts(&scoped, session.id).await?;
        scoped.commit().await?;
        Ok(Response::new(pb::StartSessionResponse {
            session: Some(convert::session(&session, &attempts)?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_session(&self, request: Request<pb::GetSessionRequest>) -> Reply<pb::GetSessionResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = session_id("name", &request.get_ref().name)?;
        let scoped = self.state.db.as_user(user_id).await?;
        let session = sessions::get(&scoped, id).await?;
        let attempts = sessions::attempts(&scoped, id).await?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(convert::session(&session, &attempts)?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_sessions(
        &self,
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
        let scoped = self.state.db.as_user(user_id).await?;
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
    async fn submit_attempt(
        &self,
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
        let scoped = self.state.db.as_user(user_id).await?;
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
                    format!(
                        "exercise {exercise_id} is answered in writing; send the answer as response_text"
                    ),
                )
                .into());
            }
            let attempt = run::submit_recording(
                &scoped,
                &self.state,
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
            &self.state,
            &self.scorer,
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
    async fn complete_session(
        &self,
        request: Request<pb::CompleteSessionRequest>,
    ) -> Reply<pb::CompleteSessionResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = session_id("name", &request.get_ref().name)?;
        let scoped = self.state.db.as_user(user_id).await?;
        let session = run::complete(&scoped, id, chrono::Utc::now()).await?;
        let attempts = sessions::attempts(&scoped, id).await?;
        scoped.commit().await?;
        Ok(Response::new(pb::CompleteSessionResponse {
            session: Some(convert::session(&session, &attempts)?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_carry_an_optional_version() {
        assert_eq!(
            parse_module("name", "modules/pace-basics").unwrap(),
            ("pace-basics".into(), None)
        );
        assert_eq!(
            parse_module("name", "modules/pace-basics@draft").unwrap().1,
            Some(Which::Draft)
        );
        assert_eq!(
            parse_module("name", "modules/pace-basics@3").unwrap().1,
            Some(Which::Version(3))
        );
        for bad in [
            "pace-basics",
            "modules/Pace",
            "modules/pace-basics@0",
            "modules/pace-basics@x",
            "modules/",
        ] {
            assert!(parse_module("name", bad).is_err(), "{bad}");
        }
    }
}
