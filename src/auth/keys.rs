//! Ed25519 keys for access tokens: signing, verification and the JWKS
//! document other services verify with.
//!
//! One key signs; every configured key verifies, so a new signing key can be
//! rolled out while tokens signed by the old one are still accepted. A key's
//! `kid` is its RFC 7638 thumbprint, so every instance derives the same id
//! from the same key without further configuration.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters,
    OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::entity::user::Role;

/// File name of the generated development key in the data directory.
pub const DEV_KEY_FILE: &str = "jwt-signing-key.pem";

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The signing key is not an Ed25519 PKCS#8 PEM.
    #[error("DEBRIEF_JWT_SIGNING_KEY is not an Ed25519 private key in PKCS#8 PEM form")]
    SigningKey,
    /// A verification key is not an Ed25519 public key PEM.
    #[error("DEBRIEF_JWT_VERIFY_KEYS holds something that is not an Ed25519 public key in PEM form")]
    VerifyKey,
    /// Postgres deployments must share one configured key.
    #[error(
        "DEBRIEF_JWT_SIGNING_KEY must be set when DATABASE_URL is set, so that every instance \
         signs with the same key (generate one with `debrief keys generate`)"
    )]
    Missing,
    /// The development key file could not be read or written.
    #[error("cannot use the development signing key {path}: {source}")]
    DevKey {
        /// The key file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// What an access token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The session id.
    pub sid: Uuid,
    /// The role when the token was issued.
    pub role: String,
    /// Issuer.
    pub iss: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// Why a token was refused. The caller only learns "invalid" or "expired".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Past its `exp`.
    Expired,
    /// Anything else: malformed, bad signature, unknown key, wrong algorithm.
    Invalid,
}

struct VerifyKey {
    kid: String,
    key: DecodingKey,
    jwk: Jwk,
}

/// Seconds of clock skew allowed past a token's `exp`.
const LEEWAY_SECS: i64 = 5;

/// Verified tokens kept before expired ones are pruned.
const VERIFIED_MAX: usize = 10_000;

/// The signing key and every key accepted for verification.
pub struct KeySet {
    signing_kid: String,
    signing: EncodingKey,
    verify: Vec<VerifyKey>,
    validation: Validation,
    /// See [`KeySet::derivation_key`].
    derivation_key: [u8; 32],
    /// Tokens whose signature was checked, with their claims, until they
    /// expire: a client sends the same token on every call, and checking
    /// the Ed25519 signature each time was a tenth of a read's cost. Keyed
    /// by the whole token, signature included, so no other text can use
    /// an entry; at most [`VERIFIED_MAX`] entries.
    verified: std::sync::Mutex<std::collections::HashMap<String, Claims>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("signing_kid", &self.signing_kid)
            .field(
                "verify_kids",
                &self.verify.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A new Ed25519 private key as PKCS#8 PEM.
pub fn generate_pem() -> Result<String, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    let pem = SigningKey::from_bytes(&seed)
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| getrandom::Error::UNEXPECTED)?;
    Ok(pem.to_string())
}

impl KeySet {
    /// Loads the configured keys. Without a signing key, `dev_key_dir` (the
    /// data directory of a SQLite setup) holds a generated one; `None` there
    /// means a key is required.
    pub fn load(
        signing_pem: Option<&str>,
        verify_pems: Option<&str>,
        issuer: &str,
        dev_key_dir: Option<&Path>,
    ) -> Result<Self, KeyError> {
        let signing_pem = match (signing_pem, dev_key_dir) {
            (Some(pem), _) => pem.to_owned(),
            (None, Some(dir)) => dev_key(dir)?,
            (None, None) => return Err(KeyError::Missing),
        };
        let signing_key = SigningKey::from_pkcs8_pem(&signing_pem).map_err(|_| KeyError::SigningKey)?;
        let der = signing_key.to_pkcs8_der().map_err(|_| KeyError::SigningKey)?;
        let mut verify = vec![verify_key(signing_key.verifying_key())];
        for pem in split_pem(verify_pems.unwrap_or_default()) {
            let key = VerifyingKey::from_public_key_pem(&pem).map_err(|_| KeyError::VerifyKey)?;
            let key = verify_key(key);
            if verify.iter().all(|k| k.kid != key.kid) {
                verify.push(key);
            }
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS as u64;
        let derivation_key = Sha256::new()
            .chain_update(b"debrief secret derivation v1")
            .chain_update(signing_key.as_bytes())
            .finalize()
            .into();
        Ok(Self {
            signing_kid: verify[0].kid.clone(),
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            verify,
            validation,
            derivation_key,
            verified: std::sync::Mutex::default(),
        })
    }

    /// Signs an access token with the signing key.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing)
    }

