//! The gRPC ProcessingService.

use tonic::{Request, Response, Status};

use super::entity::{JobState, Strategy};
use super::sampling::{self, Settings};
use super::{jobs, status};
use crate::caller::Caller;
use crate::error::{AppError, Violations};
use crate::meetings::entity::Status as MeetingStatus;
use crate::meetings::store;
use crate::names::parse_name;
use crate::pagination::{BeforeId, PageRequest};
use crate::pb::v1 as pb;
use crate::pb::v1::processing_service_server::ProcessingService;
use crate::shared::Shared;
use crate::timestamps::{duration_to_ms, ms_to_duration};

/// ProcessingService.
#[derive(Clone, Debug)]
pub struct ProcessingApi {
    state: Shared,
}

impl ProcessingApi {
    /// The service over the shared state.
    pub fn new(state: Shared) -> Self {
        Self { state }
    }

    fn config_to_proto(&self, name: String, settings: Settings) -> pb::SamplingConfig {
        pb::SamplingConfig {
            name,
            strategy: match settings.strategy {
                Strategy::Full => pb::SamplingStrategy::Full,
                Strategy::Uniform => pb::SamplingStrategy::Uniform,
                Strategy::SpeechDense => pb::SamplingStrategy::SpeechDense,
            }
            .into(),
            budget: settings.budget_ms.map(ms_to_duration),
            max_segment_duration: Some(ms_to_duration(settings.max_segment_ms)),
            inherited: settings.inherited,
            price_per_minute_micros: self.state.config.processing.price_per_minute_micros,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Whose sampling configuration a name refers to.
enum Subject {
    User(uuid::Uuid),
    Plan(String),
}

fn subject(field: &str, name: &str, caller: &Caller) -> Result<Subject, AppError> {
    let bad = || {
        AppError::invalid(
            field,
            "must be `users/{user}/samplingConfig` or `plans/{plan}/samplingConfig`",
        )
    };
    let rest = name.strip_suffix("/samplingConfig").ok_or_else(bad)?;
    if let Some(plan) = rest.strip_prefix("plans/") {
        return if plan.is_empty() || plan.contains('/') {
            Err(bad())
        } else {
            Ok(Subject::Plan(plan.to_owned()))
        };
    }
    match rest {
        "users/me" => Ok(Subject::User(caller.user_id)),
        other => {
            let id = parse_name(field, other, "users").map_err(|_| bad())?;
            // Another user's settings are not the caller's to see.
            if id == caller.user_id {
                Ok(Subject::User(id))
            } else {
                Err(AppError::not_found("sampling configuration"))
            }
        }
    }
}

fn parse_strategy(value: i32) -> Result<Strategy, AppError> {
    match pb::SamplingStrategy::try_from(value) {
        Ok(pb::SamplingStrategy::Full) => Ok(Strategy::Full),
        Ok(pb::SamplingStrategy::Uniform) => Ok(Strategy::Uniform),
        Ok(pb::SamplingStrategy::SpeechDense) => Ok(Strategy::SpeechDense),
        _ => Err(AppError::invalid(
            "sampling_config.strategy",
            "must be FULL, UNIFORM or SPEECH_DENSE",
        )),
    }
}

/// Sets the field at `path` of `next` from `config`.
fn apply(path: &str, config: &pb::SamplingConfig, next: &mut Settings) -> Result<(), AppError> {
    let field = format!("sampling_config.{path}");
    match path {
        "strategy" => next.strategy = parse_strategy(config.strategy)?,
        "budget" => {
            next.budget_ms = match &config.budget {
                None => None,
                Some(d) => match duration_to_ms(&field, d)? {
                    ms if ms < 60_000 => {
                        return Err(AppError::invalid(&field, "must be at least one minute"));
                    }
                    ms => Some(ms),
                },
            }
        }
        "max_segment_duration" => {
            next.max_segment_ms = match &config.max_segment_duration {
                None => sampling::DEFAULT_MAX_SEGMENT_MS,
                Some(d) => match duration_to_ms(&field, d)? {
                    ms if (10_000..=sampling::PROVIDER_MAX_SEGMENT_MS).contains(&ms) => ms,
                    _ => {
                        return Err(AppError::invalid(
                            &field,
                            format!(
                                "must be between 10s and {}s (the provider's request limit)",
                                sampling::PROVIDER_MAX_SEGMENT_MS / 1000
                            ),
                        ));
                    }
                },
            }
        }
        _ => {
            return Err(AppError::invalid(
                "update_mask",
                format!("`{path}` cannot be changed"),
            ));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl ProcessingService for ProcessingApi {
    #[tracing::instrument(skip_all)]
    async fn get_processing_status(
        &self,
        request: Request<pb::GetProcessingStatusRequest>,
    ) -> Reply<pb::GetProcessingStatusResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = crate::meetings::service::meeting_of("name", &request.get_ref().name, "/processingStatus")?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        Ok(Response::new(pb::GetProcessingStatusResponse {
            processing_status: Some(status::status(&scoped, id).await?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn retry_processing(
        &self,
        request: Request<pb::RetryProcessingRequest>,
    ) -> Reply<pb::RetryProcessingResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = parse_name("name", &request.get_ref().name, "meetings")?;
        let scoped = self.state.db.as_user(user_id).await?;
        let meeting = store::get(&scoped, id).await?;
        if !matches!(
            meeting.status,
            MeetingStatus::Failed | MeetingStatus::AwaitingTranscription
        ) || jobs::of_meeting(&scoped, id).await?.is_none()
        {
            return Err(AppError::FailedPrecondition {
                reason: "NOT_RETRYABLE",
                message: "only a meeting whose processing failed or awaits transcription can be retried"
                    .into(),
                metadata: Default::default(),
            }
            .into());
        }
        // Minutes are charged once: only a meeting never processed holds
        // them again.
        let reservation = if meeting.processed_at.is_none() {
            super::hold_minutes(&self.state, &scoped, &meeting).await?
        } else {
            None
        };
        store::transition(
            &scoped,
            id,
            &[MeetingStatus::Failed, MeetingStatus::AwaitingTranscription],
            MeetingStatus::Queued,
        )
        .await?;
        store::set_failure(&scoped, id, "").await?;
        jobs::requeue(&scoped, id, reservation).await?;
        let status = status::status(&scoped, id).await?;
        scoped.commit().await?;
        Ok(Response::new(pb::RetryProcessingResponse {
            processing_status: Some(status),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_sampling_config(
        &self,
        request: Request<pb::GetSamplingConfigRequest>,
    ) -> Reply<pb::GetSamplingConfigResponse> {
        let caller = Caller::of(&request)?;
        let name = request.get_ref().name.clone();
        let scoped = self.state.db.read_as_user(caller.user_id).await?;
        let settings = match subject("name", &name, caller)? {
            Subject::User(id) => sampling::for_user(&scoped, id).await?,
            Subject::Plan(plan) => {
                crate::usage::limits::plan_with_limits(&scoped, &plan).await?;
                sampling::for_plan(&scoped, &plan).await?
            }
        };
        Ok(Response::new(pb::GetSamplingConfigResponse {
            sampling_config: Some(self.config_to_proto(name, settings)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_sampling_config(
        &self,
        request: Request<pb::UpdateSamplingConfigRequest>,
    ) -> Reply<pb::UpdateSamplingConfigResponse> {
        let caller = Caller::of(&request)?.clone();
        let pb::UpdateSamplingConfigRequest {
            sampling_config,
            update_mask,
        } = request.into_inner();
        let config = sampling_config.ok_or_else(|| AppError::invalid("sampling_config", "is required"))?;
        let paths: Vec<String> = match update_mask {
            Some(mask) if !mask.paths.is_empty() && mask.paths != ["*"] => mask.paths,
            _ => vec!["strategy".into(), "budget".into(), "max_segment_duration".into()],
        };
        // Every bad field at once: the name's and the values' (checked on
        // defaults here, applied to the settings in force below).
        let mut bad = Violations::default();
        let subject = bad.check(subject("sampling_config.name", &config.name, &caller))?;
        let mut scratch = Settings::default();
        for path in &paths {
            bad.check(apply(path, &config, &mut scratch))?;
        }
        let subject = bad.finish(|| subject)?;
        let scoped = match &subject {
            Subject::User(_) => self.state.db.as_user(caller.user_id).await?,
            Subject::Plan(plan) => {
                caller.require_admin()?;
                let scoped = self.state.db.as_admin(caller.user_id).await?;
                crate::usage::limits::plan_with_limits(&scoped, plan).await?;
                scoped
            }
        };
        let current = match &subject {
            Subject::User(id) => sampling::for_user(&scoped, *id).await?,
            Subject::Plan(plan) => sampling::for_plan(&scoped, plan).await?,
        };
        let mut next = current;
        for path in &paths {
            apply(path, &config, &mut next)?;
        }
        if next.strategy != Strategy::Full && next.budget_ms.is_none() {
            return Err(AppError::invalid(
                "sampling_config.budget",
                "is required for UNIFORM and SPEECH_DENSE",
            )
            .into());
        }
        let saved = match &subject {
            Subject::User(id) => sampling::set_for_user(&scoped, *id, next).await?,
            Subject::Plan(plan) => sampling::set_for_plan(&scoped, plan, next).await?,
        };
        scoped.commit().await?;
        Ok(Response::new(pb::UpdateSamplingConfigResponse {
            sampling_config: Some(self.config_to_proto(config.name, saved)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> Reply<pb::ListJobsResponse> {
        let caller = Caller::of(&request)?;
        caller.require_admin()?;
        let pb::ListJobsRequest {
            page_size,
            page_token,
            state,
        } = request.get_ref().clone();
        let page = PageRequest::<BeforeId>::parse(page_size, &page_token, 50, 200)?;
        let state = match pb::JobState::try_from(state).unwrap_or_default() {
            pb::JobState::Unspecified => None,
            pb::JobState::Pending | pb::JobState::Failed => Some(JobState::Pending),
            pb::JobState::Running => Some(JobState::Running),
            pb::JobState::Succeeded => Some(JobState::Succeeded),
            pb::JobState::Dead => Some(JobState::Dead),
        };
        let scoped = self.state.db.read_as_admin(caller.user_id).await?;
        let (rows, next) = jobs::list(&scoped, state, &page).await?;
        let depths = jobs::depths(&scoped).await?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: rows.into_iter().map(pb::Job::from).collect(),
            next_page_token: PageRequest::token(next.as_ref()),
            pending_count: depths.pending,
            running_count: depths.running,
            dead_count: depths.dead,
        }))
    }
}
