//! Audio, shared by uploads and processing and importing neither: which
//! container a recording is in, opening it ([`probe`]), converting it to the
//! form Whisper takes ([`convert`]), voice activity detection ([`vad`]) and
//! cutting pieces out of the converted audio. Everything but [`container`]
//! blocks: run it on a blocking thread.

pub mod container;
pub mod convert;
pub mod probe;
pub mod syllables;
pub mod vad;

use std::io::Cursor;
use std::path::Path;

/// Sample rate of the converted audio.
pub const RATE: u32 = 16_000;

/// Bytes per second of the converted audio (16-bit mono).
pub const BYTES_PER_SECOND: u64 = RATE as u64 * 2;

/// The WAV format of the converted audio.
pub fn spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// Milliseconds of `frames` samples of converted audio.
pub fn frames_to_ms(frames: u64) -> i64 {
    i64::try_from(frames * 1000 / u64::from(RATE)).unwrap_or(i64::MAX)
}

/// Samples of converted audio in `ms` milliseconds.
pub fn ms_to_frames(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0) * u64::from(RATE) / 1000
}

/// Reads `[start_ms, end_ms)` of the converted audio at `path` into a WAV
/// file in memory (a piece is at most the provider's request limit).
pub fn cut(path: &Path, start_ms: i64, end_ms: i64) -> Result<Vec<u8>, hound::Error> {
    let mut reader = hound::WavReader::open(path)?;
    let total = u64::from(reader.duration());
    let start = ms_to_frames(start_ms).min(total);
    let end = ms_to_frames(end_ms).clamp(start, total);
    reader.seek(u32::try_from(start).unwrap_or(u32::MAX))?;
    let mut out = Cursor::new(Vec::with_capacity(44 + 2 * (end - start) as usize));
    {
        let mut writer = hound::WavWriter::new(&mut out, spec())?;
        for sample in reader.samples::<i16>().take((end - start) as usize) {
            writer.write_sample(sample?)?;
        }
        writer.finalize()?;
    }
    Ok(out.into_inner())
}
