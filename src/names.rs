//! Resource names (`meetings/{id}`, `apiKeys/{id}`): the ids API callers
//! see, parsed in one place for every domain.

use crate::error::{AppError, AppResult};

/// The id in a resource name such as `authSessions/{id}`.
pub fn parse_name(field: &str, name: &str, collection: &str) -> AppResult<uuid::Uuid> {
    name.strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| AppError::invalid(field, format!("must be `{collection}/{{id}}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            parse_name("name", &format!("apiKeys/{id}"), "apiKeys").unwrap(),
            id
        );
        assert!(parse_name("name", &format!("authSessions/{id}"), "apiKeys").is_err());
    }
}
