//! A real ClamAV daemon for the tests: one per test process, loaded with a
//! one-line signature database the tests carry, listening on a free
//! loopback port. Needs `clamd` (Debian: `clamav-daemon`); without it the
//! tests that use it fail with the reason.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes the test signature matches.
pub const MARKER: &[u8] = b"debrief clamd test pattern";

static CLAMD: OnceLock<Result<String, String>> = OnceLock::new();

/// `host:port` of the test clamd, started on first use.
pub fn addr() -> String {
    CLAMD
        .get_or_init(start)
        .clone()
        .unwrap_or_else(|e| panic!("cannot start clamd for the tests: {e}"))
}

fn binary() -> Result<PathBuf, String> {
    ["/usr/sbin/clamd", "/usr/bin/clamd", "/usr/local/sbin/clamd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "no clamd binary: run tests/run, or install clamav-daemon".to_owned())
}

fn start() -> Result<String, String> {
    let clamd = binary()?;
    let dir = tempfile::Builder::new()
        .prefix("debrief-clamd-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let db = dir.join("db");
    std::fs::create_dir_all(&db).map_err(|e| e.to_string())?;
    let hex: String = MARKER.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(db.join("debrief.ndb"), format!("Debrief.Test.Marker:0:*:{hex}\n"))
        .map_err(|e| e.to_string())?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let config = dir.join("clamd.conf");
    std::fs::write(
        &config,
        format!(
            "Foreground yes\nDatabaseDirectory {db}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
             LogFile {log}\nStreamMaxLength 300M\nMaxFileSize 300M\nMaxScanSize 300M\n",
            db = db.display(),
            log = dir.join("clamd.log").display(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new(&clamd)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", clamd.display()))?;
    // Stop it and remove its files once this test process is gone.
    super::when_this_process_exits(&format!("kill {}; rm -rf {}", child.id(), dir.display()));
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ping(&addr) {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("clamd.log")).unwrap_or_default();
    Err(format!("clamd did not answer PING within 60 s; its log:\n{log}"))
}

fn ping(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let mut reply = Vec::new();
    stream.write_all(b"zPING\0").is_ok()
        && stream.read_to_end(&mut reply).is_ok()
        && reply.starts_with(b"PONG")
}
