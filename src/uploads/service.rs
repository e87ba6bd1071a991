//! The gRPC UploadService.

use bytes::{Bytes, BytesMut};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::append::{self, Chunk};
use super::lifecycle::{self, NewUpload};
use super::model::{max_chunk, to_proto};
use super::{complete, store};
use crate::auth::Caller;
use crate::auth::model::parse_name;
use crate::context::RequestMeta;
use crate::error::{AppError, AppResult};
use crate::meetings::convert;
use crate::pb::v1 as pb;
use crate::pb::v1::upload_service_server::UploadService;
use crate::server::AppState;
use crate::timestamps;

/// UploadService.
#[derive(Clone, Debug)]
pub struct UploadApi {
    state: AppState,
}

impl UploadApi {
    /// The service over the shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn proto(&self, upload: &super::entity::upload::Model) -> pb::Upload {
        to_proto(upload, self.state.config.max_message_bytes)
    }

    /// Reads the client stream after its metadata into chunks of the
    /// largest size and appends them; the upload is cancelled on failure.
    async fn stream_chunks(
        &self,
        user_id: Uuid,
        upload_id: Uuid,
        stream: &mut Streaming<pb::UploadRequest>,
    ) -> AppResult<()> {
        let limit = usize::try_from(max_chunk(self.state.config.max_message_bytes)).unwrap_or(usize::MAX);
        let mut buffer = BytesMut::with_capacity(limit);
        let mut offset = 0i64;
        let flush = |data: Bytes, at: i64| {
            append::append(
                &self.state,
                user_id,
                upload_id,
                Chunk {
                    offset: at,
                    crc32c: None,
                    data,
                },
            )
        };
        loop {
            let message = stream
                .message()
                .await
                .map_err(|status| AppError::invalid("stream", status.message().to_owned()))?;
            let Some(message) = message else { break };
            let bytes = match message.kind {
                Some(pb::upload_request::Kind::Chunk(bytes)) => bytes,
                _ => {
                    return Err(AppError::invalid(
                        "chunk",
                        "only the first message may carry metadata",
                    ));
                }
            };
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let take = (limit - buffer.len()).min(rest.len());
                buffer.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buffer.len() == limit {
                    let data = buffer.split().freeze();
                    let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                    flush(data, offset).await?;
                    offset += len;
                }
            }
        }
        if !buffer.is_empty() {
            flush(buffer.split().freeze(), offset).await?;
        }
        Ok(())
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
        let created = lifecycle::create(&self.state, user_id, NewUpload::parse(upload, request_id)?).await?;
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
        let data = chunk.map(|c| Bytes::from(c.data)).unwrap_or_default();
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
        let scoped = self.state.db.as_user(user_id).await?;
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
            meeting: Some(convert::to_proto(&meeting)),
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
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .and_then(|m| match m.kind {
                Some(pb::upload_request::Kind::Metadata(upload)) => Some(upload),
                _ => None,
            })
            .ok_or_else(|| {
                AppError::invalid("metadata", "the first message must carry the upload's metadata")
            })?;
        let created = lifecycle::create(
            &self.state,
            user_id,
            NewUpload::parse(Some(first), String::new())?,
        )
        .await?;
        if let Err(error) = self.stream_chunks(user_id, created.id, &mut stream).await {
            // Nothing half-uploaded stays behind.
            let _ = lifecycle::cancel(&self.state, user_id, created.id).await;
            return Err(error.into());
        }
        let (upload, meeting) = complete::complete(&self.state, &meta, user_id, created.id).await?;
        Ok(Response::new(pb::UploadResponse {
            upload: Some(self.proto(&upload)),
            meeting: Some(convert::to_proto(&meeting)),
        }))
    }
}
