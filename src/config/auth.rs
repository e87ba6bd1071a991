//! Settings of accounts, tokens, sign-in protection and email.

use std::time::Duration;

use super::parse::{Vars, invalid, positive};
use super::{ConfigError, Secret, UserLimits};

/// Settings of accounts, tokens and sign-in protection.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `DEBRIEF_JWT_SIGNING_KEY` (or `_FILE`): the Ed25519 private key (PKCS#8
    /// PEM) that signs access tokens. Unset with the default SQLite setup: a
    /// key generated once into the data directory.
    pub signing_key: Option<Secret>,
    /// `DEBRIEF_JWT_VERIFY_KEYS` (or `_FILE`): further Ed25519 public keys
    /// (PEM) accepted for verification, e.g. the previous signing key.
    pub verify_keys: Option<String>,
    /// `DEBRIEF_JWT_ISSUER`: the `iss` claim.
    pub issuer: String,
    /// `DEBRIEF_ACCESS_TOKEN_TTL`: lifetime of an access token.
    pub access_token_ttl: Duration,
    /// `DEBRIEF_SESSION_TTL`: how long a session lasts without a refresh.
    pub session_ttl: Duration,
    /// `DEBRIEF_REFRESH_REUSE_GRACE`: how long a rotated refresh token still
    /// returns its successor (concurrent refreshes from two tabs).
    pub refresh_reuse_grace: Duration,
    /// `DEBRIEF_SESSION_RECHECK`: how often an instance re-reads whether a
    /// session or API key was revoked (at most 30s).
    pub session_recheck: Duration,
    /// `DEBRIEF_AUTH_RATE_LIMIT`: requests per minute per IP address to the
    /// SignUp, SignIn, RefreshSession and RequestPasswordReset RPCs.
    pub rate_limit_per_minute: u32,
    /// `DEBRIEF_AUTH_FAILURE_LIMIT`: requests with a wrong token or API key
    /// per minute per IP address before the address is refused for a while.
    pub failed_auth_per_minute: u32,
    /// `DEBRIEF_RATE_LIMIT_READS`, `_WRITES`, `_UPLOADS`: calls per minute
    /// per user to reading RPCs, to changing ones, and to UploadService.
    pub user_limits: UserLimits,
    /// `DEBRIEF_SIGN_IN_MAX_FAILURES`: consecutive failures for one email
    /// before it is locked (an IP address gets four times as many).
    pub max_sign_in_failures: u32,
    /// `DEBRIEF_SIGN_IN_LOCKOUT`: the first lockout; each further failure
    /// doubles it, up to an hour.
    pub lockout: Duration,
    /// `DEBRIEF_APP_URL`: the web app, for links in emails.
    pub app_url: String,
    /// How email is delivered.
    pub mail: MailConfig,
}

/// How email (verification and password reset links) is delivered.
#[derive(Debug, Clone)]
pub enum MailConfig {
    /// `DEBRIEF_MAILER=log` (the default without `DEBRIEF_SMTP_URL`): not
    /// delivered but written to the log, links included. Development only.
    Log,
    /// `DEBRIEF_MAILER=smtp`: through an SMTP server, always encrypted.
    Smtp(SmtpConfig),
}

/// An SMTP server to send through.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Host name (checked against the server's certificate).
    pub host: String,
    /// Port: 587 (STARTTLS) or 465 (TLS) unless given.
    pub port: u16,
    /// `smtps://`: TLS from the start; else STARTTLS, required.
    pub implicit_tls: bool,
    /// User name and password, when the server wants them.
    pub credentials: Option<(String, Secret)>,
    /// `DEBRIEF_MAIL_FROM`: the sender, e.g. `debrief <no-reply@example.com>`.
    pub from: String,
    /// `DEBRIEF_SMTP_CA_FILE`: PEM of further roots to trust (a private CA).
    pub extra_roots: Option<Vec<u8>>,
}

