//! Transcription providers: the [`Transcriber`] trait and its
//! OpenAI-compatible implementation (`POST {base}/v1/audio/transcriptions`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Secret, TranscriberConfig};
use crate::provider::{CallError, Provider};

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
            provider: Provider::new("transcription", *timeout, *requests_per_minute, *retries),
            url: format!("{base_url}/v1/audio/transcriptions"),
            api_key: api_key.clone(),
            model: model.clone(),
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
#[derive(Debug)]
pub struct OpenAi {
    provider: Provider,
    url: String,
    api_key: Secret,
    model: String,
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

impl From<CallError> for TranscribeError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Transient(message) => Self::Transient(message),
            CallError::Permanent(message) => Self::Permanent(message),
        }
    }
}

#[tonic::async_trait]
impl Transcriber for OpenAi {
    fn model(&self) -> Option<String> {
        Some(format!("openai/{}", self.model))
    }

    async fn transcribe(&self, wav: Vec<u8>) -> Result<Transcription, TranscribeError> {
        let response = self
            .provider
            .send(|client| {
                let form = reqwest::multipart::Form::new()
                    .text("model", self.model.clone())
                    .text("response_format", "verbose_json")
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(wav.clone())
                            .file_name("audio.wav")
                            .mime_str("audio/wav")
                            .map_err(|e| CallError::Permanent(e.to_string()))?,
                    );
                Ok(client
                    .post(&self.url)
                    .bearer_auth(self.api_key.expose())
                    .multipart(form))
            })
            .await?;
        let body: Verbose = response
            .json()
            .await
            .map_err(|e| TranscribeError::Transient(format!("unreadable answer: {e}")))?;
        Ok(body.into_transcription())
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
