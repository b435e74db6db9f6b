//! S3 (or an S3-compatible server) through aws-sdk-s3. Credentials come from the default
//! chain (environment, profile, instance role). Every request has connect, read and
//! per-attempt timeouts, so a hung server fails a request instead of stalling the host; the
//! SDK retries throttling, 5xx and timeouts a few times itself, and the pipeline retries a
//! failed window after a backoff for as long as the outage lasts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use std::collections::BTreeMap;

use super::{ConditionalError, Expect, Sink, SinkError};
use crate::config::S3Sink;
use crate::model::Object;

/// The timeouts and retries of every request to AWS the data path makes (the store's, and
/// the catalog's): connect, read and per-attempt timeouts from the sink's settings, and a
/// few quick attempts per request, since longer outages are the pipeline's to wait out.
pub fn patience(config: &S3Sink) -> (TimeoutConfig, RetryConfig) {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .read_timeout(Duration::from_millis(config.read_timeout_ms))
        .operation_attempt_timeout(Duration::from_millis(config.attempt_timeout_ms))
        .build();
    let retries = RetryConfig::standard()
        .with_max_attempts(3)
        .with_max_backoff(Duration::from_secs(2));
    (timeouts, retries)
}

/// A bucket, with every key under a prefix.
#[derive(Debug, Clone)]
pub struct S3 {
    client: Client,
    bucket: String,
    prefix: String,
    multipart_threshold: usize,
}

impl S3 {
    /// A client for `config`; makes no request.
    pub async fn new(config: &S3Sink) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .load()
            .await;
        let (timeouts, retries) = patience(config);
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        S3 {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            multipart_threshold: (config.multipart_threshold_mb as usize) << 20,
        }
    }

    /// Fails early, with the reason, when the bucket cannot be reached.
    pub async fn check(&self) -> Result<(), SinkError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.error("checking the bucket", "", e))?;
        Ok(())
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(key))
    }

    /// A failed request as a [`SinkError`]: refused when S3 said no for a reason waiting
    /// will not change, otherwise an outage to retry.
    fn error<E>(&self, doing: &str, key: &str, e: SdkError<E>) -> SinkError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let fix = match (status, e.code()) {
            (_, Some("NoSuchBucket")) => Some("create the bucket, or correct sink.bucket"),
            (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken"))
            | (Some(401), _) => Some(
                "check the AWS credentials the host uses (environment, profile or instance role)",
            ),
            // A HEAD's 403 has no body to say which.
            (Some(403), _) => Some(
                "check the AWS credentials the host uses, and that its role may s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket on the bucket",
            ),
            _ => None,
        };
        // What S3 answered, or, when nothing answered, why (connection, timeout).
        let answer = match (status, e.code()) {
            (Some(status), Some(code)) => {
                format!("HTTP {status} {code}: {}", e.message().unwrap_or_default())
            }
            (Some(status), None) => format!("HTTP {status}"),
            (None, _) => chain(&e),
        };
        let location = self.location(key);
        let message = format!("{doing}: {answer}");
        match fix {
            Some(fix) => SinkError::Refused {
                location,
                message: format!("{message}; {fix}"),
            },
            None => SinkError::Store { location, message },
        }
    }

    async fn put_multipart(&self, object: &Object) -> Result<(), SinkError> {
        let key = self.key(&object.key);
        let (content_type, encoding) = content(&object.key);
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(content_type)
            .set_content_encoding(encoding.map(String::from));
        for (name, value) in object.meta.pairs() {
            create = create.metadata(name, value);
        }
        let upload = create
            .send()
            .await
            .map_err(|e| self.error("starting a multipart upload", &object.key, e))?;
        let upload_id = upload.upload_id().unwrap_or_default();
        let mut parts = Vec::new();
        for (n, chunk) in object.body.chunks(self.multipart_threshold).enumerate() {
            let number = n as i32 + 1;
            let sent = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await;
            match sent {
                Ok(part) => parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(String::from))
                        .build(),
                ),
                Err(e) => {
                    // Leave no orphaned parts behind to be billed for.
                    let _ = self
                        .client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(&key)
                        .upload_id(upload_id)
                        .send()
                        .await;
                    return Err(self.error("uploading a part", &object.key, e));
                }
            }
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("completing a multipart upload", &object.key, e))?;
        Ok(())
    }
}

/// An error and its causes, each said once: the SDK's errors often repeat their source's
/// text in their own.
/// An object's content type and encoding, by its key: data objects are gzipped JSON Lines
/// or Parquet, window markers plain JSON.
fn content(key: &str) -> (&'static str, Option<&'static str>) {
    if key.ends_with(".gz") {
        ("application/x-ndjson", Some("gzip"))
    } else if key.ends_with(".parquet") {
        ("application/vnd.apache.parquet", None)
    } else {
        ("application/json", None)
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

impl Sink for S3 {
    async fn put(&self, object: &Object) -> Result<(), SinkError> {
        if object.body.len() > self.multipart_threshold {
            return self.put_multipart(object).await;
        }
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(&object.key))
            .body(ByteStream::from(object.body.clone()));
        let (content_type, encoding) = content(&object.key);
        put = put
            .content_type(content_type)
            .set_content_encoding(encoding.map(String::from));
        for (name, value) in object.meta.pairs() {
            put = put.metadata(name, value);
        }
        put.send()
            .await
            .map_err(|e| self.error("writing", &object.key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(self.get_versioned(key).await?.map(|(bytes, _tag)| bytes))
    }

    async fn delete(&self, key: &str) -> Result<(), SinkError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| self.error("deleting", key, e))?;
        Ok(())
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, SinkError> {
        let got = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await;
        match got {
            Ok(object) => {
                let tag = object.e_tag().unwrap_or_default().to_string();
                let body = object.body.collect().await.map_err(|e| SinkError::Store {
                    location: self.location(key),
                    message: format!("reading: {}", chain(&e)),
                })?;
                Ok(Some((body.to_vec(), tag)))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.error("reading", key, e)),
        }
    }

    async fn put_if(
        &self,
        key: &str,
        body: Vec<u8>,
        expect: Expect<'_>,
    ) -> Result<(), ConditionalError> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .content_type("application/json")
            .body(ByteStream::from(body));
        let put = match expect {
            Expect::Absent => put.if_none_match("*"),
            Expect::Version(tag) => put.if_match(tag),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            // 412: the condition failed; 409: another conditional write to the key is in
            // flight. Either way the other writer won.
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
            {
                Err(ConditionalError::Changed)
            }
            Err(e) => Err(self.error("writing conditionally", key, e).into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, SinkError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.key(prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("listing", prefix, e))?;
            keys.extend(page.contents().iter().filter_map(|o| {
                o.key()
                    .and_then(|k| k.strip_prefix(&self.prefix))
                    .map(String::from)
            }));
        }
        keys.sort();
        Ok(keys)
    }

    async fn metadata(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, SinkError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await;
        match head {
            Ok(head) => Ok(Some(
                head.metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.error("reading the metadata of", key, e)),
        }
    }
}
