//! The export's profile, with its onboarding answers.

use uuid::Uuid;

use crate::db::Scoped;
use crate::error::AppResult;
use crate::export::{Page, Part, Record};
use crate::pb::v1 as pb;

/// The profile, for the export.
#[derive(Debug)]
pub struct Exported;

#[tonic::async_trait]
impl Part for Exported {
    fn kinds(&self) -> &'static [&'static str] {
        &["profile"]
    }

    async fn page(&self, scoped: &Scoped, user_id: Uuid, _after: Option<Uuid>) -> AppResult<Page> {
        let profile = super::store::get(scoped, user_id).await?;
        Ok((vec![Record::Profile(pb::Profile::from(&profile))], None))
    }
}
