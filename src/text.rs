//! Free text a person types: the rules for titles, display names and
//! reasons, and the words of what they wrote or said.

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

/// The words of `text`, lower-case, without punctuation (apostrophes kept).
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// How often `phrase` (one or more words, lower-case) occurs in `words`.
pub fn phrase_count(words: &[String], phrase: &str) -> usize {
    let phrase: Vec<&str> = phrase.split_whitespace().collect();
    if phrase.is_empty() {
        return 0;
    }
    words
        .windows(phrase.len())
        .filter(|w| w.iter().zip(&phrase).all(|(a, b)| a == b))
        .count()
}

/// Questions in `text`: stretches ending in a question mark.
pub fn questions(text: &str) -> i32 {
    let count = text
        .split_inclusive('?')
        .filter(|part| part.ends_with('?') && !part.trim_end_matches('?').trim().is_empty())
        .count();
    i32::try_from(count).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused() {
        assert!(display_name("display_name", "Al\u{7}ice").is_err());
    }
}
