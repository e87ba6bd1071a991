//! Decoding any supported recording (MP3, AAC in MP4/M4A, WAV, FLAC) to
//! 16 kHz mono 16-bit WAV, streaming: memory holds one packet and one
//! resampler chunk, never the recording.

use std::io::BufWriter;
use std::path::Path;

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};
use symphonia::core::errors::Error as DecodeError;

use super::probe::{self, Opened, Unplayable};
use super::{RATE, spec};

/// Frames the resampler takes per call.
const CHUNK: usize = 4096;

/// What the conversion produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Converted {
    /// Samples written (at 16 kHz).
    pub frames: u64,
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The recording cannot be decoded: nothing a retry would change.
    #[error("{}", .0.message)]
    Unplayable(Unplayable),
    /// Writing the output failed.
    #[error("could not write the converted audio: {0}")]
    Write(#[from] hound::Error),
}

fn corrupt(message: String) -> ConvertError {
    ConvertError::Unplayable(Unplayable {
        reason: "CORRUPT_AUDIO",
        message,
    })
}

/// Converts the recording at `input` (`extension` hints at its container)
/// into a WAV file at `output`, telling `progress` the share of the
/// recording done so far (0 to 1) as it goes.
pub fn convert(
    input: &Path,
    extension: &str,
    output: &Path,
    progress: &mut dyn FnMut(f64),
) -> Result<Converted, ConvertError> {
    let Opened {
        mut format,
        track_id,
        sample_rate,
        mut decoder,
        duration_ms,
        ..
    } = probe::open(input, extension).map_err(ConvertError::Unplayable)?;
    // How many input frames make the whole recording, when the container
    // says how long it is.
    let expected = duration_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| ms * u64::from(sample_rate) / 1000)
        .filter(|frames| *frames > 0);
    let file = std::fs::File::create(output).map_err(hound::Error::IoError)?;
    let mut writer = hound::WavWriter::new(BufWriter::new(file), spec())?;
    let mut sink = Sink::new(sample_rate)?;
    let mut interleaved: Vec<f32> = Vec::new();
    let mut damaged_packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A recording cut short ends where it ends.
            Err(DecodeError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(corrupt(format!("the recording could not be read ({e})"))),
        };
        if packet.track_id != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // One damaged packet costs a few milliseconds of audio, not the
            // meeting; a recording that is mostly damaged is refused below.
            Err(DecodeError::DecodeError(_)) => {
                damaged_packets += 1;
                continue;
            }
            Err(e) => return Err(corrupt(format!("the audio could not be decoded ({e})"))),
        };
        let channels = decoded.num_planes().max(1);
        decoded.copy_to_vec_interleaved(&mut interleaved);
        sink.push(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
            &mut writer,
        )?;
        if let Some(expected) = expected {
            progress((sink.input_frames as f64 / expected as f64).min(1.0));
        }
    }
    let frames = sink.finish(&mut writer)?;
    writer.finalize()?;
    if frames == 0 {
        return Err(corrupt(
            "the recording holds no audio that could be decoded".into(),
        ));
    }
    if damaged_packets > 0 {
        tracing::warn!(damaged_packets, "skipped damaged packets while converting");
    }
    Ok(Converted { frames })
}

type Writer = hound::WavWriter<BufWriter<std::fs::File>>;

/// Mono samples at the input rate in; 16 kHz 16-bit samples out.
struct Sink {
    resampler: Option<Fft<f32>>,
    /// Input waiting for a full chunk.
    pending: Vec<f32>,
    output: Vec<f32>,
    /// Output frames still to drop: the resampler's delay.
    delay: usize,
    input_frames: u64,
    written: u64,
    /// Most frames to write.
    limit: u64,
    input_rate: u32,
}

impl Sink {
    fn new(input_rate: u32) -> Result<Self, ConvertError> {
        let resampler = if input_rate == RATE {
            None
        } else {
            let resampler = Fft::<f32>::new(input_rate as usize, RATE as usize, CHUNK, 1, FixedSync::Input)
                .map_err(|e| corrupt(format!("cannot resample from {input_rate} Hz ({e})")))?;
            Some(resampler)
        };
        let delay = resampler.as_ref().map_or(0, |r| r.output_delay());
        let output = vec![0.0; resampler.as_ref().map_or(0, |r| r.output_frames_max())];
        Ok(Self {
            resampler,
            pending: Vec::with_capacity(2 * CHUNK),
            output,
            delay,
            input_frames: 0,
            written: 0,
            limit: u64::MAX,
            input_rate,
        })
    }

    fn push(&mut self, samples: impl Iterator<Item = f32>, writer: &mut Writer) -> Result<(), ConvertError> {
        let before = self.pending.len();
        self.pending.extend(samples);
        self.input_frames += (self.pending.len() - before) as u64;
        if self.resampler.is_none() {
            let pending = std::mem::take(&mut self.pending);
            let written = self.write(&pending, writer);
            self.pending = pending;
            self.pending.clear();
            return written;
        }
        while self
            .resampler
            .as_ref()
            .is_some_and(|r| self.pending.len() >= r.input_frames_next())
        {
            self.resample(None, writer)?;
        }
        Ok(())
    }

    /// Resamples one chunk from the front of `pending` (`partial`: only
    /// that many frames are real; the rest is silence).
    fn resample(&mut self, partial: Option<usize>, writer: &mut Writer) -> Result<(), ConvertError> {
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        let needed = resampler.input_frames_next();
        let available = partial.unwrap_or(needed).min(self.pending.len());
        self.pending.resize(self.pending.len().max(needed), 0.0);
        let input = InterleavedSlice::new(&self.pending[..needed], 1, needed)
            .map_err(|e| corrupt(format!("resampler input ({e})")))?;
        let capacity = self.output.len();
        let mut output = InterleavedSlice::new_mut(&mut self.output[..], 1, capacity)
            .map_err(|e| corrupt(format!("resampler output ({e})")))?;
        let indexing = partial.map(|n| Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len: Some(n),
            active_channels_mask: None,
        });
        let (_, produced) = resampler
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| corrupt(format!("resampling failed ({e})")))?;
        self.pending.drain(..available);
        let skip = self.delay.min(produced);
        self.delay -= skip;
        let output = std::mem::take(&mut self.output);
        let result = self.write(&output[skip..produced], writer);
        self.output = output;
        result
    }

    fn write(&mut self, samples: &[f32], writer: &mut Writer) -> Result<(), ConvertError> {
        let room = usize::try_from(self.limit.saturating_sub(self.written)).unwrap_or(usize::MAX);
        let samples = &samples[..samples.len().min(room)];
        for &sample in samples {
            writer.write_sample((sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16)?;
        }
        self.written += samples.len() as u64;
        Ok(())
    }

    /// Flushes what the resampler holds and returns the frames written:
    /// exactly the input's length at 16 kHz (the silence that pads the
    /// last chunk is not written).
    fn finish(mut self, writer: &mut Writer) -> Result<u64, ConvertError> {
        let rate = u64::from(self.input_rate);
        self.limit = (self.input_frames * u64::from(RATE) + rate / 2) / rate;
        if self.resampler.is_some() {
            // Each round feeds at most one chunk of silence; the delay is
            // shorter than a chunk, so a few rounds always suffice.
            for _ in 0..4 {
                if self.written >= self.limit {
                    break;
                }
                let real = self.pending.len();
                self.resample(Some(real), writer)?;
            }
        }
        Ok(self.written)
    }
}
