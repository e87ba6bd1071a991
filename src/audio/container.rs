//! Which container a recording is in: as its content type declares it and
//! as its first bytes show it.

/// The containers debrief accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MPEG audio (MP3).
    Mp3,
    /// ISO base media (MP4, M4A).
    Mp4,
    /// RIFF WAVE.
    Wav,
}

impl Container {
    /// The file extension symphonia is hinted with.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Mp4 => "m4a",
            Self::Wav => "wav",
        }
    }
}

/// The container of a declared content type, and the type normalised;
/// None if the type is not accepted.
pub fn declared(content_type: &str) -> Option<(Container, &'static str)> {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "audio/mpeg" | "audio/mp3" => Some((Container::Mp3, "audio/mpeg")),
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => Some((Container::Mp4, "audio/mp4")),
        "video/mp4" => Some((Container::Mp4, "video/mp4")),
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some((Container::Wav, "audio/wav")),
        _ => None,
    }
}

/// The container the file's first bytes show.
pub fn sniff(head: &[u8]) -> Option<Container> {
    match infer::get(head)?.mime_type() {
        "audio/mpeg" => Some(Container::Mp3),
        "audio/x-wav" | "audio/wav" => Some(Container::Wav),
        "audio/m4a" | "video/mp4" | "audio/mp4" | "video/quicktime" => Some(Container::Mp4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_normalised() {
        assert_eq!(declared("Audio/X-M4A"), Some((Container::Mp4, "audio/mp4")));
        assert_eq!(
            declared("audio/wav; codecs=1"),
            Some((Container::Wav, "audio/wav"))
        );
        assert_eq!(declared("text/plain"), None);
    }
}
