//! The processing scenario: conversion speed of a long MP3 against ffmpeg
//! on the same file, and the job queue's throughput with trivial jobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use debrief::Config;
use debrief::audio::convert;
use debrief::auth::entity::user::Role;
use debrief::db::Db;
use debrief::meetings::model::MeetingFields;
use debrief::processing::jobs;
use serde::Serialize;

/// What the scenario measured.
#[derive(Debug, Serialize)]
pub struct ProcessingResult {
    recording_seconds: f64,
    convert_seconds: f64,
    convert_times_real_time: f64,
    ffmpeg_seconds: f64,
    ffmpeg_times_real_time: f64,
    queue_backend: String,
    queue_jobs: usize,
    queue_claimers: usize,
    queue_batch: usize,
    queue_owners: usize,
    queue_jobs_per_second: f64,
    /// Claims made, and how many of them found nothing to take.
    queue_claims: usize,
    queue_empty_claims: usize,
    /// Mean time of a claim and of one job's finish, in milliseconds.
    queue_claim_ms: f64,
    queue_finish_ms: f64,
}

/// The shape of the queue part: jobs queued, workers claiming them, the
/// jobs each claims at once, and the accounts they belong to.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    pub jobs: usize,
    pub claimers: usize,
    pub batch: usize,
    pub owners: usize,
}

/// Makes a recording of `minutes` of speech-like noise with pauses, with
/// ffmpeg, unless `given` names one.
fn recording(given: Option<&Path>, dir: &Path, minutes: u32) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    let path = dir.join("meeting.mp3");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("anoisesrc=d={}:c=pink:a=0.3:r=44100", minutes * 60))
        .args([
            "-af",
            "volume='if(lt(mod(t,20),2),0,1)':eval=frame",
            "-ac",
            "2",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "64k",
        ])
        .arg(&path)
        .status()
        .context("running ffmpeg to make the recording (install ffmpeg or pass --mp3)")?;
    if !status.success() {
        bail!("ffmpeg could not make the recording");
    }
    Ok(path)
}

/// Runs the scenario.
pub async fn run(mp3: Option<&Path>, shape: Queue) -> anyhow::Result<ProcessingResult> {
    let dir = tempfile::tempdir()?;
    let input = recording(mp3, dir.path(), 30)?;

    let output = dir.path().join("converted.wav");
    let started = Instant::now();
    let converted = {
        let (input, output) = (input.clone(), output.clone());
        tokio::task::spawn_blocking(move || convert::convert(&input, "mp3", &output, &mut |_| {})).await??
    };
    let convert_seconds = started.elapsed().as_secs_f64();
    let recording_seconds = converted.frames as f64 / 16_000.0;

    let started = Instant::now();
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&input)
        .args(["-ar", "16000", "-ac", "1"])
        .arg(dir.path().join("ffmpeg.wav"))
        .status()
        .context("running ffmpeg for the comparison")?;
    let ffmpeg_seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("ffmpeg could not convert the recording");
    }

    let run = queue(dir.path(), shape).await?;
    Ok(ProcessingResult {
        recording_seconds,
        convert_seconds,
        convert_times_real_time: recording_seconds / convert_seconds,
        ffmpeg_seconds,
        ffmpeg_times_real_time: recording_seconds / ffmpeg_seconds,
        queue_backend: run.backend,
        queue_jobs: shape.jobs,
        queue_claimers: shape.claimers,
        queue_batch: shape.batch,
        queue_owners: shape.owners,
        queue_jobs_per_second: run.jobs_per_second,
        queue_claims: run.claims,
        queue_empty_claims: run.empty_claims,
        queue_claim_ms: run.claim_ms,
        queue_finish_ms: run.finish_ms,
    })
}

/// What the claimers count as they go, shared between them.
#[derive(Default)]
struct Tally {
    claims: AtomicUsize,
    empty_claims: AtomicUsize,
    claim_micros: AtomicUsize,
    finish_micros: AtomicUsize,
}

/// How the queue part went.
struct QueueRun {
    backend: String,
    jobs_per_second: f64,
    claims: usize,
    empty_claims: usize,
    claim_ms: f64,
    finish_ms: f64,
}

