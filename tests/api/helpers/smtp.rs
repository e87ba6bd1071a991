//! A real SMTP server for the tests, on loopback: it speaks ESMTP with
//! STARTTLS (a certificate for 127.0.0.1 from a CA it makes on the spot,
//! whose PEM the server under test is given to trust) and AUTH PLAIN, and
//! refuses AUTH and MAIL before STARTTLS, as a submission server should.
//! It records every message with what the session looked like.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// One message the server accepted.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Whether the session had switched to TLS before it authenticated.
    pub encrypted_before_auth: bool,
    /// The `AUTH PLAIN` user and password.
    pub login: Option<(String, String)>,
    /// `MAIL FROM`.
    pub from: String,
    /// `RCPT TO`.
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub data: String,
}

/// A running server.
pub struct FakeSmtp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The PEM of the CA that signed its certificate.
    pub ca_pem: String,
    /// What it accepted, in order.
    pub received: Arc<Mutex<Vec<Received>>>,
}

/// Starts a server on a free loopback port.
pub async fn start() -> FakeSmtp {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let _ = session(socket, acceptor, log).await;
            });
        }
    });
    FakeSmtp {
        addr,
        ca_pem,
        received,
    }
}

/// What a session has seen so far.
#[derive(Default)]
struct Session {
    message: Received,
    encrypted: bool,
}

enum Next {
    StartTls,
    Quit,
}

async fn session(
    socket: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    log: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    let mut state = Session::default();
    let mut plain = BufReader::new(socket);
    plain.get_mut().write_all(b"220 127.0.0.1 ESMTP test\r\n").await?;
    if let Next::Quit = converse(&mut plain, &mut state, &log).await? {
        return Ok(());
    }
    let tls = acceptor.accept(plain.into_inner()).await?;
    state.encrypted = true;
    converse(&mut BufReader::new(tls), &mut state, &log).await?;
    Ok(())
}

/// Answers commands until STARTTLS or the end.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    state: &mut Session,
    log: &Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<Next> {
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(Next::Quit);
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" if state.encrypted => b"250-127.0.0.1\r\n250 AUTH PLAIN\r\n",
            "EHLO" | "HELO" => b"250-127.0.0.1\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
            "STARTTLS" => {
                stream.get_mut().write_all(b"220 ready for TLS\r\n").await?;
                return Ok(Next::StartTls);
            }
            "AUTH" | "MAIL" | "RCPT" | "DATA" if !state.encrypted => {
                b"530 Must issue a STARTTLS command first\r\n"
            }
            "AUTH" => {
                let encoded = command.split_whitespace().nth(2).unwrap_or("");
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap_or_default();
                let parts: Vec<String> = String::from_utf8_lossy(&decoded)
                    .split('\0')
                    .map(str::to_owned)
                    .collect();
                state.message.encrypted_before_auth = state.encrypted;
                state.message.login = (parts.len() == 3).then(|| (parts[1].clone(), parts[2].clone()));
                b"235 2.7.0 Authentication successful\r\n"
            }
            "MAIL" => {
                state.message.from = command.clone();
                b"250 OK\r\n"
            }
            "RCPT" => {
                state.message.to.push(command.clone());
                b"250 OK\r\n"
            }
            "DATA" => {
                stream.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut data = String::new();
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await? == 0 || line == ".\r\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                state.message.data = data;
                log.lock().unwrap().push(std::mem::take(&mut state.message));
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                stream.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(Next::Quit);
            }
            "RSET" | "NOOP" => b"250 OK\r\n",
            _ => b"502 unknown command\r\n",
        };
        stream.get_mut().write_all(reply).await?;
        stream.get_mut().flush().await?;
    }
}
