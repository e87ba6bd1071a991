//! AIP-158 pagination: `page_size` and opaque `page_token`s.
//!
//! A token is the URL-safe base64 of a small JSON cursor (the sort key of
//! the last row returned). Clients treat it as opaque; a token that does not
//! decode is an INVALID_ARGUMENT on `page_token`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AppResult, Violations};

/// A validated page request.
#[derive(Debug)]
pub struct PageRequest<C> {
    /// How many rows to return.
    pub size: u64,
    /// Where to continue; None for the first page.
    pub after: Option<C>,
}

impl<C: DeserializeOwned> PageRequest<C> {
    /// Validates `page_size` (0 means `default`; larger than `max` is
    /// lowered to `max`) and decodes `page_token`.
    pub fn parse(page_size: i32, page_token: &str, default: u64, max: u64) -> AppResult<Self> {
        let mut bad = Violations::default();
        let size = match u64::try_from(page_size) {
            Err(_) => {
                bad.add("page_size", "must not be negative");
                None
            }
            Ok(0) => Some(default),
            Ok(size) => Some(size.min(max)),
        };
        let after = if page_token.is_empty() {
            Some(None)
        } else {
            let decoded = URL_SAFE_NO_PAD
                .decode(page_token)
                .ok()
                .and_then(|json| serde_json::from_slice(&json).ok());
            if decoded.is_none() {
                bad.add("page_token", "is not a token from a previous response");
            }
            decoded.map(Some)
        };
        bad.finish(|| {
            Some(Self {
                size: size?,
                after: after?,
            })
        })
    }
}

impl<C> PageRequest<C> {
    /// Cuts `rows`, fetched with a limit of `size + 1`, to one page and
    /// returns it with the cursor of the next page, if there is one.
    pub fn page<T>(&self, mut rows: Vec<T>, cursor_of: impl FnOnce(&T) -> C) -> (Vec<T>, Option<C>) {
        if rows.len() as u64 <= self.size {
            return (rows, None);
        }
        rows.truncate(usize::try_from(self.size).unwrap_or(usize::MAX));
        let next = rows.last().map(cursor_of);
        (rows, next)
    }
}

/// A cursor for lists ordered by time-ordered (v7) ids, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BeforeId {
    /// The next page holds ids below this one.
    pub before: uuid::Uuid,
}

impl PageRequest<BeforeId> {
    /// `query` as one page of a list newest first by the time-ordered
    /// `id`: after the cursor, and one row longer than the page, so that
    /// [`Self::page`] can tell whether another page follows.
    pub fn newest_first<E: EntityTrait>(&self, query: Select<E>, id: E::Column) -> Select<E> {
        let query = query.order_by_desc(id).limit(self.size + 1);
        match self.after {
            Some(cursor) => query.filter(id.lt(cursor.before)),
            None => query,
        }
    }
}

impl<C: Serialize> PageRequest<C> {
    /// The `next_page_token` for a cursor; empty when there is no next page.
    pub fn token(next: Option<&C>) -> String {
        next.and_then(|cursor| serde_json::to_vec(cursor).ok())
            .map(|json| URL_SAFE_NO_PAD.encode(json))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AppError;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Cursor {
        id: String,
    }

    #[test]
    fn sizes_default_and_cap() {
        assert_eq!(PageRequest::<Cursor>::parse(0, "", 50, 200).unwrap().size, 50);
        assert_eq!(PageRequest::<Cursor>::parse(500, "", 50, 200).unwrap().size, 200);
        assert!(matches!(
            PageRequest::<Cursor>::parse(-1, "", 50, 200),
            Err(AppError::InvalidArgument(_))
        ));
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = PageRequest::token(Some(&Cursor { id: "pro".into() }));
        let page = PageRequest::<Cursor>::parse(10, &token, 50, 200).unwrap();
        assert_eq!(page.after, Some(Cursor { id: "pro".into() }));
        assert_eq!(PageRequest::<Cursor>::token(None), "");
        let err = PageRequest::<Cursor>::parse(10, "not a token!", 50, 200).unwrap_err();
        assert!(matches!(err, AppError::InvalidArgument(v) if v[0].field == "page_token"));
        let both = PageRequest::<Cursor>::parse(-3, "garbage", 50, 200).unwrap_err();
        assert!(matches!(both, AppError::InvalidArgument(v) if v.len() == 2));
    }

    #[test]
    fn a_page_is_cut_to_size_with_the_next_cursor() {
        let page = PageRequest::<Cursor>::parse(2, "", 50, 200).unwrap();
        let cursor = |n: &u32| Cursor { id: n.to_string() };
        assert_eq!(
            page.page(vec![1, 2, 3], cursor),
            (vec![1, 2], Some(Cursor { id: "2".into() }))
        );
        assert_eq!(page.page(vec![1, 2], cursor), (vec![1, 2], None));
    }
}
