//! Settings of the processing pipeline and its transcription provider.

use std::time::Duration;

use super::parse::{Vars, invalid, positive};
use super::{ConfigError, Secret};

/// Settings of the processing pipeline.
#[derive(Debug, Clone)]
pub struct ProcessingConfig {
    /// `DEBRIEF_WORKERS`: meetings processed at once by this process; 0 runs
    /// no worker (as `serve --no-worker` does).
    pub workers: usize,
    /// `DEBRIEF_JOB_MAX_ATTEMPTS`: attempts before a job is dead.
    pub max_attempts: i32,
    /// `DEBRIEF_JOB_BACKOFF`: the wait after a first failure; it doubles
    /// with each further one, with jitter.
    pub backoff: Duration,
    /// `DEBRIEF_JOB_BACKOFF_MAX`: the longest wait between attempts.
    pub backoff_max: Duration,
    /// `DEBRIEF_JOB_LEASE`: how long a job stays with a worker that stops
    /// renewing it (a worker renews every third of it while alive).
    pub lease: Duration,
    /// `DEBRIEF_JOB_POLL`: how often an idle worker looks for work queued
    /// by other processes.
    pub poll: Duration,
    /// `DEBRIEF_TRANSCRIPTION_PRICE`: price per transcribed minute, in
    /// millionths of a US dollar, for estimates and the AI cost ledger.
    pub price_per_minute_micros: i64,
    /// `DEBRIEF_ORIGINAL_RETENTION`: how long a processed meeting's
    /// original recording is kept; None: for as long as the meeting.
    pub original_retention: Option<Duration>,
    /// `DEBRIEF_FILLER_WORDS`: comma-separated filler words and phrases.
    pub filler_words: Vec<String>,
    /// `DEBRIEF_PROGRESS_INTERVAL`: the shortest time between two progress
    /// events of a long stage.
    pub progress_interval: Duration,
    /// The transcription provider.
    pub transcriber: TranscriberConfig,
}

/// Which transcription provider runs, and how it is called.
#[derive(Debug, Clone)]
pub enum TranscriberConfig {
    /// `DEBRIEF_TRANSCRIBER=disabled`: meetings wait at
    /// `awaiting_transcription`.
    Disabled,
    /// `DEBRIEF_TRANSCRIBER=openai`: an OpenAI-compatible
    /// `/v1/audio/transcriptions` endpoint.
    OpenAi {
        /// `DEBRIEF_TRANSCRIBER_URL`: the base URL.
        base_url: String,
        /// `DEBRIEF_TRANSCRIBER_API_KEY` (or `_FILE`, or `OPENAI_API_KEY`).
        api_key: Secret,
        /// `DEBRIEF_TRANSCRIBER_MODEL`.
        model: String,
        /// `DEBRIEF_TRANSCRIBER_RATE_LIMIT`: requests per minute.
        requests_per_minute: u32,
        /// `DEBRIEF_TRANSCRIBER_RETRIES`: retries of a request answered 429
        /// or 5xx, before the stage fails.
        retries: u32,
        /// `DEBRIEF_TRANSCRIBER_TIMEOUT`: longest wait for one answer.
        timeout: Duration,
    },
}

impl ProcessingConfig {
    pub(super) fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let backoff = positive(
            vars.duration("DEBRIEF_JOB_BACKOFF", "10s")?,
            "DEBRIEF_JOB_BACKOFF",
        )?;
        let lease = vars.duration("DEBRIEF_JOB_LEASE", "60s")?;
        if lease < Duration::from_secs(1) {
            return Err(invalid(
                "DEBRIEF_JOB_LEASE",
                &format!("{lease:?}"),
                "must be at least 1s",
            ));
        }
        Ok(Self {
            workers: vars.parse("DEBRIEF_WORKERS", "2", "a whole number")?,
            max_attempts: positive(
                vars.parse("DEBRIEF_JOB_MAX_ATTEMPTS", "5", "a whole number")?,
                "DEBRIEF_JOB_MAX_ATTEMPTS",
            )?,
            backoff,
            backoff_max: vars.duration("DEBRIEF_JOB_BACKOFF_MAX", "10m")?.max(backoff),
            lease,
            poll: positive(vars.duration("DEBRIEF_JOB_POLL", "1s")?, "DEBRIEF_JOB_POLL")?,
            price_per_minute_micros: vars.parse(
                "DEBRIEF_TRANSCRIPTION_PRICE",
                "6000",
                "a whole number of millionths of a dollar",
            )?,
            original_retention: vars
                .get("DEBRIEF_ORIGINAL_RETENTION")
                .filter(|v| !v.is_empty())
                .map(|_| vars.duration("DEBRIEF_ORIGINAL_RETENTION", ""))
                .transpose()?,
            filler_words: vars
                .get("DEBRIEF_FILLER_WORDS")
                .unwrap_or("um,uh,er,ah,hmm,like,you know,i mean,sort of,kind of,basically,actually")
                .split(',')
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
            progress_interval: vars.duration("DEBRIEF_PROGRESS_INTERVAL", "250ms")?,
            transcriber: TranscriberConfig::from_vars(vars)?,
        })
    }
}

impl TranscriberConfig {
    pub(super) fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let api_key = vars
            .secret("DEBRIEF_TRANSCRIBER_API_KEY", "DEBRIEF_TRANSCRIBER_API_KEY_FILE")?
            .or_else(|| vars.get("OPENAI_API_KEY").map(Secret::new));
        let default = if api_key.is_some() { "openai" } else { "disabled" };
        match vars.get("DEBRIEF_TRANSCRIBER").unwrap_or(default) {
            "disabled" => Ok(Self::Disabled),
            "openai" => Ok(Self::OpenAi {
                base_url: vars
                    .get("DEBRIEF_TRANSCRIBER_URL")
                    .unwrap_or("https://api.openai.com")
                    .trim_end_matches('/')
                    .to_owned(),
                api_key: api_key.ok_or_else(|| ConfigError {
                    var: "DEBRIEF_TRANSCRIBER_API_KEY",
                    reason: "the openai transcriber needs an API key".into(),
                })?,
                model: vars
                    .get("DEBRIEF_TRANSCRIBER_MODEL")
                    .unwrap_or("whisper-1")
                    .to_owned(),
                requests_per_minute: positive(
                    vars.parse("DEBRIEF_TRANSCRIBER_RATE_LIMIT", "50", "a whole number")?,
                    "DEBRIEF_TRANSCRIBER_RATE_LIMIT",
                )?,
                retries: vars.parse("DEBRIEF_TRANSCRIBER_RETRIES", "3", "a whole number")?,
                timeout: positive(
                    vars.duration("DEBRIEF_TRANSCRIBER_TIMEOUT", "5m")?,
                    "DEBRIEF_TRANSCRIBER_TIMEOUT",
                )?,
            }),
            other => Err(invalid(
                "DEBRIEF_TRANSCRIBER",
                other,
                "expected `openai` or `disabled`",
            )),
        }
    }
}