impl AuthConfig {
    pub(super) fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let session_recheck = vars.duration("DEBRIEF_SESSION_RECHECK", "15s")?;
        if session_recheck > Duration::from_secs(30) {
            return Err(ConfigError {
                var: "DEBRIEF_SESSION_RECHECK",
                reason: "must be at most 30s, so revocations apply within 30 seconds".into(),
            });
        }
        Ok(Self {
            signing_key: vars.secret("DEBRIEF_JWT_SIGNING_KEY", "DEBRIEF_JWT_SIGNING_KEY_FILE")?,
            verify_keys: vars
                .secret("DEBRIEF_JWT_VERIFY_KEYS", "DEBRIEF_JWT_VERIFY_KEYS_FILE")?
                .map(|keys| keys.expose().to_owned()),
            issuer: vars.get("DEBRIEF_JWT_ISSUER").unwrap_or("debrief").to_owned(),
            access_token_ttl: positive(
                vars.duration("DEBRIEF_ACCESS_TOKEN_TTL", "15m")?,
                "DEBRIEF_ACCESS_TOKEN_TTL",
            )?,
            session_ttl: positive(
                vars.duration("DEBRIEF_SESSION_TTL", "30d")?,
                "DEBRIEF_SESSION_TTL",
            )?,
            refresh_reuse_grace: vars.duration("DEBRIEF_REFRESH_REUSE_GRACE", "10s")?,
            session_recheck,
            rate_limit_per_minute: positive(
                vars.parse(
                    "DEBRIEF_AUTH_RATE_LIMIT",
                    "20",
                    "a whole number of requests per minute",
                )?,
                "DEBRIEF_AUTH_RATE_LIMIT",
            )?,
            failed_auth_per_minute: positive(
                vars.parse(
                    "DEBRIEF_AUTH_FAILURE_LIMIT",
                    "60",
                    "a whole number of failures per minute",
                )?,
                "DEBRIEF_AUTH_FAILURE_LIMIT",
            )?,
            user_limits: UserLimits {
                reads: positive(
                    vars.parse(
                        "DEBRIEF_RATE_LIMIT_READS",
                        "1200",
                        "a whole number of calls per minute",
                    )?,
                    "DEBRIEF_RATE_LIMIT_READS",
                )?,
                writes: positive(
                    vars.parse(
                        "DEBRIEF_RATE_LIMIT_WRITES",
                        "300",
                        "a whole number of calls per minute",
                    )?,
                    "DEBRIEF_RATE_LIMIT_WRITES",
                )?,
                uploads: positive(
                    vars.parse(
                        "DEBRIEF_RATE_LIMIT_UPLOADS",
                        "600",
                        "a whole number of calls per minute",
                    )?,
                    "DEBRIEF_RATE_LIMIT_UPLOADS",
                )?,
            },
            max_sign_in_failures: positive(
                vars.parse("DEBRIEF_SIGN_IN_MAX_FAILURES", "5", "a whole number")?,
                "DEBRIEF_SIGN_IN_MAX_FAILURES",
            )?,
            lockout: positive(
                vars.duration("DEBRIEF_SIGN_IN_LOCKOUT", "30s")?,
                "DEBRIEF_SIGN_IN_LOCKOUT",
            )?,
            app_url: vars
                .get("DEBRIEF_APP_URL")
                .unwrap_or("http://localhost:3000")
                .trim_end_matches('/')
                .to_owned(),
            mail: MailConfig::from_vars(vars)?,
        })
    }
}

impl MailConfig {
    pub(super) fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let url = vars.secret("DEBRIEF_SMTP_URL", "DEBRIEF_SMTP_URL_FILE")?;
        let default = if url.is_some() { "smtp" } else { "log" };
        match vars.get("DEBRIEF_MAILER").unwrap_or(default) {
            "log" => Ok(Self::Log),
            "smtp" => {
                let url = url.ok_or_else(|| ConfigError {
                    var: "DEBRIEF_SMTP_URL",
                    reason:
                        "DEBRIEF_MAILER=smtp needs the server, e.g. smtp://user:password@mail.example.com"
                            .into(),
                })?;
                SmtpConfig::parse(&url, vars).map(Self::Smtp)
            }
            other => Err(invalid("DEBRIEF_MAILER", other, "expected `smtp` or `log`")),
        }
    }
}

impl SmtpConfig {
    fn parse(url: &Secret, vars: &Vars) -> Result<Self, ConfigError> {
        // The URL holds a password: errors name the variable, not the value.
        let bad = |reason: &str| ConfigError {
            var: "DEBRIEF_SMTP_URL",
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(url.expose()).map_err(|_| bad("is not a URL"))?;
        let implicit_tls = match parsed.scheme() {
            "smtp" => false,
            "smtps" => true,
            _ => return Err(bad("must start with smtp:// (STARTTLS) or smtps:// (TLS)")),
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = (!parsed.username().is_empty()).then(|| {
            (
                decode(parsed.username()),
                Secret::new(decode(parsed.password().unwrap_or_default())),
            )
        });
        let from = vars
            .get("DEBRIEF_MAIL_FROM")
            .unwrap_or_default()
            .trim()
            .to_owned();
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError {
                var: "DEBRIEF_MAIL_FROM",
                reason: "the sender of email, e.g. \"debrief <no-reply@example.com>\", is needed with SMTP"
                    .into(),
            });
        }
        let extra_roots = match vars.get("DEBRIEF_SMTP_CA_FILE").filter(|p| !p.is_empty()) {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| ConfigError {
                var: "DEBRIEF_SMTP_CA_FILE",
                reason: format!("cannot read {path:?}: {e}"),
            })?),
        };
        Ok(Self {
            port: parsed.port().unwrap_or(if implicit_tls { 465 } else { 587 }),
            host,
            implicit_tls,
            credentials,
            from,
            extra_roots,
        })
    }
}
