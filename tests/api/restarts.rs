//! Restarts under load: Postgres stopped (fast, then immediate) and started
//! again beneath a server that keeps serving a steady stream of reads and
//! writes; and a server killed with SIGKILL at random points of an upload,
//! round after round. Each prints the figures it measured.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;

use crate::helpers::{Backend, TestApp, TestUser, bearer, test_env};

crate::on_both_backends!(an_upload_killed_at_random_points_resumes_and_ends_byte_identical);

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_restarted_under_load_loses_no_acknowledged_write() {
        super::postgres_restarted_under_load_loses_no_acknowledged_write().await
    }
}

/// A failed call: when it began and ended, and its code.
#[derive(Debug)]
struct Failure {
    began: Instant,
    ended: Instant,
    code: tonic::Code,
}

/// What the load saw: the failed calls, and the meetings whose creation
/// was acknowledged.
#[derive(Default)]
struct Seen {
    failures: Vec<Failure>,
    acknowledged: Vec<String>,
    calls: usize,
}

/// Writers create meetings and readers read them back until `stop`.
fn load(app: &TestApp, user: &TestUser, seen: &Arc<Mutex<Seen>>, stop: &tokio_util::sync::CancellationToken) {
    for worker in 0..6 {
        let client = MeetingServiceClient::new(app.channel.clone());
        let (user, seen, stop) = (user.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut client = client;
            let mut n = 0;
            let mut latest = None::<String>;
            while !stop.is_cancelled() {
                n += 1;
                let began = Instant::now();
                let result = if worker % 2 == 0 {
                    let title = format!("Load {worker}-{n}");
                    client
                        .create_meeting(user.request(pb::CreateMeetingRequest {
                            meeting: Some(pb::Meeting {
                                title,
                                ..Default::default()
                            }),
                            request_id: String::new(),
                        }))
                        .await
                        .map(|r| Some(r.into_inner().meeting.unwrap().name))
                } else if let Some(name) = latest.clone() {
                    client
                        .get_meeting(user.request(pb::GetMeetingRequest { name }))
                        .await
                        .map(|_| None)
                } else {
                    client
                        .list_meetings(user.request(pb::ListMeetingsRequest {
                            page_size: 5,
                            ..Default::default()
                        }))
                        .await
                        .map(|r| r.into_inner().meetings.first().map(|m| m.name.clone()))
                };
                let failed = result.is_err();
                {
                    let mut seen = seen.lock().unwrap();
                    seen.calls += 1;
                    match result {
                        Ok(Some(name)) if worker % 2 == 0 => seen.acknowledged.push(name),
                        Ok(Some(name)) => latest = Some(name),
                        Ok(None) => {}
                        Err(status) => seen.failures.push(Failure {
                            began,
                            ended: Instant::now(),
                            code: status.code(),
                        }),
                    }
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
}

async fn ready(app: &TestApp) -> u16 {
    reqwest::get(format!("{}/readyz", app.url()))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls `/readyz` until it answers `status`; returns when it did.
async fn until_ready_is(app: &TestApp, status: u16) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ready(app).await == status {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Postgres stops twice under six callers (three writing, three reading):
/// `fast` (clients disconnected, a clean shutdown) and `immediate` (a
/// crash, recovered from the WAL on start). Calls fail only between the
/// stop and the server's recovery, `/readyz` goes 503 and back to 200, no
/// restart of debrief is needed, and every meeting whose creation was
/// acknowledged is there at the end.
async fn postgres_restarted_under_load_loses_no_acknowledged_write() {
    let cluster = crate::helpers::postgres::Cluster::start(true).expect("a Postgres cluster of its own");
    let app = crate::helpers::spawn_app_on(&cluster).await;
    let ann = app.sign_up("ann").await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    load(&app, &ann, &seen, &stop);
    let settle = Duration::from_millis(1500);
    tokio::time::sleep(settle).await;
    assert!(
        seen.lock().unwrap().failures.is_empty(),
        "failures before any outage"
    );

    let mut outages = Vec::new();
    for mode in ["fast", "immediate"] {
        let round = Instant::now();
        let calls_before = seen.lock().unwrap().calls;
        let stopping = Instant::now();
        cluster.stop(mode).expect("stop Postgres");
        let unready = until_ready_is(&app, 503).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.resume().expect("start Postgres again");
        let started = Instant::now();
        let ready_again = until_ready_is(&app, 200).await;
        // Recovered: a call that began after the restart succeeded.
        let recovered = loop {
            let before = Instant::now();
            let ok = MeetingServiceClient::new(app.channel.clone())
                .list_meetings(ann.request(pb::ListMeetingsRequest::default()))
                .await
                .is_ok();
            if ok {
                break before;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no recovery after {mode}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::time::sleep(settle).await;
        let seen = seen.lock().unwrap();
        let after = seen.calls - calls_before;
        let this_round = seen.failures.iter().filter(|f| f.ended >= round);
        // A call that ended before the stop, or began once the server had
        // recovered, must not fail.
        let outside: Vec<_> = this_round
            .clone()
            .filter(|f| f.ended < stopping || f.began > recovered)
            .collect();
        assert!(
            outside.is_empty(),
            "{mode}: {} calls failed outside the outage (stop at {stopping:?}, recovered at {recovered:?}): {outside:?}",
            outside.len()
        );
        let failed = this_round.clone().count();
        let codes: HashSet<tonic::Code> = this_round.map(|f| f.code).collect();
        println!(
            "Postgres stop -m {mode}: /readyz 503 after {:?}; down {:?}; /readyz 200 {:?} after the start; \
             calls served again {:?} after it; {after} calls in this round, {failed} failed: {:?}",
            unready - stopping,
            started - stopping,
            ready_again - started,
            recovered.saturating_duration_since(started),
            codes,
        );
        outages.push(recovered - stopping);
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let acknowledged: HashSet<String> = seen.lock().unwrap().acknowledged.iter().cloned().collect();
    let scoped = app.db.as_user(ann.id).await.unwrap();
    let stored: HashSet<String> = debrief::meetings::store::ids_of_user(&scoped, ann.id)
        .await
        .unwrap()
        .into_iter()
        .map(|id| format!("meetings/{id}"))
        .collect();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    println!(
        "{} acknowledged meetings, all stored; outages as callers saw them: {outages:?}",
        acknowledged.len()
    );
}

/// A small deterministic generator (xorshift64*), seeded from
/// `DEBRIEF_TEST_SEED` or the clock; the seed is printed so a failing run
/// can be repeated.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("DEBRIEF_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("DEBRIEF_TEST_SEED={seed}");
        Self(seed.max(1))
    }

    /// A number in `low..high`.
    fn between(&mut self, low: usize, high: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        low + (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (high - low) as u64) as usize
    }
}

/// Rounds of: read the committed size with `GetUpload`, open a stream
/// from there, and SIGKILL `debrief serve` once a random number of bytes
/// (64 KiB to 12 MiB) has been sent; then start it again. The last round
/// sends the rest. No round may lose a committed byte, and the stored
/// recording is the file, byte for byte.
async fn an_upload_killed_at_random_points_resumes_and_ends_byte_identical(backend: Backend) {
    use debrief::pb::v1::upload_service_client::UploadServiceClient;
    use tokio_stream::wrappers::ReceiverStream;

    use crate::uploads::{MIB, create_request, new_meeting_via, wav};

    const ROUNDS: usize = 5;
    const PIECE: usize = 64 * 1024;
    let mut rng = Rng::seeded();
    let (mut vars, _data_dir) = test_env(backend).await;
    vars.insert("DEBRIEF_LOG_FORMAT".into(), "json".into());
    let (mut child, addr, _log) = crate::cli::serve(&vars).await;
    let mut channel = crate::helpers::connect(&addr).await;
    let token = crate::helpers::sign_up_via(&channel, "rounds")
        .await
        .tokens
        .access_token;
    let file = wav(24 * MIB);
    let meeting = new_meeting_via(&channel, &token).await;
    let request = create_request(&meeting, &file, "audio/wav", "all-hands.wav");
    let metadata = request.upload.clone().unwrap();
    let upload = UploadServiceClient::new(channel.clone())
        .create_upload(bearer(&token, request))
        .await
        .unwrap()
        .into_inner()
        .upload
        .unwrap();

    let mut rounds = Vec::new();
    let mut committed = 0;
    let done = loop {
        let mut uploads = UploadServiceClient::new(channel.clone());
        let now = uploads
            .get_upload(bearer(
                &token,
                pb::GetUploadRequest {
                    name: upload.name.clone(),
                },
            ))
            .await
            .expect("the upload survives every kill")
            .into_inner()
            .upload
            .unwrap()
            .committed_bytes as usize;
        assert!(
            now >= committed,
            "committed bytes went back from {committed} to {now}"
        );
        committed = now;
        let kill_after = (rounds.len() < ROUNDS).then(|| rng.between(PIECE, 12 * MIB));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::UploadRequest {
            kind: Some(pb::upload_request::Kind::Metadata(pb::Upload {
                name: upload.name.clone(),
                ..metadata.clone()
            })),
            write_offset: committed as i64,
        })
        .await
        .unwrap();
        let request = bearer(&token, ReceiverStream::new(rx));
        let call = tokio::spawn(async move { uploads.upload(request).await });
        let mut sent = 0;
        for piece in file[committed..].chunks(PIECE) {
            if kill_after.is_some_and(|k| sent >= k) {
                break;
            }
            let message = pb::UploadRequest {
                kind: Some(pb::upload_request::Kind::Chunk(piece.to_vec().into())),
                write_offset: 0,
            };
            if tx.send(message).await.is_err() {
                break;
            }
            sent += piece.len();
        }
        if kill_after.is_none() {
            drop(tx);
            break call
                .await
                .unwrap()
                .expect("the last round completes")
                .into_inner();
        }
        crate::cli::kill9(&mut child).await;
        drop(tx);
        let _ = call.await;
        rounds.push((committed, sent));
        let (next, addr, _log) = crate::cli::serve(&vars).await;
        child = next;
        channel = crate::helpers::connect(&addr).await;
    };
    println!("rounds (committed at the start, bytes sent before SIGKILL): {rounds:?}");
    assert!(
        rounds.iter().filter(|(_, sent)| *sent < file.len()).count() == ROUNDS,
        "every round was killed mid-upload: {rounds:?}"
    );

    let meeting = done.meeting.unwrap();
    assert_eq!(done.upload.unwrap().name, upload.name, "the same upload, resumed");
    let (_, stored) = crate::meetings::download_via(&channel, &token, &meeting.name, 0, 0)
        .await
        .unwrap();
    assert!(
        stored == file,
        "{} rounds, and the recording is byte for byte the file",
        rounds.len()
    );
    println!("{ROUNDS} rounds killed mid-upload; the recording is byte-identical");
    let _ = child.kill().await;
}
