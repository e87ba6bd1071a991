//! The export's account (in the manifest) and API keys: their names,
//! scopes and times, never a secret or its hash.

use uuid::Uuid;

use super::entity::api_key;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::export::{Page, Part, Record, rows_after};
use crate::pb::v1 as pb;

/// The account and its keys, for the export.
#[derive(Debug)]
pub struct Exported;

#[tonic::async_trait]
impl Part for Exported {
    fn kinds(&self) -> &'static [&'static str] {
        &["api_key"]
    }

    async fn describe(
        &self,
        scoped: &Scoped,
        user_id: Uuid,
        manifest: &mut pb::ExportManifest,
    ) -> AppResult<()> {
        let user = super::store::get_user(scoped, user_id).await?;
        manifest.user = Some(super::store::user_with_profile(scoped, &user).await?);
        Ok(())
    }

    async fn page(&self, scoped: &Scoped, _user_id: Uuid, after: Option<Uuid>) -> AppResult<Page> {
        let query = scoped.find::<api_key::Entity>();
        let (keys, next) = rows_after(scoped, query, (api_key::Column::Id, |key| key.id), after, 200).await?;
        let records = keys
            .iter()
            .map(|key| Record::ApiKey(pb::ApiKey::from(key)))
            .collect();
        Ok((records, next))
    }
}
