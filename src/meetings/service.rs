//! The gRPC MeetingService: validate, call the store, answer.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::entity::Status as MeetingStatus;
use super::model::{self, MeetingChanges, MeetingFields};
use super::{OnDelete, store};
use crate::audit::{self, Entry};
use crate::caller::Caller;
use crate::context::RequestMeta;
use crate::db::Db;
use crate::error::{AppError, AppResult, Violations};
use crate::events::stream::{Streams, Watched};
use crate::lifecycle::Stage;
use crate::names::parse_name;
use crate::pagination::{BeforeId, PageRequest};
use crate::pb::v1 as pb;
use crate::pb::v1::meeting_service_server::MeetingService;
use crate::shared::Shared;
use crate::timestamps;

/// MeetingService.
#[derive(Clone, Debug)]
pub struct MeetingApi {
    state: Shared,
    streams: Arc<Streams>,
    on_delete: Arc<dyn OnDelete>,
}

impl MeetingApi {
    /// The service over the shared state, the open streams and what else
    /// ends with a meeting.
    pub fn new(state: Shared, streams: Arc<Streams>, on_delete: Arc<dyn OnDelete>) -> Self {
        Self {
            state,
            streams,
            on_delete,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl MeetingService for MeetingApi {
    #[tracing::instrument(skip_all)]
    async fn create_meeting(
        &self,
        request: Request<pb::CreateMeetingRequest>,
    ) -> Reply<pb::CreateMeetingResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::CreateMeetingRequest { meeting, request_id } = request.into_inner();
        let mut bad = Violations::default();
        let fields = match &meeting {
            Some(meeting) => bad.check(MeetingFields::parse(meeting))?,
            None => {
                bad.add("meeting", "is required");
                None
            }
        };
        if request_id.len() > 128 {
            bad.add("request_id", "must be at most 128 characters long");
        }
        let fields = bad.finish(|| fields)?;
        let scoped = self.state.db.as_user(user_id).await?;
        let created = store::create(
            &scoped,
            user_id,
            super::entity::Kind::Meeting,
            fields,
            (!request_id.is_empty()).then_some(request_id),
        )
        .await?;
        scoped.commit().await?;
        Ok(Response::new(pb::CreateMeetingResponse {
            meeting: Some(pb::Meeting::from(&created)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_meeting(&self, request: Request<pb::GetMeetingRequest>) -> Reply<pb::GetMeetingResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = parse_name("name", &request.get_ref().name, "meetings")?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        let meeting = store::get(&scoped, id).await?;
        Ok(Response::new(pb::GetMeetingResponse {
            meeting: Some(pb::Meeting::from(&meeting)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_meetings(
        &self,
        request: Request<pb::ListMeetingsRequest>,
    ) -> Reply<pb::ListMeetingsResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::ListMeetingsRequest {
            page_size,
            page_token,
            statuses,
            occurred_after,
            occurred_before,
        } = request.into_inner();
        let mut bad = Violations::default();
        let page = bad.check(PageRequest::<BeforeId>::parse(page_size, &page_token, 50, 200))?;
        let mut known = Vec::with_capacity(statuses.len());
        for (i, status) in statuses.iter().enumerate() {
            match pb::MeetingStatus::try_from(*status)
                .ok()
                .and_then(MeetingStatus::from_proto)
            {
                Some(status) => known.push(status),
                None => bad.add(format!("statuses[{i}]"), "must be a meeting status"),
            }
        }
        let mut time = |field: &str, t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .map(|t| bad.check(timestamps::from_proto(field, t)))
                .transpose()
                .map(Option::flatten)
        };
        let occurred_after = time("occurred_after", &occurred_after)?;
        let occurred_before = time("occurred_before", &occurred_before)?;
        let page = bad.finish(|| page)?;
        let filter = store::ListFilter {
            statuses: known,
            occurred_after,
            occurred_before,
        };
        let scoped = self.state.db.read_as_user(user_id).await?;
        let (meetings, next) = store::list(&scoped, &page, filter).await?;
        Ok(Response::new(pb::ListMeetingsResponse {
            meetings: meetings.iter().map(pb::Meeting::from).collect(),
            next_page_token: PageRequest::token(next.as_ref()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_meeting(
        &self,
        request: Request<pb::UpdateMeetingRequest>,
    ) -> Reply<pb::UpdateMeetingResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::UpdateMeetingRequest { meeting, update_mask } = request.into_inner();
        let update = meeting.ok_or_else(|| AppError::invalid("meeting", "is required"))?;
        let id = parse_name("meeting.name", &update.name, "meetings")?;
        let paths = update_mask.map(|m| m.paths).unwrap_or_default();
        model::check_mask(&paths)?;
        let changes = MeetingChanges::parse(&update, &paths)?;
        let scoped = self.state.db.as_user(user_id).await?;
        let updated = store::update(&scoped, id, changes).await?;
        scoped.commit().await?;
        Ok(Response::new(pb::UpdateMeetingResponse {
            meeting: Some(pb::Meeting::from(&updated)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_meeting(
        &self,
        request: Request<pb::WatchMeetingRequest>,
    ) -> Reply<crate::events::service::FrameStream<pb::WatchMeetingResponse>> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::WatchMeetingRequest { name, after_event_id } = request.into_inner();
        let mut bad = Violations::default();
        let id = bad.check(parse_name("name", &name, "meetings"))?;
        if after_event_id < 0 {
            bad.add("after_event_id", "must not be negative");
        }
        let id = bad.finish(|| id)?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        let meeting = store::get(&scoped, id).await?;
        let after = match after_event_id {
            0 => crate::events::store::last_id(&scoped, user_id).await?,
            id => id,
        };
        drop(scoped);
        let slot = self.streams.open(user_id)?;
        let filter = crate::events::store::Filter {
            types: Vec::new(),
            meeting_id: Some(id),
        };
        // The current state first, then what happens to it, and the state
        // again after each change.
        let watched = MeetingWatch {
            user_id,
            id,
            seen: (meeting.status, meeting.current_stage),
        };
        let first = vec![snapshot(&meeting)];
        Ok(Response::new(Box::pin(self.streams.stream(
            slot,
            after,
            filter,
            first,
            Some(Box::new(watched)),
        ))))
    }

    #[tracing::instrument(skip_all)]
    async fn download_recording(
        &self,
        request: Request<pb::DownloadRecordingRequest>,
    ) -> Reply<crate::events::service::FrameStream<crate::pb::google::api::HttpBody>> {
        let user_id = Caller::of(&request)?.user_id;
        // Over HTTP the edge passes the `Range` header on.
        let range = request
            .metadata()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let pb::DownloadRecordingRequest { name, offset, length } = request.into_inner();
        let id = meeting_of("name", &name, "/recording")?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        let meeting = store::get(&scoped, id).await?;
        drop(scoped);
        Ok(super::download::stream(&self.state.storage, &meeting, offset, length, range.as_deref()).await?)
    }

    #[tracing::instrument(skip_all)]
    async fn get_transcript(
        &self,
        request: Request<pb::GetTranscriptRequest>,
    ) -> Reply<pb::GetTranscriptResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = meeting_of("name", &request.get_ref().name, "/transcript")?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        Ok(Response::new(pb::GetTranscriptResponse {
            transcript: Some(super::results::transcript(&scoped, id).await?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_analysis(&self, request: Request<pb::GetAnalysisRequest>) -> Reply<pb::GetAnalysisResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = meeting_of("name", &request.get_ref().name, "/analysis")?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        Ok(Response::new(pb::GetAnalysisResponse {
            analysis: Some(super::results::analysis(&scoped, id).await?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_meeting(
        &self,
        request: Request<pb::DeleteMeetingRequest>,
    ) -> Reply<pb::DeleteMeetingResponse> {
        let meta = RequestMeta::of(&request);
        let user_id = Caller::of(&request)?.user_id;
        let id = parse_name("name", &request.get_ref().name, "meetings")?;
        let scoped = self.state.db.as_user(user_id).await?;
        let meeting = store::get(&scoped, id).await?;
        store::soft_delete(&scoped, id).await?;
        let now = chrono::Utc::now();
        // An upload in progress ends; a stored recording frees its storage.
        let after_commit = self.on_delete.meeting_deleted(&scoped, id, now).await?;
        if let (Some(size), Some(_)) = (meeting.size_bytes, &meeting.original_object) {
            crate::usage::ledger::free(
                &scoped,
                user_id,
                crate::usage::model::Category::StorageBytes,
                size,
                now,
            )
            .await?;
        }
        audit::record(
            &scoped,
            &meta,
            Entry::own("meeting.delete", user_id).target(format!("meetings/{id}")),
        )
        .await?;
        scoped.commit().await?;
        if let Some(cleanup) = after_commit {
            cleanup.await;
        }
        Ok(Response::new(pb::DeleteMeetingResponse {}))
    }
}

fn snapshot(meeting: &super::entity::Model) -> pb::WatchMeetingResponse {
    pb::WatchMeetingResponse {
        kind: Some(pb::watch_meeting_response::Kind::Meeting(pb::Meeting::from(
            meeting,
        ))),
    }
}

/// What `WatchMeeting` sends again: the meeting, when its status or stage
/// changed since it was last sent.
struct MeetingWatch {
    user_id: uuid::Uuid,
    id: uuid::Uuid,
    seen: (MeetingStatus, Option<Stage>),
}

#[tonic::async_trait]
impl Watched<pb::WatchMeetingResponse> for MeetingWatch {
    async fn changed(&mut self, db: &Db) -> AppResult<Option<pb::WatchMeetingResponse>> {
        let scoped = db.read_as_user(self.user_id).await?;
        let meeting = store::get(&scoped, self.id).await?;
        let now = (meeting.status, meeting.current_stage);
        if now == self.seen {
            return Ok(None);
        }
        self.seen = now;
        Ok(Some(snapshot(&meeting)))
    }
}

/// The meeting id in `meetings/{id}{suffix}`.
pub fn meeting_of(field: &str, name: &str, suffix: &str) -> Result<uuid::Uuid, AppError> {
    let meeting = name
        .strip_suffix(suffix)
        .ok_or_else(|| AppError::invalid(field, format!("must be `meetings/{{meeting}}{suffix}`")))?;
    parse_name(field, meeting, "meetings")
}
