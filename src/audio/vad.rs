//! Voice activity detection by frame energy, and cutting the audio into
//! pieces at silences.
//!
//! Each 20 ms frame's level is compared with a threshold above the
//! recording's noise floor and within the dynamic range of its loud
//! speech, so it adapts to quiet and loud recordings alike. Silences shorter than a pause are bridged (the
//! gaps between words are not pauses), and blips shorter than a syllable
//! are dropped.

use std::path::Path;

use super::RATE;

/// Length of one analysis frame.
pub const FRAME_MS: i64 = 20;
const FRAME: usize = (RATE as usize * FRAME_MS as usize) / 1000;
/// The shortest silence that counts as a pause; shorter ones are gaps
/// between words.
pub const MIN_PAUSE_MS: i64 = 300;
/// Speech shorter than this is a click or a cough, not speech.
const MIN_SPEECH_MS: i64 = 100;
/// A silence this long is a natural place to cut.
pub const CUT_SILENCE_MS: i64 = 1000;
/// Level of digital silence, in dBFS.
const FLOOR_DB: f32 = -100.0;

/// A stretch of the recording, `[start_ms, end_ms)`.
pub type Span = (i64, i64);

/// The level of each 20 ms frame of the 16 kHz mono WAV at `path`, in
/// dBFS; reads the file once, holding only the levels (50 per second).
pub fn frame_levels(path: &Path, progress: &mut dyn FnMut(f64)) -> Result<(Vec<f32>, i64), hound::Error> {
    let mut reader = hound::WavReader::open(path)?;
    let frames = u64::from(reader.duration());
    let mut levels = Vec::with_capacity(usize::try_from(frames).unwrap_or(0) / FRAME + 1);
    let (mut sum, mut count) = (0f64, 0usize);
    for sample in reader.samples::<i16>() {
        let value = f64::from(sample?) / f64::from(i16::MAX);
        sum += value * value;
        count += 1;
        if count == FRAME {
            levels.push(level(sum, count));
            (sum, count) = (0.0, 0);
            if levels.len() % 50 == 0 {
                progress((levels.len() * FRAME) as f64 / frames.max(1) as f64);
            }
        }
    }
    if count > 0 {
        levels.push(level(sum, count));
    }
    Ok((levels, super::frames_to_ms(frames)))
}

fn level(sum: f64, count: usize) -> f32 {
    let rms = (sum / count as f64).sqrt();
    if rms <= 0.0 {
        FLOOR_DB
    } else {
        (20.0 * rms.log10()).max(f64::from(FLOOR_DB)) as f32
    }
}

/// The speech spans of a recording `total_ms` long with these frame levels.
pub fn speech_spans(levels: &[f32], total_ms: i64) -> Vec<Span> {
    if levels.is_empty() {
        return Vec::new();
    }
    let mut sorted = levels.to_vec();
    sorted.sort_by(f32::total_cmp);
    let percentile = |p: usize| sorted[(sorted.len() - 1) * p / 100];
    let (floor, loud) = (percentile(5), percentile(95));
    let threshold = if loud - floor < 12.0 {
        // One level throughout: all speech if it is loud enough, else none.
        if loud > -45.0 { f32::MIN } else { f32::MAX }
    } else {
        // Clear of the noise, and within speech's own dynamic range of
        // its loud parts (the floor may be quiet speech when a recording
        // has hardly any silence).
        (floor + 10.0).max(loud - 35.0)
    };

    let mut spans: Vec<Span> = Vec::new();
    let mut start = None;
    for (i, &l) in levels.iter().enumerate() {
        let at = i as i64 * FRAME_MS;
        match (l > threshold, start) {
            (true, None) => start = Some(at),
            (false, Some(s)) => {
                spans.push((s, at));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, total_ms));
    }
    // Bridge the gaps between words, then drop blips.
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.0 - last.1 < MIN_PAUSE_MS => last.1 = span.1,
            _ => merged.push(span),
        }
    }
    merged.retain(|(s, e)| e - s >= MIN_SPEECH_MS);
    for span in &mut merged {
        span.1 = span.1.min(total_ms);
    }
    merged
}

