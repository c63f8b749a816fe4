//! Shared helpers for the integration tests.

use std::path::{Path, PathBuf};

/// The conformance corpus: `GATEHOUSE_CONFORMANCE_DIR`, or `../shared/conformance`.
/// `None` (with a message) when it is absent outside CI; a panic when absent under `CI=true`.
pub fn corpus_dir(part: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("GATEHOUSE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    if dir.join("README.md").exists() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{part}: conformance corpus not found at {} (CI=true)",
            dir.display()
        );
    }
    println!(
        "{part}: SKIPPED, conformance corpus not found at {}",
        dir.display()
    );
    None
}

/// Reads every YAML document of a file as JSON values.
pub fn yaml_docs(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Reads a JSON file.
pub fn json_file(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files in a directory with an extension, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// A tiny HTTP attribute source on 127.0.0.1: `GET /attrs/{id}` answers the JSON that
/// `lookup(id)` gives, or 404. Returns its address.
pub async fn attribute_source(lookup: fn(&str) -> Option<&'static str>) -> std::net::SocketAddr {
    attribute_source_with_delay(lookup, std::time::Duration::ZERO).await
}

/// [`attribute_source`] that waits `delay` before each answer (requests in flight).
pub async fn attribute_source_with_delay(
    lookup: fn(&str) -> Option<&'static str>,
    delay: std::time::Duration,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = match path.strip_prefix("/attrs/").and_then(lookup) {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", "{}"),
                };
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls until `f` holds, for at most `limit`; returns how long it took.
pub async fn within<F, Fut>(limit: std::time::Duration, mut f: F) -> Option<std::time::Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if f().await {
            return Some(t.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    None
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; returns the status code and body.
pub async fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_with_headers(port, method, path, &[], body).await
}

/// [`http`] with extra request headers.
pub async fn http_with_headers(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\n{extra}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    sock.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, rest) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (code, body)
}

/// The body of a `transfer-encoding: chunked` HTTP/1.1 message.
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A `gatehouse serve` child process on free 127.0.0.1 ports, killed on drop (with its
/// working directory, when it owns one).
pub struct Served {
    /// The process.
    pub child: std::process::Child,
    /// ext_authz, Cerbos gRPC and health.
    pub grpc: u16,
    /// Cerbos HTTP and health.
    pub http: u16,
    /// Status, metrics, the assertion JWKS.
    pub admin: u16,
    /// The directory of its configuration, removed on drop when `owns_dir`.
    pub dir: PathBuf,
    owns_dir: bool,
}

impl Served {
    /// Starts `gatehouse serve --config <config>` (stdout and stderr discarded).
    pub fn start(config: &Path, owns_dir: bool) -> Served {
        Served::start_with_env(config, owns_dir, &[])
    }

    /// [`start`](Self::start) with extra environment variables.
    pub fn start_with_env(config: &Path, owns_dir: bool, env: &[(&str, &Path)]) -> Served {
        Served::spawn(config, owns_dir, env, std::process::Stdio::null())
    }

    /// [`start`](Self::start) with standard output (where the audit log goes by default)
    /// written to `stdout`.
    pub fn start_with_stdout(config: &Path, owns_dir: bool, stdout: std::fs::File) -> Served {
        Served::spawn(config, owns_dir, &[], stdout.into())
    }

    fn spawn(
        config: &Path,
        owns_dir: bool,
        env: &[(&str, &Path)],
        stdout: std::process::Stdio,
    ) -> Served {
        let (grpc, http, admin) = (free_port(), free_port(), free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .envs(env.iter().copied())
            .args(["serve", "--config"])
            .arg(config)
            .args([
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
                "--http-addr",
                &format!("127.0.0.1:{http}"),
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
            ])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_SDK_DISABLED")
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Served {
            child,
            grpc,
            http,
            admin,
            dir: config.parent().unwrap().to_path_buf(),
            owns_dir,
        }
    }

    /// [`start`](Self::start) with the soft limit of open files set to `nofile`.
    pub fn start_with_fd_limit(config: &Path, owns_dir: bool, nofile: u32) -> Served {
        let (grpc, http, admin) = (free_port(), free_port(), free_port());
        let child = std::process::Command::new("sh")
            .args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--config"])
            .arg(config)
            .args([
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
                "--http-addr",
                &format!("127.0.0.1:{http}"),
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
            ])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Served {
            child,
            grpc,
            http,
            admin,
            dir: config.parent().unwrap().to_path_buf(),
            owns_dir,
        }
    }

    /// Starts a server in a fresh scratch directory (removed on drop) holding
    /// `policies/doc.yaml` = `policy` and `gatehouse.yaml` = `config`.
    pub fn in_scratch_dir(name: &str, policy: &str, config: &str) -> Served {
        let dir = std::env::temp_dir().join(format!("gh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::write(dir.join("policies/doc.yaml"), policy).unwrap();
        std::fs::write(dir.join("gatehouse.yaml"), config).unwrap();
        Served::start(&dir.join("gatehouse.yaml"), true)
    }

    /// An ext_authz client, once the server accepts connections (10 s at most).
    pub async fn ext_authz(
        &self,
    ) -> gatehouse::extauthz::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        tonic::transport::Channel,
    >{
        use gatehouse::extauthz::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
        for _ in 0..200 {
            if let Ok(c) =
                AuthorizationClient::connect(format!("http://127.0.0.1:{}", self.grpc)).await
            {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("gatehouse did not start");
    }

    /// Waits until the HTTP listener accepts connections (10 s at most).
    pub async fn http_up(&self) {
        let up = within(std::time::Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", self.http))
                .await
                .is_ok()
        })
        .await;
        assert!(up.is_some(), "gatehouse did not start");
    }

    /// `GET /_gatehouse/status`.
    pub async fn status(&self) -> serde_json::Value {
        let (_, body) = http(self.admin, "GET", "/_gatehouse/status", None).await;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Sends `signal` (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.wait_exit().await
    }

    /// Waits for the process to exit; returns the exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let mut child = std::mem::replace(
            &mut self.child,
            std::process::Command::new("true").spawn().unwrap(),
        );
        tokio::task::spawn_blocking(move || child.wait().unwrap().code())
            .await
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An ext_authz CheckRequest for `GET path` with `headers`.
pub fn get_request(
    path: &str,
    headers: &[(&str, &str)],
) -> gatehouse::extauthz::pb::envoy::service::auth::v3::CheckRequest {
    check_request("GET", path, headers)
}

/// An ext_authz CheckRequest for `method path` with `headers`.
pub fn check_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> gatehouse::extauthz::pb::envoy::service::auth::v3::CheckRequest {
    use gatehouse::extauthz::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Request,
    };
    use gatehouse::extauthz::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// `r` with Envoy's request id set to `id`.
pub fn with_request_id(
    mut r: gatehouse::extauthz::pb::envoy::service::auth::v3::CheckRequest,
    id: &str,
) -> gatehouse::extauthz::pb::envoy::service::auth::v3::CheckRequest {
    if let Some(http) = r
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.id = id.into();
    }
    r
}
