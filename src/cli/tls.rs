//! TLS on Gatehouse's own listeners (`server.tls`, Cerbos's keys `cert`, `key` and
//! `caCert`): rustls with the ring provider, optional or required client certificates,
//! and the files followed so that a rotated certificate (cert-manager, a Kubernetes
//! secret's symbolic link swap) is used for new connections without a restart.
//!
//! A file that changed is read again on the next poll; a pair that does not load (a key
//! written after its certificate, a broken file) keeps the last good configuration in
//! force and is logged, then tried again when the files change again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::config::{ClientAuth, TlsSection};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Largest certificate, key or CA file read (bytes).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the material.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA set is unusable.
    #[error("server.tls.caCert: {0}")]
    ClientVerifier(String),
}

impl TlsSection {
    /// The paths resolved against `base` (the configuration file's directory).
    pub(crate) fn resolve(mut self, base: &Path) -> TlsSection {
        self.cert = base.join(&self.cert);
        self.key = base.join(&self.key);
        self.ca_cert = self.ca_cert.map(|p| base.join(p));
        self
    }

    /// Checks the section itself (the files are read by [`ListenerTls::load`]).
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.client_auth == ClientAuth::Required && self.ca_cert.is_none() {
            return Err("server.tls.clientAuth: required needs server.tls.caCert".into());
        }
        Ok(())
    }

    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert.as_path(), self.key.as_path()];
        files.extend(self.ca_cert.as_deref());
        files
    }
}

/// Reads a PEM file, refusing anything but a regular file of at most 1 MiB.
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let err = |message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(err(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(err(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(bytes)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::File {
            path: path.display().to_string(),
            message: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.display().to_string(),
            message: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// A rustls server configuration built from the files of `section`, offering `alpn`.
fn server_config(section: &TlsSection, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&section.cert)?;
    let key_bytes = read_pem(&section.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::File {
        path: section.key.display().to_string(),
        message: format!("no PEM private key: {e}"),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &section.ca_cert {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = match section.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            }
            .build()
            .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// What identifies a file's content without reading it: device, inode, size, mtime.
type Stamp = Vec<Option<(u64, u64, u64, i64, i64)>>;

fn stamp(files: &[&Path]) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

/// The TLS configuration of one listener, replaced when its files change.
#[derive(Clone)]
pub(crate) struct ListenerTls {
    current: Arc<ArcSwap<ServerConfig>>,
    section: Arc<TlsSection>,
    alpn: &'static [&'static [u8]],
    name: &'static str,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("listener", &self.name)
            .finish_non_exhaustive()
    }
}

/// ALPN of the gRPC listener: HTTP/2 only.
pub(crate) const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of the HTTP listener: HTTP/2 and HTTP/1.1.
pub(crate) const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

impl ListenerTls {
    /// Loads the files of `section` for the listener `name` (for logs).
    pub(crate) fn load(
        section: &TlsSection,
        alpn: &'static [&'static [u8]],
        name: &'static str,
    ) -> Result<ListenerTls, TlsError> {
        let config = server_config(section, alpn)?;
        Ok(ListenerTls {
            current: Arc::new(ArcSwap::from_pointee(config)),
            section: Arc::new(section.clone()),
            alpn,
            name,
        })
    }

    /// An acceptor with the configuration in force.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Follows the files until the process ends: when they change, the configuration is
    /// rebuilt and used for new connections (connections already open keep theirs).
    pub(crate) async fn watch(self) {
        let interval = Duration::from_millis(self.section.reload_interval_ms.max(10));
        let mut seen = stamp(&self.section.files());
        loop {
            tokio::time::sleep(interval).await;
            let now = stamp(&self.section.files());
            if now == seen {
                continue;
            }
            seen = now;
            self.reload();
        }
    }

    /// Reads the files again; on failure the configuration in force stays.
    pub(crate) fn reload(&self) -> bool {
        match server_config(&self.section, self.alpn) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                tracing::info!(listener = self.name, cert = %self.section.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(listener = self.name, error = %e, "TLS files do not load; the previous certificate stays in force");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(dir: &Path, ca: bool, auth: ClientAuth) -> TlsSection {
        TlsSection {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca_cert: ca.then(|| dir.join("ca.pem")),
            client_auth: auth,
            reload_interval_ms: 10,
        }
    }

    #[test]
    fn issue_12_bad_files_are_errors_and_keep_the_last_good_config() {
        let dir = std::env::temp_dir().join(format!("gh-tls-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.pem"), "not pem").unwrap();
        std::fs::write(dir.join("server.key"), "").unwrap();
        let s = section(&dir, false, ClientAuth::Optional);
        let e = ListenerTls::load(&s, ALPN_HTTP, "http").unwrap_err();
        assert!(e.to_string().contains("server.pem"), "{e}");
        let missing = section(&dir.join("nope"), false, ClientAuth::Optional);
        assert!(ListenerTls::load(&missing, ALPN_HTTP, "http").is_err());
        let bad = section(&dir, false, ClientAuth::Required);
        assert_eq!(
            bad.validate().unwrap_err(),
            "server.tls.clientAuth: required needs server.tls.caCert"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