    /// Verifies an access token: EdDSA only, a known `kid`, a valid
    /// signature, issuer and expiry. A token verified before is known by
    /// its text until it expires.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp() as i64)
    }

    /// [`Self::verify`] at `now` (seconds since the epoch) for a token
    /// verified before; a new token's signature and times are checked by
    /// jsonwebtoken against the clock.
    fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let known = self.verified.lock().ok().and_then(|v| v.get(token).cloned());
        if let Some(claims) = known {
            return if claims.exp < now - LEEWAY_SECS {
                Err(TokenError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = self.verify_signature(token)?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_MAX {
                verified.retain(|_, c| c.exp >= now - LEEWAY_SECS);
                if verified.len() >= VERIFIED_MAX {
                    verified.clear();
                }
            }
            verified.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self
            .verify
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Invalid)?;
        jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.verify.iter().map(|k| k.jwk.clone()).collect(),
        }
    }

    /// A key known to every instance that shares the signing key (derived
    /// from it), for [`crate::auth::secret::derive`].
    pub fn derivation_key(&self) -> &[u8; 32] {
        &self.derivation_key
    }
}

/// Claims for a session's new access token.
pub fn claims(user_id: Uuid, session_id: Uuid, role: Role, issuer: &str, ttl: std::time::Duration) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: user_id,
        sid: session_id,
        role: role.as_str().to_owned(),
        iss: issuer.to_owned(),
        iat: now,
        exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
    }
}

fn verify_key(key: VerifyingKey) -> VerifyKey {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    // RFC 7638: SHA-256 over the required members in lexicographic order.
    let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
    let jwk = Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x,
        }),
    };
    VerifyKey {
        kid,
        key: DecodingKey::from_ed_der(key.as_bytes()),
        jwk,
    }
}

/// Reads the development key from `dir`, creating it (mode 0600) the first
/// time.
fn dev_key(dir: &Path) -> Result<String, KeyError> {
    let path = dir.join(DEV_KEY_FILE);
    let error = |source| KeyError::DevKey {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(pem) => return Ok(pem),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
        Err(_) => {}
    }
    std::fs::create_dir_all(dir).map_err(error)?;
    let pem = generate_pem().map_err(|e| error(std::io::Error::other(e)))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(error)?;
            tracing::warn!(path = %path.display(), "generated a development signing key; set DEBRIEF_JWT_SIGNING_KEY in production");
            Ok(pem)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(&path).map_err(error)
        }
        Err(e) => Err(error(e)),
    }
}

/// Splits concatenated PEM blocks.
fn split_pem(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END ") {
            blocks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// The public key of a private key PEM, as PEM (for `DEBRIEF_JWT_VERIFY_KEYS`).
pub fn public_pem(private_pem: &str) -> Result<String, KeyError> {
    SigningKey::from_pkcs8_pem(private_pem)
        .map_err(|_| KeyError::SigningKey)?
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|_| KeyError::SigningKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(signing: &str, verify: Option<&str>) -> KeySet {
        KeySet::load(Some(signing), verify, "debrief", None).unwrap()
    }

    #[test]
    fn a_token_verifies_with_its_key_and_an_old_key_still_verifies_after_rotation() {
        let old = generate_pem().unwrap();
        let new = generate_pem().unwrap();
        let claims = claims(
            Uuid::now_v7(),
            Uuid::now_v7(),
            Role::User,
            "debrief",
            std::time::Duration::from_secs(60),
        );
        let old_token = keys(&old, None).sign(&claims).unwrap();
        assert_eq!(keys(&old, None).verify(&old_token), Ok(claims.clone()));
        // The new key alone does not know the old token's kid...
        assert_eq!(keys(&new, None).verify(&old_token), Err(TokenError::Invalid));
        // ...but with the old public key configured it does.
        let rotated = keys(&new, Some(&public_pem(&old).unwrap()));
        assert_eq!(rotated.verify(&old_token), Ok(claims));
        assert_eq!(rotated.jwks().keys.len(), 2);
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_and_nothing_else_passes_for_it() {
        let keys = keys(&generate_pem().unwrap(), None);
        let claims = claims(
            Uuid::now_v7(),
            Uuid::now_v7(),
            Role::User,
            "debrief",
            std::time::Duration::from_secs(60),
        );
        let token = keys.sign(&claims).unwrap();
        assert_eq!(keys.verify(&token), Ok(claims.clone()));
        // Remembered: still valid up to exp and the leeway, expired after.
        assert_eq!(
            keys.verify_at(&token, claims.exp + LEEWAY_SECS),
            Ok(claims.clone())
        );
        assert_eq!(
            keys.verify_at(&token, claims.exp + LEEWAY_SECS + 1),
            Err(TokenError::Expired)
        );
        // The same token with its signature altered is checked, and refused.
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let first = if signature.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{signed}.{first}{}", &signature[1..]);
        assert_eq!(keys.verify(&forged), Err(TokenError::Invalid));
    }

    #[test]
    fn postgres_setups_need_a_configured_key() {
        assert!(matches!(
            KeySet::load(None, None, "debrief", None),
            Err(KeyError::Missing)
        ));
        assert!(matches!(
            KeySet::load(Some("not a key"), None, "debrief", None),
            Err(KeyError::SigningKey)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_development_key_is_generated_once_with_owner_only_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = KeySet::load(None, None, "debrief", Some(dir.path())).unwrap();
        let second = KeySet::load(None, None, "debrief", Some(dir.path())).unwrap();
        assert_eq!(first.signing_kid, second.signing_kid);
        let mode = std::fs::metadata(dir.path().join(DEV_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
