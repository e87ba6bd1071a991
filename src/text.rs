//! Rules for free text a person types: titles, display names, reasons.

use crate::error::{AppError, AppResult};

/// Longest display name.
pub const MAX_DISPLAY_NAME: usize = 100;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused() {
        assert!(display_name("display_name", "Al\u{7}ice").is_err());
    }
}
