//! An S3-compatible server for the tests: moto's standalone server (PyPI
//! `moto[server]`, run as `python3 -m moto.server`), one per test process
//! on a free loopback port; each test makes its own bucket. Without moto
//! the tests that use it fail with the reason.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static MOTO: OnceLock<Result<String, String>> = OnceLock::new();

/// `http://127.0.0.1:port` of the test S3 server, started on first use.
pub fn endpoint() -> String {
    MOTO.get_or_init(start)
        .clone()
        .unwrap_or_else(|e| panic!("cannot start an S3 server for the tests: {e}"))
}

fn start() -> Result<String, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let installed = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run python3: {e} (tests/run installs what the tests need)"))?;
    if !installed.success() {
        return Err("moto is not installed for python3: run tests/run, or pip install 'moto[server]'".into());
    }
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("python3 -m moto.server: {e} "))?;
    super::when_this_process_exits(&format!("kill {}", child.id()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("moto did not listen within 60 s (is `moto[server]` installed for python3?)".into())
}

/// Creates a fresh bucket and returns the environment a server needs to
/// store its objects under `s3://<bucket>/recordings`.
pub async fn bucket_env() -> (String, Vec<(String, String)>) {
    let endpoint = endpoint();
    let bucket = format!("debrief-{}", uuid::Uuid::new_v4().simple());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create a bucket");
    assert!(created.status().is_success(), "{}", created.status());
    let vars = [
        ("DEBRIEF_STORAGE_URL", format!("s3://{bucket}/recordings")),
        ("AWS_ENDPOINT", endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec();
    (format!("{endpoint}/{bucket}"), vars)
}
