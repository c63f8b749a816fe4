//! A bearer token verified against a JWKS served over https, as identity providers
//! serve them, and resource attributes fetched over https: `gatehouse serve` trusts the
//! system store (here `SSL_CERT_FILE` names a test CA), and a key set behind a
//! certificate it does not trust is never used.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::util::{Served, get_request};

const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it (`server.pem`,
/// `server.key`).
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Gatehouse Test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
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
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

/// An https server on 127.0.0.1 answering every GET with `body`; counts requests.
async fn https_jwks(dir: &Path, body: String) -> (u16, Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (acceptor, body, count) = (acceptor.clone(), body.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                if tls.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, served)
}

fn token() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fastapi");
    let pem = std::fs::read(root.join("dev-private-key.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("dev-1".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://auth.example.test", "aud": "documents-api", "sub": "alice",
        "roles": ["user"], "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn config(dir: &Path, name: &str, port: u16) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(sub.join("policies")).unwrap();
    std::fs::write(sub.join("policies/doc.yaml"), POLICY).unwrap();
    let path = sub.join("gatehouse.yaml");
    std::fs::write(
        &path,
        format!(
            "policies: {{directory: policies}}\n\
             extAuthz:\n  principal:\n    sources:\n      - jwt:\n          \
             jwks: {{url: 'https://127.0.0.1:{port}/jwks.json'}}\n          algorithms: [RS256]\n          \
             issuer: https://auth.example.test\n          audiences: [documents-api]\n  \
             routes:\n  \
             - {{path: '/docs/{{id}}', resource: {{kind: doc, id: '{{id}}'}}, action: read, \
             attributes: {{fetch: {{url: 'https://127.0.0.1:{port}/attrs/{{id}}'}}}}}}\n  \
             - {{path: '/misnamed/{{id}}', resource: {{kind: doc, id: '{{id}}'}}, action: read, \
             attributes: {{fetch: {{url: 'https://localhost:{port}/attrs/{{id}}'}}}}}}\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn jwks_over_https_is_trusted_only_through_the_trust_store() {
    let dir = std::env::temp_dir().join(format!("gh-jwks-https-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let jwks = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fastapi/dev-jwks.json"),
    )
    .unwrap();
    let (port, served) = https_jwks(&dir, jwks).await;
    let bearer = format!("Bearer {}", token());
    let request = || get_request("/docs/1", &[("authorization", bearer.as_str())]);

    // The test CA is trusted (SSL_CERT_FILE): the key set is fetched over TLS and the
    // token verified.
    let trusting = Served::start_with_env(
        &config(&dir, "trusting", port),
        false,
        &[("SSL_CERT_FILE", &dir.join("ca.pem"))],
    );
    let r = trusting
        .ext_authz()
        .await
        .check(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status.map(|s| s.code), Some(0), "allowed");
    assert!(
        served.load(Ordering::SeqCst) >= 2,
        "the key set and the resource attributes came over https"
    );

    // The certificate names 127.0.0.1, not localhost: that attribute source is refused
    // and the request denied.
    let before = served.load(Ordering::SeqCst);
    let r = trusting
        .ext_authz()
        .await
        .check(get_request(
            "/misnamed/1",
            &[("authorization", bearer.as_str())],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(7), "denied");
    let reason = r.status.map(|s| s.message).unwrap_or_default();
    assert!(reason.contains("certificate"), "{reason}");
    assert_eq!(served.load(Ordering::SeqCst), before);

    // Without the CA, the certificate is not trusted: the key set cannot be loaded, so
    // Gatehouse refuses to start (rather than accept tokens it cannot verify).
    let before = served.load(Ordering::SeqCst);
    // (Run off this test's runtime thread, which also serves the key set.)
    let distrusting = config(&dir, "distrusting", port);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--config"])
            .arg(distrusting)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        before,
        "no request completed over an untrusted connection"
    );
    drop(trusting);
    let _ = std::fs::remove_dir_all(&dir);
}
