//! The upload scenario: N concurrent uploads of one large WAV through the
//! resumable RPCs, against a `debrief serve` child process, so the
//! server's peak memory (VmHWM) can be read on its own; and, beside it, N
//! concurrent `dd conv=fsync` of the same number of bytes on the same
//! filesystem, the disk's own speed.

use std::time::Instant;

use anyhow::Context as _;
use debrief::pb::v1 as pb;
use debrief::pb::v1::upload_service_client::UploadServiceClient;
use debrief::pb::v1::usage_service_client::UsageServiceClient;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::child::{ChildServer, bearer};

/// What the scenario measured.
#[derive(Debug, Serialize)]
pub struct UploadResult {
    uploads: usize,
    bytes_each: usize,
    seconds: f64,
    megabytes_per_second: f64,
    /// N concurrent `dd conv=fsync` of as many bytes, in MiB/s.
    dd_megabytes_per_second: f64,
    /// debrief ÷ dd (goal ≥ 0.5).
    ratio_to_dd: f64,
    server_idle_rss_mib: f64,
    server_peak_rss_mib: f64,
    /// Peak above idle (goal ≤ 64 MiB).
    server_rss_above_idle_mib: f64,
    /// Mean seconds an upload spent sending its chunks, and completing.
    append_seconds: f64,
    complete_seconds: f64,
    errors: usize,
    first_error: Option<String>,
}

impl UploadResult {
    /// One line: the ratio to `dd` and the memory, against their goals.
    pub fn against_goals(&self) -> String {
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        format!(
            "upload: {:.2}× of dd (goal ≥ 0.5×: {}), {:.0} MiB above idle (goal ≤ 64 MiB: {})",
            self.ratio_to_dd,
            met(self.ratio_to_dd >= 0.5),
            self.server_rss_above_idle_mib,
            met(self.server_rss_above_idle_mib <= 64.0)
        )
    }
}

/// A 16 kHz mono 16-bit WAV of `len` bytes.
fn wav(len: usize) -> Vec<u8> {
    let data = len - 44;
    let u32_le = |v: usize| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&u32_le(len - 8));
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&u32_le(16));
    out.extend_from_slice(&[1, 0, 1, 0]); // PCM, mono
    out.extend_from_slice(&u32_le(16_000));
    out.extend_from_slice(&u32_le(32_000));
    out.extend_from_slice(&[2, 0, 16, 0]); // block align, bits
    out.extend_from_slice(b"data");
    out.extend_from_slice(&u32_le(data));
    out.extend((0..data).map(|i| (i % 251) as u8));
    out
}

/// Runs `uploads` concurrent uploads of `size` bytes each.
pub async fn run(uploads: usize, size: usize) -> anyhow::Result<UploadResult> {
    // Uploads alone: no worker processes the recordings meanwhile.
    let server = ChildServer::start(&[("DEBRIEF_WORKERS", "0")]).await?;
    let channel = server.connect().await?;
    let (user, token) = server.sign_up("bench-uploader@example.com").await?;
    // The Team plan takes uploads of this size.
    UsageServiceClient::new(channel.clone())
        .set_user_plan(bearer(
            &server.admin_token,
            pb::SetUserPlanRequest {
                user,
                plan: "plans/team".into(),
                ..Default::default()
            },
        )?)
        .await?;

    let (server_idle_rss_mib, _) = server.memory_mib();
    let dd_megabytes_per_second = dd(uploads, size).await?;

    // Shared, so each chunk sent is a slice of it rather than a copy.
    let file = bytes::Bytes::from(wav(size));
    let sha256: String = Sha256::digest(&file).iter().map(|b| format!("{b:02x}")).collect();
    // Each upload on a connection of its own, as separate clients would.
    let mut channels = Vec::with_capacity(uploads);
    for _ in 0..uploads {
        channels.push(server.connect().await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = channels
        .into_iter()
        .map(|channel| {
            let (token, file, sha256) = (token.clone(), file.clone(), sha256.clone());
            tokio::spawn(async move { upload_one(channel, &token, &file, &sha256).await })
        })
        .collect();
    let mut errors = 0;
    let mut first_error = None;
    let (mut append_seconds, mut complete_seconds) = (0.0, 0.0);
    for task in tasks {
        match task.await.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(phases) => {
                append_seconds += phases.0;
                complete_seconds += phases.1;
            }
            Err(error) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (_, server_peak_rss_mib) = server.memory_mib();
    server.stop().await;
    let done = uploads - errors;
    let megabytes_per_second = (done * size) as f64 / (1 << 20) as f64 / seconds;
    Ok(UploadResult {
        uploads,
        bytes_each: size,
        seconds,
        megabytes_per_second,
        dd_megabytes_per_second,
        ratio_to_dd: megabytes_per_second / dd_megabytes_per_second,
        server_idle_rss_mib,
        server_peak_rss_mib,
        server_rss_above_idle_mib: server_peak_rss_mib - server_idle_rss_mib,
        append_seconds: append_seconds / done.max(1) as f64,
        complete_seconds: complete_seconds / done.max(1) as f64,
        errors,
        first_error,
    })
}

/// MiB/s of `n` concurrent `dd conv=fsync` writing `size` bytes each into
/// the temporary directory, where the child server keeps its data.
async fn dd(n: usize, size: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let runs: Vec<_> = (0..n)
        .map(|i| {
            tokio::process::Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", dir.path().join(format!("dd-{i}")).display()))
                .args(["bs=4M", &format!("count={size}"), "iflag=count_bytes"])
                .args(["conv=fsync", "status=none"])
                .status()
        })
        .collect();
    for run in futures::future::join_all(runs).await {
        anyhow::ensure!(run.context("cannot run dd")?.success(), "dd failed");
    }
    Ok((n * size) as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64())
}

/// One upload; returns the seconds it spent sending chunks and completing.
async fn upload_one(
    channel: Channel,
    token: &str,
    file: &bytes::Bytes,
    sha256: &str,
) -> anyhow::Result<(f64, f64)> {
    let meeting = super::child::new_meeting(channel.clone(), token).await?;
    let mut client = UploadServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let upload = client
        .create_upload(bearer(
            token,
            pb::CreateUploadRequest {
                upload: Some(pb::Upload {
                    meeting,
                    file_name: "bench.wav".into(),
                    content_type: "audio/wav".into(),
                    size_bytes: i64::try_from(file.len())?,
                    sha256: sha256.to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        )?)
        .await?
        .into_inner()
        .upload
        .context("upload")?;
    let chunk = usize::try_from(upload.max_chunk_bytes)?;
    let appending = Instant::now();
    for start in (0..file.len()).step_by(chunk) {
        client
            .append_chunk(bearer(
                token,
                pb::AppendChunkRequest {
                    name: upload.name.clone(),
                    offset: i64::try_from(start)?,
                    crc32c: None,
                    chunk: Some(debrief::pb::google::api::HttpBody {
                        content_type: "application/octet-stream".into(),
                        data: file.slice(start..file.len().min(start + chunk)),
                        extensions: vec![],
                    }),
                },
            )?)
            .await?;
    }
    let appended = appending.elapsed().as_secs_f64();
    let completing = Instant::now();
    client
        .complete_upload(bearer(token, pb::CompleteUploadRequest { name: upload.name })?)
        .await?;
    Ok((appended, completing.elapsed().as_secs_f64()))
}
