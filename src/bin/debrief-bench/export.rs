//! The export scenario: the resident memory of a `debrief serve` child
//! while it streams a person's data export, for a small account and a
//! large one, to show the export reads page by page (memory does not grow
//! with the account), with the client reading slowly so back-pressure has
//! to hold the server back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use debrief::pb::v1::progress_service_client::ProgressServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use crate::child::{ChildServer, bearer};

/// One export measured.
#[derive(Debug, Serialize)]
pub struct ExportRun {
    records: usize,
    megabytes: f64,
    seconds: f64,
    server_rss_before_mib: f64,
    server_rss_peak_during_mib: f64,
    growth_mib: f64,
}

/// What the scenario measured: the same export at two sizes.
#[derive(Debug, Serialize)]
pub struct ExportResult {
    small: ExportRun,
    large: ExportRun,
}

/// A meeting description near the 5,000-character limit, so each record
/// weighs about 5 KB.
fn description(i: usize) -> String {
    let sentence = "Agreed to move the billing migration to the second sprint; Priya owns the vendor call \
                    and the rollback plan, Marco the customer notice. ";
    format!("Meeting {i}. {}", sentence.repeat(30))
}

/// Creates `count` meetings for `token`, 16 at a time.
async fn seed(channel: &Channel, token: &str, count: usize) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (channel, token, next) = (channel.clone(), token.to_owned(), next.clone());
            tokio::spawn(async move {
                let mut client = MeetingServiceClient::new(channel);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let meeting = pb::Meeting {
                        title: format!("Billing migration sync {i}"),
                        description: description(i),
                        tags: vec!["billing".into(), "migration".into()],
                        ..Default::default()
                    };
                    let request = pb::CreateMeetingRequest {
                        meeting: Some(meeting),
                        request_id: String::new(),
                    };
                    client.create_meeting(bearer(&token, request)?).await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

/// Exports `token`'s data, reading slowly, while sampling the server's
/// resident memory.
async fn export(server: &ChildServer, channel: &Channel, token: &str) -> anyhow::Result<ExportRun> {
    let (before, _) = server.memory_mib();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pid) = (done.clone(), server.pid);
        tokio::spawn(async move {
            let mut peak = 0.0f64;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(crate::child::rss_mib(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let started = Instant::now();
    let mut stream = ProgressServiceClient::new(channel.clone())
        .export_data(bearer(token, pb::ExportDataRequest {})?)
        .await?
        .into_inner();
    let (mut records, mut bytes) = (0usize, 0usize);
    while let Some(message) = stream.message().await? {
        records += 1;
        bytes += prost::Message::encoded_len(&message);
        // A slow client: the server must wait for it, not buffer ahead.
        if records % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.await.context("sampler")?;
    Ok(ExportRun {
        records,
        megabytes: bytes as f64 / 1e6,
        seconds,
        server_rss_before_mib: before,
        server_rss_peak_during_mib: peak,
        growth_mib: peak - before,
    })
}

/// Runs the scenario: exports of `small` and `large` meetings' accounts.
pub async fn run(small: usize, large: usize) -> anyhow::Result<ExportResult> {
    let server = ChildServer::start(&[]).await?;
    let channel = server.connect().await?;
    let mut runs = Vec::new();
    for (i, count) in [small, large].into_iter().enumerate() {
        let (_, token) = server.sign_up(&format!("bench-export-{i}@example.com")).await?;
        seed(&channel, &token, count).await?;
        // Settle after seeding before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        runs.push(export(&server, &channel, &token).await?);
    }
    server.stop().await;
    let large = runs.pop().context("large run")?;
    let small = runs.pop().context("small run")?;
    Ok(ExportResult { small, large })
}
