//! Password hashing (argon2id) and strength checks (zxcvbn).

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{AppError, AppResult, FieldViolation};

/// Longest password accepted; argon2 would take more, but nobody types this.
const MAX_LEN: usize = 256;
/// Lowest zxcvbn score accepted: "safely unguessable" (10^10 guesses).
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// argon2id with the OWASP recommendation m=19 MiB, t=2, p=1 (the crate's
/// defaults, spelled out so a change there cannot weaken them silently).
fn argon2() -> Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// The PHC string of `password`. Runs off the async threads.
pub async fn hash(password: &str) -> AppResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| AppError::internal(e.to_string()))
    })
    .await
    .map_err(AppError::internal)?
}

/// Whether `password` matches `hash`. With no hash (an unknown email, an
/// account without a password) it verifies against a fixed dummy hash and
/// answers false, so both cases cost the same time.
pub async fn verify(password: &str, hash: Option<&str>) -> AppResult<bool> {
    let (hash, known) = match hash {
        Some(hash) => (hash.to_owned(), true),
        None => (dummy_hash()?.to_owned(), false),
    };
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || {
        argon2()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .map_err(AppError::internal)?;
    Ok(known && matches)
}

fn dummy_hash() -> AppResult<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = argon2()
        .hash_password(b"debrief dummy password for unknown accounts")
        .map_err(|e| AppError::internal(e.to_string()))?
        .to_string();
    Ok(DUMMY.get_or_init(|| hash))
}

/// Checks a new password for the account `email` (its address, its local
/// part and `others`, such as the name, count as easy guesses).
pub fn check_new(field: &str, password: &str, email: &str, others: &[&str]) -> AppResult<()> {
    let local_part = email.split('@').next().unwrap_or_default();
    let mut context = vec![email, local_part];
    context.extend_from_slice(others);
    check_strength(field, password, &context).map_err(|v| AppError::InvalidArgument(vec![v]))
}

/// Checks a new password: length, and a zxcvbn score of at least 3 given
/// what the service knows about the person (`context`: email, name).
pub fn check_strength(field: &str, password: &str, context: &[&str]) -> Result<(), FieldViolation> {
    let violation = |description: String| FieldViolation {
        field: field.to_owned(),
        description,
    };
    let length = password.chars().count();
    if length < 8 {
        return Err(violation("must be at least 8 characters long".into()));
    }
    if length > MAX_LEN {
        return Err(violation(format!("must be at most {MAX_LEN} characters long")));
    }
    let estimate = zxcvbn::zxcvbn(password, context);
    if estimate.score() >= MIN_SCORE {
        return Ok(());
    }
    let mut description = String::from("is too easy to guess");
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            description.push_str(&format!(": {warning}"));
        }
        for suggestion in feedback.suggestions() {
            description.push_str(&format!(" {suggestion}"));
        }
    }
    Err(violation(description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_match() {
        let hash = hash("correct horse battery staple").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery staple", Some(&hash)).await.unwrap());
        assert!(!verify("wrong", Some(&hash)).await.unwrap());
        assert!(
            !verify("debrief dummy password for unknown accounts", None)
                .await
                .unwrap()
        );
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        for weak in ["short", "password123", "alice@example.com1"] {
            let err = check_strength("password", weak, &["alice@example.com"]).unwrap_err();
            assert_eq!(err.field, "password");
        }
        assert!(check_strength("password", "violet-kettle-orbit-93", &[]).is_ok());
    }
}
