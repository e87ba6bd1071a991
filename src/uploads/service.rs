//! The gRPC UploadService.

use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::append::{self, Chunk};
use super::lifecycle::{self, Earlier, NewUpload};
use super::model::ChunkSizes;
use super::{complete, store, stream};
use crate::caller::Caller;
use crate::context::RequestMeta;
use crate::error::AppResult;
use crate::names::parse_name;
use crate::pb::v1 as pb;
use crate::pb::v1::upload_service_server::UploadService;
use crate::shared::Shared;
use crate::timestamps;

/// UploadService.
#[derive(Clone, Debug)]
pub struct UploadApi {
    state: Shared,
}

impl UploadApi {
    /// The service over the shared state.
    pub fn new(state: Shared) -> Self {
        Self { state }
    }

    fn proto(&self, upload: &super::entity::upload::Model) -> pb::Upload {
        pb::Upload::from((upload, ChunkSizes::within(self.state.config.max_message_bytes)))
    }
}

fn upload_id(field: &str, name: &str) -> AppResult<Uuid> {
    parse_name(field, name, "uploads")
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl UploadService for UploadApi {
    #[tracing::instrument(skip_all)]
    async fn create_upload(
        &self,
        request: Request<pb::CreateUploadRequest>,
    ) -> Reply<pb::CreateUploadResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::CreateUploadRequest { upload, request_id } = request.into_inner();
        let new = NewUpload::parse(upload, request_id)?;
        let created = lifecycle::create(&self.state, user_id, new, Earlier::Refuse).await?;
        Ok(Response::new(pb::CreateUploadResponse {
            upload: Some(self.proto(&created)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn append_chunk(&self, request: Request<pb::AppendChunkRequest>) -> Reply<pb::AppendChunkResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::AppendChunkRequest {
            name,
            offset,
            crc32c,
            chunk,
        } = request.into_inner();
        let id = upload_id("name", &name)?;
        let data = chunk.map(|c| c.data).unwrap_or_default();
        let appended = append::append(&self.state, user_id, id, Chunk { offset, crc32c, data }).await?;
        Ok(Response::new(pb::AppendChunkResponse {
            committed_bytes: appended.committed_bytes,
            expire_time: Some(timestamps::to_proto(appended.expires_at)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_upload(&self, request: Request<pb::GetUploadRequest>) -> Reply<pb::GetUploadResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = upload_id("name", &request.get_ref().name)?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        let upload = store::get(&scoped, id, chrono::Utc::now()).await?;
        Ok(Response::new(pb::GetUploadResponse {
            upload: Some(self.proto(&upload)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_upload(
        &self,
        request: Request<pb::CompleteUploadRequest>,
    ) -> Reply<pb::CompleteUploadResponse> {
        let meta = RequestMeta::of(&request);
        let user_id = Caller::of(&request)?.user_id;
        let id = upload_id("name", &request.get_ref().name)?;
        let (upload, meeting) = complete::complete(&self.state, &meta, user_id, id).await?;
        Ok(Response::new(pb::CompleteUploadResponse {
            upload: Some(self.proto(&upload)),
            meeting: Some(pb::Meeting::from(&meeting)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_upload(
        &self,
        request: Request<pb::CancelUploadRequest>,
    ) -> Reply<pb::CancelUploadResponse> {
        let user_id = Caller::of(&request)?.user_id;
        let id = upload_id("name", &request.get_ref().name)?;
        let upload = lifecycle::cancel(&self.state, user_id, id).await?;
        Ok(Response::new(pb::CancelUploadResponse {
            upload: Some(self.proto(&upload)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn upload(&self, request: Request<Streaming<pb::UploadRequest>>) -> Reply<pb::UploadResponse> {
        let meta = RequestMeta::of(&request);
        let user_id = Caller::of(&request)?.user_id;
        let (upload, meeting) = stream::upload(&self.state, &meta, user_id, request.into_inner()).await?;
        Ok(Response::new(pb::UploadResponse {
            upload: Some(self.proto(&upload)),
            meeting: Some(pb::Meeting::from(&meeting)),
        }))
    }
}
