//! The events scenario: publish → receipt latency on a live stream while
//! many idle streams are open (server in this process, publishing through
//! the library as the services do), and the resident memory of a
//! `debrief serve` child holding many idle streams.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use debrief::events::model::Payload;
use debrief::pb::v1 as pb;
use debrief::pb::v1::event_service_client::EventServiceClient;
use debrief::{Application, Config};
use serde::Serialize;
use tonic::codec::Streaming;
use tonic::transport::Channel;

use crate::child::{ChildServer, bearer, sign_up};

/// Streams per HTTP/2 connection (servers allow a few hundred at most).
const STREAMS_PER_CONNECTION: usize = 100;

/// What the scenario measured.
#[derive(Debug, Serialize)]
pub struct EventsResult {
    idle_streams_during_latency: usize,
    samples: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    idle_streams_for_memory: usize,
    server_rss_before_mib: f64,
    server_rss_with_streams_mib: f64,
    kib_per_stream: f64,
}

/// Opens `count` idle Subscribe streams for `token`, keeping them read.
async fn open_idle(url: &str, token: &str, count: usize) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut readers = Vec::with_capacity(count);
    let mut channel = None;
    for i in 0..count {
        if i % STREAMS_PER_CONNECTION == 0 {
            channel = Some(Channel::from_shared(url.to_owned())?.connect().await?);
        }
        let mut stream = EventServiceClient::new(channel.clone().context("channel")?)
            .subscribe(bearer(token, pb::SubscribeRequest::default())?)
            .await
            .with_context(|| format!("idle stream {i}"))?
            .into_inner();
        readers.push(tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {}
        }));
    }
    Ok(readers)
}

async fn next_event(stream: &mut Streaming<pb::SubscribeResponse>) -> anyhow::Result<i64> {
    loop {
        let message = stream.message().await?.context("stream ended")?;
        if let Some(pb::subscribe_response::Kind::Event(event)) = message.kind {
            return Ok(event.id);
        }
    }
}

/// Runs the scenario.
pub async fn run(idle: usize, samples: usize, memory_streams: usize) -> anyhow::Result<EventsResult> {
    // Latency, with the server in this process.
    let dir = tempfile::tempdir()?;
    let config = Config::from_vars([
        ("DEBRIEF_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("DEBRIEF_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("DEBRIEF_MAX_STREAMS_PER_USER".to_owned(), (idle + 10).to_string()),
        ("DEBRIEF_LOG".to_owned(), "warn".to_owned()),
    ])?;
    let app = Application::build(config).await?;
    let url = format!("http://{}", app.local_addr());
    let db = app.state().shared.db.clone();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    let channel = Channel::from_shared(url.clone())?.connect().await?;
    let (_, idle_token) = sign_up(channel.clone(), "bench-idle@example.com").await?;
    let (watcher, token) = sign_up(channel.clone(), "bench-watcher@example.com").await?;
    let watcher: uuid::Uuid = watcher.trim_start_matches("users/").parse()?;
    let idle_readers = open_idle(&url, &idle_token, idle).await?;
    let mut stream = EventServiceClient::new(channel)
        .subscribe(bearer(&token, pb::SubscribeRequest::default())?)
        .await?
        .into_inner();
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        let scoped = db.as_user(watcher).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let payload = Payload::SystemNotice {
            title: format!("bench {i}"),
            message: String::new(),
        };
        debrief::events::publish(&scoped, watcher, None, payload)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        scoped.commit().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::time::timeout(Duration::from_secs(30), next_event(&mut stream)).await??;
        latencies.push(started.elapsed());
    }
    for reader in idle_readers {
        reader.abort();
    }
    shutdown.cancel();
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at =
        |p: f64| ms(latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]);

    // Memory, with the server alone in a child process.
    let limit = (memory_streams + 10).to_string();
    let server = ChildServer::start(&[("DEBRIEF_MAX_STREAMS_PER_USER", limit.as_str())]).await?;
    let (_, token) = server.sign_up("bench-streams@example.com").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, _) = server.memory_mib();
    let readers = open_idle(&server.url, &token, memory_streams).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (with_streams, _) = server.memory_mib();
    for reader in readers {
        reader.abort();
    }
    server.stop().await;

    Ok(EventsResult {
        idle_streams_during_latency: idle,
        samples,
        latency_p50_ms: at(0.50),
        latency_p99_ms: at(0.99),
        latency_max_ms: latencies.last().map_or(0.0, |d| ms(*d)),
        idle_streams_for_memory: memory_streams,
        server_rss_before_mib: before,
        server_rss_with_streams_mib: with_streams,
        kib_per_stream: (with_streams - before) * 1024.0 / memory_streams.max(1) as f64,
    })
}
