//! Rules for account fields.

use crate::error::{AppError, AppResult};

/// Longest display name.
pub const MAX_DISPLAY_NAME: usize = 100;

/// A normalised email address: trimmed, lower-case, one `@`, a dotted
/// domain, at most 254 characters.
pub fn normalise_email(field: &str, raw: &str) -> AppResult<String> {
    let email = raw.trim().to_lowercase();
    let invalid = |why: &str| AppError::invalid(field, why);
    if email.is_empty() {
        return Err(invalid("is required"));
    }
    if email.len() > 254 {
        return Err(invalid("must be at most 254 characters long"));
    }
    let (local, domain) = email
        .split_once('@')
        .ok_or_else(|| invalid("is not an email address"))?;
    let plausible = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !plausible {
        return Err(invalid("is not an email address"));
    }
    Ok(email)
}

/// A display name: trimmed, at most 100 characters, no control characters.
pub fn display_name(field: &str, raw: &str) -> AppResult<String> {
    plain_text(field, raw, MAX_DISPLAY_NAME)
}

/// Trimmed text of at most `max` characters without control characters.
pub fn plain_text(field: &str, raw: &str, max: usize) -> AppResult<String> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(AppError::invalid(
            field,
            format!("must be at most {max} characters long"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(AppError::invalid(field, "must not contain control characters"));
    }
    Ok(text.to_owned())
}

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
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalise_email("email", "  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@localhost",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(normalise_email("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_parse() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            parse_name("name", &format!("apiKeys/{id}"), "apiKeys").unwrap(),
            id
        );
        assert!(parse_name("name", &format!("authSessions/{id}"), "apiKeys").is_err());
        assert!(display_name("display_name", "Al\u{7}ice").is_err());
    }
}
