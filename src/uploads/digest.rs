//! The running digest of an upload: the SHA-256 and the built-in scan of
//! the bytes committed so far. Each chunk is hashed and scanned once, in
//! memory, as it arrives, and the state is kept in the upload's row with
//! the committed size it covers, so completing reads nothing back.

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest, Sha256};

use super::scan::Scanner;

/// The first byte of a saved state, for a future change of its layout.
const LAYOUT: u8 = 1;

/// SHA-256 and scan of a prefix of an upload.
#[derive(Debug, Default)]
pub struct Running {
    /// Bytes fed so far.
    fed: u64,
    sha256: Sha256,
    scanner: Scanner,
}

impl Running {
    /// The digest after the first `committed` bytes of an upload, from the
    /// state saved in its row: a fresh one when nothing is committed yet;
    /// None when the state is missing (an upload begun before states were
    /// kept), unreadable, or covers other bytes than those committed.
    pub fn resume(saved: Option<&[u8]>, committed: i64) -> Option<Self> {
        let Some(saved) = saved else {
            return (committed == 0).then(Self::default);
        };
        let (&LAYOUT, rest) = saved.split_first()? else {
            return None;
        };
        let (fed, rest) = rest.split_first_chunk::<8>()?;
        let fed = u64::from_le_bytes(*fed);
        let size = size_of::<SerializedState<Sha256>>();
        if rest.len() < size || i64::try_from(fed).ok()? != committed {
            return None;
        }
        let (sha256, scanner) = rest.split_at(size);
        Some(Self {
            fed,
            sha256: Sha256::deserialize(&SerializedState::<Sha256>::try_from(sha256).ok()?).ok()?,
            scanner: Scanner::restore(scanner)?,
        })
    }

    /// Feeds the next bytes of the upload.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.scanner.update(bytes);
        self.fed += bytes.len() as u64;
    }

    /// The state to save in the row, for [`Running::resume`].
    pub fn save(&self) -> Vec<u8> {
        let mut out = vec![LAYOUT];
        out.extend_from_slice(&self.fed.to_le_bytes());
        out.extend_from_slice(&self.sha256.serialize());
        self.scanner.save(&mut out);
        out
    }

    /// Once the whole file was fed: its SHA-256 in lower-case hex, and the
    /// scanner for its verdict.
    pub fn finish(self) -> (String, Scanner) {
        let hex = self
            .sha256
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (hex, self.scanner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn saved_and_resumed_at_any_cut_gives_the_digest_of_the_whole() {
        let mut file: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        file[3000..3000 + 68]
            .copy_from_slice(br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
        let whole = sha256_hex(&file);
        for cut in [1, 63, 64, 65, 511, 512, 3010, 3068, 4999] {
            let mut first = Running::resume(None, 0).expect("fresh");
            first.update(&file[..cut]);
            let saved = first.save();
            let committed = i64::try_from(cut).unwrap();
            let mut second = Running::resume(Some(&saved), committed).expect("resumes");
            second.update(&file[cut..]);
            let (sha256, scanner) = second.finish();
            assert_eq!(sha256, whole, "cut at {cut}");
            assert_eq!(
                scanner.finish().map(|f| f.reason),
                Some("MALWARE_DETECTED"),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_state_of_other_bytes_or_none_is_not_resumed() {
        let mut running = Running::default();
        running.update(b"#!/bin/sh\n");
        let saved = running.save();
        assert!(
            Running::resume(Some(&saved), 9).is_none(),
            "covers 10 bytes, not 9"
        );
        assert!(
            Running::resume(None, 10).is_none(),
            "an upload begun without a state"
        );
        assert!(Running::resume(Some(&saved[..20]), 10).is_none(), "cut short");
        assert!(Running::resume(Some(b""), 0).is_none());
        let resumed = Running::resume(Some(&saved), 10).expect("resumes");
        assert_eq!(resumed.finish().1.finish().map(|f| f.reason), Some("EXECUTABLE"));
    }
}
