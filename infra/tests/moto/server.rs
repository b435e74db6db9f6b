//! Starts moto's server on a free loopback port and stops it when dropped.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_kafka::config::RuntimeComponents;
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use wrt_infra::Clients;

pub struct Moto {
    child: Child,
    url: String,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WRT_MOTO_SERVER") {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/wrt/moto-venv/bin/moto_server")
}

impl Moto {
    pub async fn start() -> Result<Self> {
        let bin = binary();
        if !bin.exists() {
            bail!(
                "moto's server is not installed at {}: run `bash .ci/moto` \
                 (or point WRT_MOTO_SERVER at a moto_server binary)",
                bin.display()
            );
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let moto = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("moto_server did not answer on port {port} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(moto)
    }

    /// An SDK configuration that talks to this server with moto's test credentials.
    pub async fn config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .endpoint_url(&self.url)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }
}

/// moto 5.2's MSK answers carry `creationTime` without a UTC offset, which the SDK
/// (rightly) refuses; this test-only HTTP client adds the `Z` before the SDK parses them.
#[derive(Debug, Clone)]
struct MendKafkaTimestamps(SharedHttpClient);

#[derive(Debug, Clone)]
struct MendConnector(SharedHttpConnector);

fn mend(text: &str) -> String {
    const KEY: &str = "\"creationTime\": \"";
    let mut fixed = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let start = at + KEY.len();
        let end = start + rest[start..].find('"').unwrap_or(0);
        fixed.push_str(&rest[..end]);
        if !rest[start..end].ends_with('Z') {
            fixed.push('Z');
        }
        rest = &rest[end..];
    }
    fixed.push_str(rest);
    fixed
}

impl HttpConnector for MendConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.0.clone();
        HttpConnectorFuture::new(async move {
            let mut response = inner.call(request).await?;
            let body = std::mem::replace(response.body_mut(), SdkBody::taken());
            let bytes = ByteStream::new(body)
                .collect()
                .await
                .map_err(|e| ConnectorError::io(e.into()))?
                .into_bytes();
            let mended = mend(&String::from_utf8_lossy(&bytes));
            response
                .headers_mut()
                .insert("content-length", mended.len().to_string());
            *response.body_mut() = SdkBody::from(mended);
            Ok(response)
        })
    }
}

impl HttpClient for MendKafkaTimestamps {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(MendConnector(self.0.http_connector(settings, components)))
    }
}

/// The SDK clients for `config`, with moto's MSK timestamps mended.
pub fn clients(config: &SdkConfig) -> Clients {
    let mut clients = Clients::new(config);
    let http = MendKafkaTimestamps(aws_smithy_http_client::Builder::new().build_http());
    let kafka = aws_sdk_kafka::config::Builder::from(config)
        .http_client(http)
        .build();
    clients.kafka = aws_sdk_kafka::Client::from_conf(kafka);
    clients
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Compares `actual` with `tests/snapshots/<name>`; `UPDATE_SNAPSHOTS=1` rewrites it.
pub fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: rerun with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "{name} changed: rerun with UPDATE_SNAPSHOTS=1 if intended"
    );
}
