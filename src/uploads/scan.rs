//! The built-in scanner, which always runs: the EICAR test string anywhere
//! in the file, and executables or scripts disguised as recordings
//! (checked at the start of the file). Files are fed in pieces, so memory
//! stays bounded whatever the size.

/// The EICAR anti-virus test string.
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// What the scanner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable code, e.g. `MALWARE_DETECTED`, `EXECUTABLE`.
    pub reason: &'static str,
    /// What it is, e.g. "the EICAR test signature".
    pub what: String,
}

/// A streaming scan.
#[derive(Debug, Default)]
pub struct Scanner {
    head: Vec<u8>,
    tail: Vec<u8>,
    found: Option<Finding>,
}

/// Bytes of the start of the file kept for the disguise checks.
const HEAD: usize = 512;

impl Scanner {
    /// Feeds the next piece of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        if self.found.is_some() {
            return;
        }
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        // The piece itself, then the seam with the previous one: the tail
        // kept from it and as much of this piece as a match could reach.
        let reach = bytes.len().min(EICAR.len() - 1);
        let mut seam = std::mem::take(&mut self.tail);
        seam.extend_from_slice(&bytes[..reach]);
        if memchr::memmem::find(bytes, EICAR).is_some() || memchr::memmem::find(&seam, EICAR).is_some() {
            self.found = Some(eicar());
        }
        // The last bytes seen, which a match in the next piece could start in.
        let keep = EICAR.len() - 1;
        self.tail = if bytes.len() >= keep {
            bytes[bytes.len() - keep..].to_vec()
        } else {
            seam[seam.len().saturating_sub(keep)..].to_vec()
        };
    }

    /// Its state, appended to `out`, for [`Scanner::restore`].
    pub fn save(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.found.is_some()));
        out.extend_from_slice(&u16::try_from(self.head.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.tail);
    }

    /// A scanner from a state [`Scanner::save`] wrote, or None if `saved`
    /// is not one.
    pub fn restore(saved: &[u8]) -> Option<Self> {
        let (&found, rest) = saved.split_first()?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        if found > 1 || len > HEAD || rest.len() < len || rest.len() - len >= EICAR.len() {
            return None;
        }
        let (head, tail) = rest.split_at(len);
        Some(Self {
            head: head.to_vec(),
            tail: tail.to_vec(),
            found: (found == 1).then(eicar),
        })
    }

    /// The verdict once the whole file was fed.
    pub fn finish(self) -> Option<Finding> {
        self.found.or_else(|| disguise(&self.head))
    }
}

/// The finding of the EICAR test string.
fn eicar() -> Finding {
    Finding {
        reason: "MALWARE_DETECTED",
        what: "the EICAR test signature".into(),
    }
}

/// An executable or script at the start of the file.
fn disguise(head: &[u8]) -> Option<Finding> {
    let found = |what: &str| {
        Some(Finding {
            reason: "EXECUTABLE",
            what: what.into(),
        })
    };
    if head.starts_with(b"MZ") {
        return found("a Windows executable (PE)");
    }
    if head.starts_with(b"\x7fELF") {
        return found("a Linux executable (ELF)");
    }
    let macho: [[u8; 4]; 5] = [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
        [0xca, 0xfe, 0xba, 0xbe],
    ];
    if macho.iter().any(|magic| head.starts_with(magic)) {
        return found("a macOS executable (Mach-O)");
    }
    if head.starts_with(b"#!") {
        return found("a script");
    }
    let text = String::from_utf8_lossy(head)
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if ["<!doctype html", "<html", "<script", "<svg", "<?xml"]
        .iter()
        .any(|t| text.starts_with(t))
    {
        return Some(Finding {
            reason: "SCRIPT",
            what: "an HTML or script document".into(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(pieces: &[&[u8]]) -> Option<&'static str> {
        let mut scanner = Scanner::default();
        for piece in pieces {
            scanner.update(piece);
        }
        scanner.finish().map(|f| f.reason)
    }

    #[test]
    fn eicar_is_found_anywhere_even_across_pieces() {
        let (a, b) = EICAR.split_at(20);
        assert_eq!(scan(&[b"RIFF....WAVE", a, b, b"more"]), Some("MALWARE_DETECTED"));
        assert_eq!(scan(&[EICAR]), Some("MALWARE_DETECTED"));
        // Split over many small pieces, and at every point of a large one.
        let pieces: Vec<&[u8]> = EICAR.chunks(5).collect();
        assert_eq!(scan(&pieces), Some("MALWARE_DETECTED"));
        let mut file = vec![0u8; 1000];
        file.extend_from_slice(EICAR);
        file.extend_from_slice(&[0u8; 1000]);
        for cut in 990..1000 + EICAR.len() + 10 {
            let (a, b) = file.split_at(cut);
            assert_eq!(scan(&[a, b]), Some("MALWARE_DETECTED"), "cut at {cut}");
        }
        let (a, rest) = file.split_at(1010);
        let (b, c) = rest.split_at(30);
        assert_eq!(scan(&[a, b, c]), Some("MALWARE_DETECTED"));
    }

    #[test]
    fn disguised_executables_and_scripts_are_found() {
        assert_eq!(scan(&[b"\x7fELF\x02\x01\x01"]), Some("EXECUTABLE"));
        assert_eq!(scan(&[b"MZ\x90\x00"]), Some("EXECUTABLE"));
        assert_eq!(scan(&[b"#!/bin/sh\nrm -rf /"]), Some("EXECUTABLE"));
        assert_eq!(scan(&[b"  <script>alert(1)</script>"]), Some("SCRIPT"));
        assert_eq!(scan(&[b"ID3\x04\x00", &[0u8; 2000]]), None);
    }
}
