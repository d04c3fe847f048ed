//! Inputs by `https` URL: fetched from a host the operator allows, its certificate verified
//! against the system's roots plus `[inputs] extra_root_certificates` (here a CA made at test
//! time with the `openssl` command, serving on 127.0.0.2); refused as a 400 before payment
//! when the host is not allowed, when it resolves to a loopback address not listed, when a
//! redirect leads to such an address, or when its certificate is not trusted.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Stack;
use common::speech::{
    SENTENCE, assert_audio_url_refused, b64, espeak_wav, silence_wav, word_recall,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use x402_gateway::backend::fetch_input::{InputFetcher, InputsConfig};

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate it signed for 127.0.0.2 and localhost
/// (`server.pem`, key `server.key`), made in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=x402 test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.2,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// An https server on 127.0.0.2 with `dir`'s server certificate: `/speech.wav` is `wav`,
/// `/to/{path}` redirects (302) to `{path}` with `https://` before it; its port and how many
/// requests reached it.
async fn https_server(dir: &Path, wav: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, wav, counted) = (acceptor.clone(), wav.clone(), counted.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let line = String::from_utf8_lossy(&request).to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (head, body) = match path.strip_prefix("/to/") {
                    Some(target) => (
                        format!(
                            "HTTP/1.1 302 Found\r\nLocation: https://{target}\r\nContent-Length: 0\r\n"
                        ),
                        Vec::new(),
                    ),
                    None if path == "/speech.wav" => (
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\n",
                            wav.len()
                        ),
                        wav,
                    ),
                    None => (
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n".to_owned(),
                        Vec::new(),
                    ),
                };
                let _ = tls
                    .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
                    .await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, hits)
}

fn run(input: Value) -> Value {
    json!({"service": "whisper-l4", "input": input})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_https_host_is_fetched_and_others_are_400_before_payment() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let (port, hits) = https_server(certs.path(), espeak_wav(SENTENCE)).await;
    // 127.0.0.2 is listed as an address; localhost only by name (its loopback addresses are
    // not listed, so it is refused once resolved).
    let stack = Stack::start(&format!(
        "[inputs]\nallowed_hosts = [\"127.0.0.2\", \"localhost\"]\nextra_root_certificates = {:?}\n",
        certs.path().join("ca.pem").display().to_string()
    ))
    .await;

    // Allowed: fetched over https, quoted, paid, transcribed.
    let url = format!("https://127.0.0.2:{port}/speech.wav");
    let (response, _) = stack
        .pay_run("whisper-l4", json!({"audio_url": &url}), 2)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let text = body["output"]["text"].as_str().unwrap();
    assert!(word_recall(SENTENCE, text) >= 0.8, "{body}");
    // A redirect to an allowed URL is followed.
    let hop = format!("https://127.0.0.2:{port}/to/127.0.0.2:{port}/speech.wav");
    let quote = stack
        .post_json("/run", &run(json!({"audio_url": hop})))
        .await;
    assert_eq!(quote.status(), 402, "{}", quote.text().await.unwrap());
    let served = hits.load(Ordering::SeqCst);

    let good = run(json!({"audio_base64": b64(&silence_wav(2))}));
    for (url, says, reaches_server) in [
        (
            format!("https://localhost:{port}/speech.wav"),
            "loopback address",
            false,
        ),
        (
            "https://10.0.0.1/speech.wav".to_owned(),
            "not one this gateway fetches from",
            false,
        ),
        (
            format!("https://127.0.0.2:{port}/to/localhost:{port}/speech.wav"),
            "redirected to https://localhost",
            true,
        ),
        (
            format!("https://127.0.0.2:{port}/to/169.254.169.254/latest"),
            "not one this gateway fetches from",
            true,
        ),
    ] {
        let before = hits.load(Ordering::SeqCst);
        assert_audio_url_refused(&stack, &good, &url, says).await;
        // Only the allowed first hop of a redirect reaches the server, once per try.
        let reached = hits.load(Ordering::SeqCst) - before;
        assert_eq!(reached, if reaches_server { 2 } else { 0 }, "{url}");
    }
    assert!(served >= 4, "{served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_certificate_is_not_trusted_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let (port, hits) = https_server(certs.path(), espeak_wav("hello")).await;
    let url = format!("https://127.0.0.2:{port}/speech.wav");
    let fetch = |extra: Option<&Path>| {
        let fetcher = InputFetcher::new(&InputsConfig {
            allowed_hosts: vec!["127.0.0.2".into()],
            extra_root_certificates: extra.map(Path::to_owned),
            ..InputsConfig::default()
        })
        .unwrap();
        let url = url.clone();
        std::thread::spawn(move || fetcher.fetch(&url, "audio_url"))
            .join()
            .unwrap()
    };
    // Without the test CA: the handshake fails, the refusal says why, no request is made.
    let refused = fetch(None).unwrap_err();
    assert_eq!(refused.status, 400);
    let why = refused.body["error"].as_str().unwrap();
    assert!(why.contains("certificate"), "{why}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // With it: fetched.
    let fetched = fetch(Some(&certs.path().join("ca.pem"))).unwrap();
    assert_eq!(fetched.media_type.as_deref(), Some("audio/wav"));
    assert_eq!(&fetched.bytes[..4], b"RIFF");
    // A root file that is not PEM fails at start, naming the key.
    std::fs::write(certs.path().join("bad.pem"), "not a certificate").unwrap();
    let error = InputFetcher::new(&InputsConfig {
        extra_root_certificates: Some(certs.path().join("bad.pem")),
        ..InputsConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("inputs.extra_root_certificates"), "{error}");
}
