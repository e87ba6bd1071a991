//! Settings of practice: sessions and the AI feedback provider.

use std::time::Duration;

use super::parse::{Vars, invalid, positive};
use super::{ConfigError, Secret};

/// Settings of practice.
#[derive(Debug, Clone)]
pub struct PracticeConfig {
    /// `DEBRIEF_PRACTICE_SESSION_TIMEOUT`: a session still active this long
    /// after it started is abandoned and its practice session given back.
    pub session_timeout: Duration,
    /// The AI feedback provider.
    pub ai: AiConfig,
}

/// Which AI feedback provider runs (for feedback and scenarios).
#[derive(Debug, Clone)]
pub enum AiConfig {
    /// `DEBRIEF_AI_FEEDBACK=disabled` (the default): rule-based feedback
    /// only, and scenarios from their templates.
    Disabled,
    /// `DEBRIEF_AI_FEEDBACK=openai`: an OpenAI-compatible
    /// `/v1/chat/completions` endpoint.
    OpenAi {
        /// `DEBRIEF_AI_URL`: the base URL.
        base_url: String,
        /// `DEBRIEF_AI_API_KEY` (or `_FILE`).
        api_key: Secret,
        /// `DEBRIEF_AI_MODEL`.
        model: String,
        /// `DEBRIEF_AI_RATE_LIMIT`: requests per minute from this process.
        requests_per_minute: u32,
        /// `DEBRIEF_AI_RETRIES`: retries of a request answered 429 or 5xx.
        retries: u32,
        /// `DEBRIEF_AI_TIMEOUT`: longest wait for one answer.
        timeout: Duration,
        /// `DEBRIEF_AI_PRICE_INPUT`: millionths of a dollar per million
        /// prompt tokens.
        input_price_micros_per_million: i64,
        /// `DEBRIEF_AI_PRICE_OUTPUT`: millionths of a dollar per million
        /// completion tokens.
        output_price_micros_per_million: i64,
    },
}

impl PracticeConfig {
    pub(super) fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            session_timeout: positive(
                vars.duration("DEBRIEF_PRACTICE_SESSION_TIMEOUT", "24h")?,
                "DEBRIEF_PRACTICE_SESSION_TIMEOUT",
            )?,
            ai: AiConfig::from_vars(vars)?,
        })
    }
}

impl AiConfig {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        match vars.get("DEBRIEF_AI_FEEDBACK").unwrap_or("disabled") {
            "disabled" => Ok(Self::Disabled),
            "openai" => Ok(Self::OpenAi {
                base_url: vars
                    .get("DEBRIEF_AI_URL")
                    .unwrap_or("https://api.openai.com")
                    .trim_end_matches('/')
                    .to_owned(),
                api_key: vars
                    .secret("DEBRIEF_AI_API_KEY", "DEBRIEF_AI_API_KEY_FILE")?
                    .ok_or_else(|| ConfigError {
                        var: "DEBRIEF_AI_API_KEY",
                        reason: "the openai feedback provider needs an API key".into(),
                    })?,
                model: vars.get("DEBRIEF_AI_MODEL").unwrap_or("gpt-4o-mini").to_owned(),
                requests_per_minute: positive(
                    vars.parse("DEBRIEF_AI_RATE_LIMIT", "60", "a whole number")?,
                    "DEBRIEF_AI_RATE_LIMIT",
                )?,
                retries: vars.parse("DEBRIEF_AI_RETRIES", "2", "a whole number")?,
                timeout: positive(vars.duration("DEBRIEF_AI_TIMEOUT", "20s")?, "DEBRIEF_AI_TIMEOUT")?,
                input_price_micros_per_million: vars.parse(
                    "DEBRIEF_AI_PRICE_INPUT",
                    "150000",
                    "a whole number of millionths of a dollar per million tokens",
                )?,
                output_price_micros_per_million: vars.parse(
                    "DEBRIEF_AI_PRICE_OUTPUT",
                    "600000",
                    "a whole number of millionths of a dollar per million tokens",
                )?,
            }),
            other => Err(invalid(
                "DEBRIEF_AI_FEEDBACK",
                other,
                "expected `openai` or `disabled`",
            )),
        }
    }
}