/// The silences between speech spans (pauses), in order.
pub fn pauses(spans: &[Span]) -> Vec<Span> {
    spans.windows(2).map(|w| (w[0].1, w[1].0)).collect()
}

/// Cuts `[0, total_ms)` into pieces: at the middle of every silence of at
/// least [`CUT_SILENCE_MS`], and any piece still longer than `max_ms` again
/// at the middle of its longest pause (or, in unbroken speech, at
/// `max_ms`).
pub fn cut(total_ms: i64, spans: &[Span], max_ms: i64) -> Vec<Span> {
    let max_ms = max_ms.max(1000);
    let pauses = pauses(spans);
    let mut cuts: Vec<i64> = pauses
        .iter()
        .filter(|(s, e)| e - s >= CUT_SILENCE_MS)
        .map(|(s, e)| (s + e) / 2)
        .collect();
    cuts.push(total_ms);
    let mut pieces = Vec::new();
    let mut start = 0;
    for end in cuts {
        split(start, end, &pauses, max_ms, &mut pieces);
        start = end;
    }
    pieces.retain(|(s, e)| e > s);
    pieces
}

fn split(start: i64, end: i64, pauses: &[Span], max_ms: i64, out: &mut Vec<Span>) {
    if end - start <= max_ms {
        out.push((start, end));
        return;
    }
    let inside = pauses
        .iter()
        .filter(|(s, e)| *s > start && *e < end)
        .max_by_key(|(s, e)| e - s);
    let at = match inside {
        Some((s, e)) => (s + e) / 2,
        None => start + max_ms,
    };
    split(start, at, pauses, max_ms, out);
    split(at, end, pauses, max_ms, out);
}

/// Milliseconds of speech inside `[start, end)`.
pub fn speech_within(spans: &[Span], (start, end): Span) -> i64 {
    spans
        .iter()
        .map(|(s, e)| (e.min(&end) - s.max(&start)).max(0))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Levels for `total_ms` with speech (-20 dBFS) in `speech`, else
    /// digital silence.
    fn levels(total_ms: i64, speech: &[Span]) -> Vec<f32> {
        (0..total_ms / FRAME_MS)
            .map(|i| {
                let at = i * FRAME_MS;
                if speech.iter().any(|(s, e)| at >= *s && at < *e) {
                    -20.0
                } else {
                    -100.0
                }
            })
            .collect()
    }

    #[test]
    fn speech_is_found_and_word_gaps_are_bridged() {
        let truth = [(1000, 5000), (5200, 9000), (12_000, 20_000)];
        let spans = speech_spans(&levels(22_000, &truth), 22_000);
        assert_eq!(spans, vec![(1000, 9000), (12_000, 20_000)]);
        assert_eq!(pauses(&spans), vec![(9000, 12_000)]);
    }

    #[test]
    fn pieces_break_at_long_silences_and_stay_under_the_maximum() {
        let spans = [(0, 50_000), (50_500, 100_000), (102_000, 110_000)];
        let pieces = cut(110_000, &spans, 60_000);
        assert_eq!(pieces, vec![(0, 50_250), (50_250, 101_000), (101_000, 110_000)]);
        // Unbroken speech is cut at the maximum.
        assert_eq!(
            cut(25_000, &[(0, 25_000)], 10_000),
            vec![(0, 10_000), (10_000, 20_000), (20_000, 25_000)]
        );
    }

    #[test]
    fn a_steady_signal_is_all_speech_or_none() {
        assert_eq!(speech_spans(&[-20.0; 100], 2000), vec![(0, 2000)]);
        assert!(speech_spans(&[-90.0; 100], 2000).is_empty());
    }
}
