//! The gRPC ProgressService: validate, call the stores, answer.

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status};

use super::TimeZones;
use super::standing::{self, SkillStanding, Standing};
use super::store::{self, AfterPoint};
use crate::audit;
use crate::caller::Caller;
use crate::context::RequestMeta;
use crate::error::Violations;
use crate::events::service::FrameStream;
use crate::export;
use crate::pagination::PageRequest;
use crate::pb::v1 as pb;
use crate::pb::v1::progress_service_server::ProgressService;
use crate::shared::Shared;
use crate::skills::Skill;
use crate::timestamps;

/// ProgressService.
#[derive(Clone, Debug)]
pub struct ProgressApi {
    state: Shared,
    zones: Arc<dyn TimeZones>,
    /// What an export holds, in order.
    parts: Arc<[Arc<dyn export::Part>]>,
}

impl ProgressApi {
    /// The service over the shared state, learning time zones from `zones`
    /// and exporting `parts`.
    pub fn new(state: Shared, zones: Arc<dyn TimeZones>, parts: Arc<[Arc<dyn export::Part>]>) -> Self {
        Self { state, zones, parts }
    }
}

type Reply<T> = Result<Response<T>, Status>;

impl From<&Standing> for pb::Progress {
    fn from(s: &Standing) -> Self {
        let Standing {
            skills,
            current_streak,
            longest_streak,
            sessions,
            meetings,
            practice_ms,
            last_practice,
        } = s;
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Self {
            skills: skills.iter().map(pb::SkillProgress::from).collect(),
            current_streak_days: i32::try_from(*current_streak).unwrap_or(i32::MAX),
            longest_streak_days: i32::try_from(*longest_streak).unwrap_or(i32::MAX),
            sessions_completed: count(*sessions),
            meetings_analyzed: count(*meetings),
            practice_time: Some(timestamps::ms_to_duration(*practice_ms)),
            last_practice_time: timestamps::opt_to_proto(*last_practice),
        }
    }
}

impl From<&SkillStanding> for pb::SkillProgress {
    fn from(s: &SkillStanding) -> Self {
        let SkillStanding {
            skill,
            score,
            trend,
            samples,
            updated,
        } = s;
        Self {
            skill: pb::Skill::from(*skill).into(),
            score: *score,
            trend: *trend,
            sample_count: i32::try_from(*samples).unwrap_or(i32::MAX),
            update_time: Some(timestamps::to_proto(*updated)),
        }
    }
}

impl From<super::entity::Model> for pb::SkillScorePoint {
    fn from(row: super::entity::Model) -> Self {
        let super::entity::Model {
            skill,
            score,
            source,
            recorded_at,
            // Bookkeeping: the id orders, the rest feeds the standing.
            id: _,
            user_id: _,
            import_key: _,
            duration_ms: _,
            module_id: _,
            created_at: _,
            updated_at: _,
        } = row;
        let skill = Skill::parse(&skill).map_or(pb::Skill::Unspecified, pb::Skill::from);
        Self {
            skill: skill.into(),
            score,
            time: Some(timestamps::to_proto(recorded_at)),
            source,
        }
    }
}

#[tonic::async_trait]
impl ProgressService for ProgressApi {
    #[tracing::instrument(skip_all)]
    async fn get_progress(&self, request: Request<pb::GetProgressRequest>) -> Reply<pb::GetProgressResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let scoped = self.state.db.read_as_user(user_id).await?;
        let zone = self.zones.zone(&scoped, user_id).await?;
        let points = store::points(&scoped, user_id).await?;
        drop(scoped);
        let standing = standing::standing(&points, self.state.clock.now(), zone);
        Ok(Response::new(pb::GetProgressResponse {
            progress: Some(pb::Progress::from(&standing)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_skill_history(
        &self,
        request: Request<pb::ListSkillHistoryRequest>,
    ) -> Reply<pb::ListSkillHistoryResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::ListSkillHistoryRequest {
            skill,
            start_time,
            end_time,
            page_size,
            page_token,
        } = request.into_inner();
        let mut bad = Violations::default();
        let skill = pb::Skill::try_from(skill).ok().and_then(Skill::from_proto);
        if skill.is_none() {
            bad.add("skill", "must be a skill, e.g. SKILL_PACING");
        }
        let mut time = |field: &str, t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .map(|t| bad.check(timestamps::from_proto(field, t)))
                .transpose()
                .map(Option::flatten)
        };
        let from = time("start_time", &start_time)?;
        let until = time("end_time", &end_time)?;
        if let (Some(from), Some(until)) = (from, until)
            && from >= until
        {
            bad.add("end_time", "must be after start_time");
        }
        let page = bad.check(PageRequest::<AfterPoint>::parse(
            page_size,
            &page_token,
            100,
            1000,
        ))?;
        let (skill, page) = bad.finish(|| Some((skill?, page?)))?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        let (rows, next) = store::history(&scoped, user_id, skill, (from, until), &page).await?;
        Ok(Response::new(pb::ListSkillHistoryResponse {
            points: rows.into_iter().map(pb::SkillScorePoint::from).collect(),
            next_page_token: PageRequest::token(next.as_ref()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn export_data(
        &self,
        request: Request<pb::ExportDataRequest>,
    ) -> Reply<FrameStream<pb::ExportDataResponse>> {
        let meta = RequestMeta::of(&request);
        let user_id = Caller::of(&request)?.user_id;
        let db = &self.state.db;
        let manifest = export::manifest(db, user_id, &self.parts, self.state.clock.now()).await?;
        let scoped = db.as_user(user_id).await?;
        audit::record(&scoped, &meta, audit::Entry::own("data.export", user_id)).await?;
        scoped.commit().await?;
        let records = futures::stream::once(async { Ok(export::Record::Manifest(manifest)) })
            .chain(export::records(db.clone(), user_id, self.parts.clone()))
            .map(|record| {
                Ok(pb::ExportDataResponse {
                    record: Some(record.map_err(Status::from)?),
                })
            });
        Ok(Response::new(Box::pin(records)))
    }
}