/// Queues `shape.jobs` jobs over `shape.owners` accounts on the Free plan
/// (one job at a time each), then times `shape.claimers` workers claiming
/// up to `shape.batch` at a time and finishing them (no work in between).
/// Uses `DATABASE_URL` when set, else a SQLite file in `dir`.
async fn queue(dir: &Path, shape: Queue) -> anyhow::Result<QueueRun> {
    let Queue {
        jobs: count,
        claimers,
        batch,
        owners: users,
    } = shape;
    let mut vars = vec![("DEBRIEF_DATA_DIR".to_owned(), dir.display().to_string())];
    for name in ["DATABASE_URL", "DATABASE_MIGRATION_URL"] {
        if let Ok(url) = std::env::var(name) {
            vars.push((name.to_owned(), url));
        }
    }
    let config = Config::from_vars(vars)?;
    let db = Db::open(&config).await?;
    let mut owners = Vec::new();
    for i in 0..users {
        let email = format!("queue-{i}-{}@example.com", uuid::Uuid::now_v7());
        let user =
            debrief::admin::users::create_user(&db, &email, "granite-Meadow-lantern-58", Role::User, "")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        owners.push(user.id);
    }
    for i in 0..count {
        let user_id = owners[i % users];
        let scoped = db.as_user(user_id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let meeting = debrief::meetings::store::create(
            &scoped,
            user_id,
            debrief::meetings::entity::Kind::Meeting,
            MeetingFields::default(),
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        jobs::enqueue(&scoped, user_id, meeting.id, None, 5)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        scoped.commit().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let started = Instant::now();
    let finished = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..claimers)
        .map(|i| {
            let (db, finished, tally) = (db.clone(), finished.clone(), tally.clone());
            tokio::spawn(async move {
                let worker = format!("bench-{i}");
                let deadline = Instant::now() + Duration::from_secs(120);
                while finished.load(Ordering::Relaxed) < count {
                    anyhow::ensure!(Instant::now() < deadline, "the queue did not drain in 120 s");
                    // As the worker loop does: listening before looking, so
                    // a job finished meanwhile by another claimer wakes it.
                    let freed = db.signals().work().notified();
                    tokio::pin!(freed);
                    freed.as_mut().enable();
                    let claiming = Instant::now();
                    let claimed = jobs::claim(&db, &worker, Duration::from_secs(60), batch)
                        .await
                        .map_err(|e| anyhow::anyhow!("claiming jobs: {e}"))?;
                    tally.claims.fetch_add(1, Ordering::Relaxed);
                    tally
                        .claim_micros
                        .fetch_add(claiming.elapsed().as_micros() as usize, Ordering::Relaxed);
                    if claimed.is_empty() {
                        tally.empty_claims.fetch_add(1, Ordering::Relaxed);
                        // Another claimer holds the rest, or none are left.
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(5)) => {}
                            () = &mut freed => {}
                        }
                        continue;
                    }
                    // Finished side by side, as a worker's slots do.
                    let settled = claimed.iter().map(|job| async {
                        let finishing = Instant::now();
                        let scoped = db.as_service().await?;
                        jobs::succeed(&scoped, job.id, &worker).await?;
                        scoped.commit().await?;
                        tally
                            .finish_micros
                            .fetch_add(finishing.elapsed().as_micros() as usize, Ordering::Relaxed);
                        Ok::<_, debrief::error::AppError>(())
                    });
                    for result in futures::future::join_all(settled).await {
                        result.map_err(|e| anyhow::anyhow!("finishing a job: {e}"))?;
                    }
                    finished.fetch_add(claimed.len(), Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let done = finished.load(Ordering::Relaxed);
    let claims = tally.claims.load(Ordering::Relaxed);
    let mean_ms = |micros: &AtomicUsize, count: usize| {
        micros.load(Ordering::Relaxed) as f64 / 1000.0 / count.max(1) as f64
    };
    Ok(QueueRun {
        backend: format!("{:?}", db.backend()),
        jobs_per_second: done as f64 / seconds,
        claims,
        empty_claims: tally.empty_claims.load(Ordering::Relaxed),
        claim_ms: mean_ms(&tally.claim_micros, claims),
        finish_ms: mean_ms(&tally.finish_micros, done),
    })
}
