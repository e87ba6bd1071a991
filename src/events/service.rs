//! The gRPC EventService.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::store::{self, Filter};
use super::stream::Streams;
use crate::caller::Caller;
use crate::error::Violations;
use crate::pb::v1 as pb;
use crate::pb::v1::event_service_server::EventService;
use crate::shared::Shared;

/// EventService.
#[derive(Clone, Debug)]
pub struct EventApi {
    state: Shared,
    streams: Arc<Streams>,
}

impl EventApi {
    /// The service over the shared state and the open streams.
    pub fn new(state: Shared, streams: Arc<Streams>) -> Self {
        Self { state, streams }
    }
}

/// A stream of frames, as tonic wants it.
pub type FrameStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl EventService for EventApi {
    #[tracing::instrument(skip_all)]
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<FrameStream<pb::SubscribeResponse>>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::SubscribeRequest {
            after_event_id,
            types,
            meeting,
        } = request.into_inner();
        let mut bad = Violations::default();
        let filter = Filter::parse(&mut bad, &types, &meeting)?;
        if after_event_id.is_some_and(|id| id < 0) {
            bad.add("after_event_id", "must not be negative");
        }
        let filter = bad.finish(|| filter)?;
        let slot = self.streams.open(user_id)?;
        // Without a starting point the stream starts at the newest event.
        let after = match after_event_id {
            Some(id) => id,
            None => {
                let scoped = self.state.db.read_as_user(user_id).await?;
                store::last_id(&scoped, user_id).await?
            }
        };
        let stream = self.streams.stream(slot, after, filter, Vec::new(), None);
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let pb::ListEventsRequest {
            after_event_id,
            page_size,
            types,
            meeting,
        } = request.into_inner();
        let mut bad = Violations::default();
        let filter = Filter::parse(&mut bad, &types, &meeting)?;
        let size = match page_size {
            0 => 100,
            n if n < 0 => {
                bad.add("page_size", "must not be negative");
                0
            }
            n => u64::try_from(n.min(500)).unwrap_or(500),
        };
        let filter = bad.finish(|| filter)?;
        let scoped = self.state.db.read_as_user(user_id).await?;
        let mut rows = store::read(&scoped, after_event_id.max(0), &filter, size + 1).await?;
        let has_more = rows.len() as u64 > size;
        rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let last_event_id = rows.last().map_or(after_event_id.max(0), |r| r.seq);
        Ok(Response::new(pb::ListEventsResponse {
            events: rows.iter().map(pb::Event::from).collect(),
            last_event_id,
            has_more,
        }))
    }
}
