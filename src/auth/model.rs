//! Rules for account fields.

use crate::error::{AppError, AppResult};

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
}
