//! TLS and mutual TLS on Gatehouse's own listeners (issue 12): Cerbos's `server.tls`
//! keys, client certificates required and verified, certificates rotated on disk picked
//! up without a restart, broken files keeping the previous certificate. Certificates are
//! made at test time by `scripts/gen-test-certs.sh` (openssl).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::util::{Served, within};

const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [view]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

/// Makes the test certificates in `dir` (plus `extra` server certificates).
pub fn make_certs(dir: &Path, extra: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-test-certs.sh");
    let ok = std::process::Command::new("bash")
        .arg(script)
        .arg(dir)
        .args(extra)
        .status()
        .unwrap()
        .success();
    assert!(ok, "gen-test-certs.sh failed");
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One HTTP/1.1 request over TLS, trusting `dir/ca.pem`, presenting `dir/<client>.pem` if
/// given. Returns the response text and the server's certificate, or the error.
async fn tls_request(
    port: u16,
    dir: &Path,
    client: Option<&str>,
    request: &str,
) -> Result<(String, CertificateDer<'static>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&dir.join("ca.pem")) {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(name) => builder
            .with_client_auth_cert(
                certs(&dir.join(format!("{name}.pem"))),
                PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    Ok((String::from_utf8_lossy(&out).into_owned(), cert))
}

const HEALTH: &str = "GET /_cerbos/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

fn check_request() -> String {
    let body = r#"{"requestId":"r","principal":{"id":"u","roles":["user"]},"resources":[{"resource":{"kind":"doc","id":"1"},"actions":["view"]}]}"#;
    format!(
        "POST /api/check/resources HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gh-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/doc.yaml"), POLICY).unwrap();
    dir
}

/// Replaces `to` with a copy of `from`, atomically (as a secret volume update does).
fn swap(dir: &Path, from: &str, to: &str) {
    let tmp = dir.join(format!(".{to}.tmp"));
    std::fs::copy(dir.join(from), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(to)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_mutual_tls_on_the_http_listener_with_rotation() {
    let dir = scratch("mtls");
    make_certs(&dir, &["rotated"]);
    std::fs::write(
        dir.join("gatehouse.yaml"),
        "policies: {directory: policies}\n\
         server:\n  tls: {cert: server.pem, key: server.key, caCert: ca.pem, clientAuth: required, reloadIntervalMs: 100}\n",
    )
    .unwrap();
    let s = Served::start(&dir.join("gatehouse.yaml"), true);
    s.http_up().await;
    // A trusted client certificate: served (health and a decision).
    let (text, first) = tls_request(s.http, &dir, Some("client"), HEALTH)
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (text, _) = tls_request(s.http, &dir, Some("client"), &check_request())
        .await
        .unwrap();
    assert!(text.contains("EFFECT_ALLOW"), "{text}");
    assert_eq!(first, certs(&dir.join("server.pem"))[0]);
    // No certificate, or one from a CA Gatehouse does not trust: refused.
    for client in [None, Some("wrong-client")] {
        let r = tls_request(s.http, &dir, client, HEALTH).await;
        assert!(
            r.as_ref().is_err() || r.as_ref().is_ok_and(|(t, _)| t.is_empty()),
            "{client:?}: {r:?}"
        );
    }
    // Plaintext HTTP on the TLS port: no answer.
    let (_, body) = crate::util::http(s.http, "GET", "/_cerbos/health", None).await;
    assert!(!body.contains("SERVING"), "{body}");

    // The certificate is rotated on disk (key first, then the certificate): new
    // connections get the new one, without a restart.
    swap(&dir, "rotated.key", "server.key");
    swap(&dir, "rotated.pem", "server.pem");
    let rotated = certs(&dir.join("rotated.pem"))[0].clone();
    let port = s.http;
    let d = dir.clone();
    let seen = within(Duration::from_secs(10), || {
        let (d, rotated) = (d.clone(), rotated.clone());
        async move {
            tls_request(port, &d, Some("client"), HEALTH)
                .await
                .is_ok_and(|(t, c)| c == rotated && t.starts_with("HTTP/1.1 200"))
        }
    })
    .await;
    assert!(seen.is_some(), "the rotated certificate was not picked up");

    // A broken certificate file keeps the last good one in force.
    std::fs::write(
        dir.join("server.pem"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (text, cert) = tls_request(s.http, &dir, Some("client"), HEALTH)
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(cert, certs(&dir.join("rotated.pem"))[0]);
}

#[tokio::test]
async fn issue_12_tls_files_that_do_not_load_stop_the_start() {
    let dir = scratch("badstart");
    make_certs(&dir, &[]);
    std::fs::write(
        dir.join("gatehouse.yaml"),
        "policies: {directory: policies}\nserver:\n  tls: {cert: server.pem, key: client.key}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(dir.join("gatehouse.yaml"))
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--admin-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.tls:"), "{err}");
}
