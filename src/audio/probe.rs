//! Opening a recording with symphonia: find the audio track, decode its
//! first packets, and read what the meeting page shows (codec, sample
//! rate, channels, duration).

use std::path::Path;

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Packets decoded to prove the audio is real.
const PACKETS_TO_DECODE: usize = 8;

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFacts {
    /// Codec short name, e.g. `mp3`, `aac`, `pcm_s16le`.
    pub codec: String,
    /// Samples per second.
    pub sample_rate_hz: u32,
    /// Channel count.
    pub channels: u32,
    /// Length in milliseconds.
    pub duration_ms: i64,
}

/// Why a recording could not be opened: a stable code and an explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplayable {
    /// e.g. `NO_AUDIO_TRACK`.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

fn unplayable(reason: &'static str, message: impl Into<String>) -> Unplayable {
    Unplayable {
        reason,
        message: message.into(),
    }
}

/// A recording opened for decoding: its container reader, the audio
/// track and a decoder for it.
pub struct Opened {
    /// The container reader.
    pub format: Box<dyn FormatReader>,
    /// The audio track's id.
    pub track_id: u32,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count (0 when the container does not say).
    pub channels: usize,
    /// Length, when the container says.
    pub duration_ms: Option<i64>,
    /// The decoder.
    pub decoder: Box<dyn AudioDecoder>,
}

/// Opens the file at `path` for decoding (blocking: call from a blocking
/// thread). `extension` hints at the container.
pub fn open(path: &Path, extension: &str) -> Result<Opened, Unplayable> {
    let file = std::fs::File::open(path).map_err(|e| unplayable("UNREADABLE", e.to_string()))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let format = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        // The container's signature was checked before: a failure here means
        // the file is damaged or cut short.
        .map_err(|e| {
            unplayable(
                "CORRUPT_AUDIO",
                format!("the recording could not be read; it may be cut short or damaged ({e})"),
            )
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| unplayable("NO_AUDIO_TRACK", "the file has no audio track"))?;
    let Some(CodecParameters::Audio(params)) = track.codec_params.clone() else {
        return Err(unplayable("NO_AUDIO_TRACK", "the file has no audio track"));
    };
    let track_id = track.id;
    let sample_rate = params
        .sample_rate
        .ok_or_else(|| unplayable("UNSUPPORTED_FORMAT", "the audio has no sample rate"))?;
    let channels = params.channels.as_ref().map_or(0, |c| c.count());
    let duration_ms = match (track.num_frames, track.time_base, track.duration) {
        (Some(frames), _, _) if sample_rate > 0 => {
            i64::try_from(frames.saturating_mul(1000) / u64::from(sample_rate)).ok()
        }
        (_, Some(base), Some(duration)) => base
            .calc_duration(duration)
            .map(|t| (t.as_secs_f64() * 1000.0) as i64),
        _ => None,
    };
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| {
            unplayable(
                "UNSUPPORTED_CODEC",
                format!("the audio codec is not supported ({e})"),
            )
        })?;
    Ok(Opened {
        format,
        track_id,
        sample_rate,
        channels,
        duration_ms,
        decoder,
    })
}

/// Probes the file at `path` (blocking: call from a blocking thread).
pub fn probe(path: &Path, extension: &str) -> Result<AudioFacts, Unplayable> {
    let Opened {
        mut format,
        track_id,
        sample_rate,
        channels,
        duration_ms,
        mut decoder,
    } = open(path, extension)?;
    let codec = decoder.codec_info().short_name.to_owned();
    let mut decoded = 0;
    while decoded < PACKETS_TO_DECODE {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(e) => {
                return Err(unplayable(
                    "CORRUPT_AUDIO",
                    format!("the audio could not be read ({e})"),
                ));
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        decoder
            .decode(&packet)
            .map_err(|e| unplayable("CORRUPT_AUDIO", format!("the audio could not be decoded ({e})")))?;
        decoded += 1;
    }
    if decoded == 0 {
        return Err(unplayable("CORRUPT_AUDIO", "the audio track holds no audio"));
    }
    Ok(AudioFacts {
        codec,
        sample_rate_hz: sample_rate,
        channels: u32::try_from(channels).unwrap_or(0),
        duration_ms: duration_ms
            .ok_or_else(|| unplayable("UNSUPPORTED_FORMAT", "the length of the audio is unknown"))?,
    })
}
