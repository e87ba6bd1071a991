//! Opaque secrets: generation, storage hashes and refresh successors.
//!
//! Refresh tokens, API keys and email tokens carry 256 random bits, so a
//! fast hash (SHA-256) is enough to store them: nobody can guess their way
//! back from the hash. Only the hash is ever written to the database.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};

/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "drt_";
/// Prefix of API keys.
pub const API_KEY_PREFIX: &str = "dbk_";
/// Prefix of email verification and password reset tokens.
pub const EMAIL_TOKEN_PREFIX: &str = "det_";

/// A new random secret: `prefix` and 256 random bits, base64url.
pub fn generate(prefix: &str) -> AppResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AppError::internal(e.to_string()))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a secret: lowercase hex SHA-256.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// A secret derived from `input` with HMAC-SHA256 under a key every
/// instance shares: the same input always gives the same secret, which only
/// holders of the key can compute. A refresh token's successor is derived
/// from the token, so a concurrent refresh gets the same successor again;
/// an API key created with an idempotency key is derived from it, so a retry
/// gets the same key. Neither is stored.
pub fn derive(key: &[u8; 32], prefix: &str, input: &str) -> AppResult<String> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|e| AppError::internal(e.to_string()))?;
    mac.update(input.as_bytes());
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    ))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_prefixed_and_hash_stably() {
        let a = generate(API_KEY_PREFIX).unwrap();
        let b = generate(API_KEY_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("dbk_") && a.len() == 4 + 43);
        assert_eq!(hash(&a), hash(&a));
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn derived_secrets_are_deterministic_and_keyed() {
        let token = generate(REFRESH_PREFIX).unwrap();
        let next = derive(&[1; 32], REFRESH_PREFIX, &token).unwrap();
        assert_eq!(next, derive(&[1; 32], REFRESH_PREFIX, &token).unwrap());
        assert_ne!(next, derive(&[2; 32], REFRESH_PREFIX, &token).unwrap());
        assert!(next.starts_with(REFRESH_PREFIX) && next != token);
    }
}
