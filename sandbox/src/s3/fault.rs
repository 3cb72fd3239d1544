//! Faults on demand: an endpoint, or one bucket of it, that stops answering
//! like a healthy S3, so that a Velero `BackupStorageLocation` goes
//! `Unavailable` in tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use http::{HeaderValue, StatusCode, header};
use s3s::{Body, HttpResponse};

/// Shared between the server task and the handle that flips it.
#[derive(Debug, Default)]
pub(crate) struct FaultSwitch {
    unavailable: AtomicBool,
    buckets: Mutex<HashSet<String>>,
}

impl FaultSwitch {
    pub(crate) fn set_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }

    pub(crate) fn is_unavailable(&self) -> bool {
        self.unavailable.load(Ordering::SeqCst)
    }

    pub(crate) fn set_bucket_unavailable(&self, bucket: &str, on: bool) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if on {
            buckets.insert(bucket.to_owned());
        } else {
            buckets.remove(bucket);
        }
    }

    pub(crate) fn is_bucket_unavailable(&self, bucket: &str) -> bool {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(bucket)
    }

    /// Whether a request for this (path-style) URI path must fail.
    pub(crate) fn blocks(&self, path: &str) -> bool {
        if self.is_unavailable() {
            return true;
        }
        let bucket = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        !bucket.is_empty() && self.is_bucket_unavailable(bucket)
    }
}

/// The answer S3 gives when it cannot serve: 503 with an S3 XML error body,
/// so clients classify it as a retryable server error, not a protocol error.
pub(crate) fn unavailable_response() -> HttpResponse {
    let body = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        "<Error><Code>ServiceUnavailable</Code>",
        "<Message>The sandbox S3 endpoint is switched to unavailable (fault injection).</Message>",
        "</Error>"
    );
    let mut resp = HttpResponse::new(Body::from(body.to_owned()));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}
