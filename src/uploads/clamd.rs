//! Scanning with ClamAV's `clamd` over TCP (`INSTREAM`), when
//! `DEBRIEF_CLAMD_ADDR` is set.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{AppError, AppResult};

/// Longest a scan may take.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes per INSTREAM chunk.
const CHUNK: usize = 64 << 10;

/// Streams the file at `path` to clamd at `addr`; the signature name when
/// it finds something, None when clean.
pub async fn scan(addr: &str, path: &Path) -> AppResult<Option<String>> {
    let unavailable = |what: String| AppError::Unavailable {
        reason: "SCANNER_UNAVAILABLE",
        retry_after: Some(Duration::from_secs(30)),
        message: format!("the virus scanner is not available ({what}); try again later"),
        metadata: Default::default(),
    };
    let run = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"zINSTREAM\0").await?;
        let mut file = tokio::fs::File::open(path).await?;
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            let len = u32::try_from(read).unwrap_or(u32::MAX);
            stream.write_all(&len.to_be_bytes()).await?;
            stream.write_all(&buffer[..read]).await?;
        }
        stream.write_all(&0u32.to_be_bytes()).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| unavailable("timed out".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let reply = String::from_utf8_lossy(&reply)
        .trim_end_matches('\0')
        .trim()
        .to_owned();
    // "stream: OK", "stream: <name> FOUND", or "... ERROR".
    let verdict = reply.strip_prefix("stream:").map(str::trim).unwrap_or(&reply);
    if verdict == "OK" {
        Ok(None)
    } else if let Some(name) = verdict.strip_suffix("FOUND") {
        Ok(Some(name.trim().to_owned()))
    } else {
        tracing::error!(%reply, "clamd answered with an error");
        Err(unavailable("it reported an error".into()))
    }
}
