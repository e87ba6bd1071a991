//! Transcription providers: the [`Transcriber`] trait and its
//! OpenAI-compatible implementation (`POST {base}/v1/audio/transcriptions`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::config::{Secret, TranscriberConfig};

pub use crate::meetings::results::Line;

/// A provider's answer for one piece of audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcription {
    /// Language the provider heard.
    pub language: String,
    /// The lines.
    pub lines: Vec<Line>,
}

/// Why a transcription failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// Worth trying again later (rate limits, provider errors, network).
    #[error("the transcription service is unavailable: {0}")]
    Transient(String),
    /// Trying again will not help (refused request, bad credentials).
    #[error("the transcription service refused the audio: {0}")]
    Permanent(String),
}

/// A transcription provider.
#[tonic::async_trait]
pub trait Transcriber: Send + Sync + std::fmt::Debug {
    /// Provider and model, e.g. `openai/whisper-1`; None when transcription
    /// is turned off.
    fn model(&self) -> Option<String>;

    /// Transcribes one WAV file.
    async fn transcribe(&self, wav: Vec<u8>) -> Result<Transcription, TranscribeError>;
}

/// The transcriber the configuration names.
pub fn from_config(config: &TranscriberConfig) -> Arc<dyn Transcriber> {
    match config {
        TranscriberConfig::Disabled => Arc::new(Disabled),
        TranscriberConfig::OpenAi {
            base_url,
            api_key,
            model,
            requests_per_minute,
            retries,
            timeout,
        } => Arc::new(OpenAi {
            client: reqwest::Client::builder()
                .timeout(*timeout)
                .build()
                .unwrap_or_default(),
            url: format!("{base_url}/v1/audio/transcriptions"),
            api_key: api_key.clone(),
            model: model.clone(),
            limiter: RateLimiter::direct(Quota::per_minute(
                NonZeroU32::new(*requests_per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            retries: *retries,
        }),
    }
}

/// Transcription turned off.
#[derive(Debug)]
pub struct Disabled;

#[tonic::async_trait]
impl Transcriber for Disabled {
    fn model(&self) -> Option<String> {
        None
    }

    async fn transcribe(&self, _wav: Vec<u8>) -> Result<Transcription, TranscribeError> {
        Err(TranscribeError::Permanent("transcription is turned off".into()))
    }
}

/// An OpenAI-compatible provider.
pub struct OpenAi {
    client: reqwest::Client,
    url: String,
    api_key: Secret,
    model: String,
    limiter: DefaultDirectRateLimiter,
    retries: u32,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi")
            .field("url", &self.url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// The `verbose_json` answer, as far as it is used.
#[derive(Deserialize)]
struct Verbose {
    #[serde(default)]
    language: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    segments: Vec<VerboseSegment>,
}

#[derive(Deserialize)]
struct VerboseSegment {
    start: f64,
    end: f64,
    text: String,
    #[serde(default)]
    avg_logprob: Option<f64>,
}

/// The wait a 429 or 503 asks for (`Retry-After` in seconds), else
/// exponential from one second.
fn wait_before_retry(response: &reqwest::Response, attempt: u32) -> Duration {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(300.0)))
        .unwrap_or_else(|| Duration::from_secs(1 << attempt.min(6)))
}

#[tonic::async_trait]
impl Transcriber for OpenAi {
    fn model(&self) -> Option<String> {
        Some(format!("openai/{}", self.model))
    }

    async fn transcribe(&self, wav: Vec<u8>) -> Result<Transcription, TranscribeError> {
        let mut attempt = 0;
        loop {
            self.limiter.until_ready().await;
            let form = reqwest::multipart::Form::new()
                .text("model", self.model.clone())
                .text("response_format", "verbose_json")
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(wav.clone())
                        .file_name("audio.wav")
                        .mime_str("audio/wav")
                        .map_err(|e| TranscribeError::Permanent(e.to_string()))?,
                );
            let sent = self
                .client
                .post(&self.url)
                .bearer_auth(self.api_key.expose())
                .multipart(form)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) if attempt < self.retries => {
                    tracing::warn!(error = %e, attempt, "transcription request failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt.min(6))).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(TranscribeError::Transient(e.without_url().to_string())),
            };
            let status = response.status();
            if status.is_success() {
                let body: Verbose = response
                    .json()
                    .await
                    .map_err(|e| TranscribeError::Transient(format!("unreadable answer: {e}")))?;
                return Ok(body.into_transcription());
            }
            let retryable = status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable && attempt < self.retries {
                let wait = wait_before_retry(&response, attempt);
                tracing::warn!(%status, attempt, ?wait, "transcription provider asked to wait; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let detail = response.text().await.unwrap_or_default();
            let detail: String = detail.chars().take(300).collect();
            let message = format!("{status}: {detail}");
            return Err(if retryable {
                TranscribeError::Transient(message)
            } else {
                TranscribeError::Permanent(message)
            });
        }
    }
}

impl Verbose {
    fn into_transcription(self) -> Transcription {
        let ms = |seconds: f64| (seconds * 1000.0).round() as i64;
        let mut lines: Vec<Line> = self
            .segments
            .into_iter()
            .map(|s| Line {
                start_ms: ms(s.start),
                end_ms: ms(s.end),
                text: s.text.trim().to_owned(),
                confidence: s.avg_logprob.map(|p| p.exp().clamp(0.0, 1.0)),
            })
            .filter(|l| !l.text.is_empty())
            .collect();
        // A provider that sends only the text still gives one line.
        if lines.is_empty() && !self.text.trim().is_empty() {
            lines.push(Line {
                start_ms: 0,
                end_ms: self.duration.map_or(0, ms),
                text: self.text.trim().to_owned(),
                confidence: None,
            });
        }
        Transcription {
            language: language_tag(&self.language),
            lines,
        }
    }
}

/// The BCP 47 tag of a language as Whisper names it (`english` → `en`);
/// a name it does not know is kept as sent.
fn language_tag(name: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("arabic", "ar"),
        ("chinese", "zh"),
        ("czech", "cs"),
        ("danish", "da"),
        ("dutch", "nl"),
        ("english", "en"),
        ("finnish", "fi"),
        ("french", "fr"),
        ("german", "de"),
        ("greek", "el"),
        ("hebrew", "he"),
        ("hindi", "hi"),
        ("hungarian", "hu"),
        ("indonesian", "id"),
        ("italian", "it"),
        ("japanese", "ja"),
        ("korean", "ko"),
        ("norwegian", "no"),
        ("polish", "pl"),
        ("portuguese", "pt"),
        ("romanian", "ro"),
        ("russian", "ru"),
        ("spanish", "es"),
        ("swedish", "sv"),
        ("thai", "th"),
        ("turkish", "tr"),
        ("ukrainian", "uk"),
        ("vietnamese", "vi"),
    ];
    let lower = name.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .find(|(n, _)| *n == lower)
        .map_or(lower.clone(), |(_, tag)| (*tag).to_owned())
}
