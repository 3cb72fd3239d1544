//! The sandbox's S3 measured against an independent S3 server: versitygw
//! (`versitygw posix`, built from its Go module by `scripts/realstack`).
//!
//! Every scenario sends the same raw, SigV4-signed requests — exact paths and
//! query strings, as rclone, the AWS CLI, Velero's AWS plugin and
//! `object_store` send them — to both servers and records what a client reads
//! of each answer: status, error code, the headers clients use, and the
//! listing's keys, common prefixes and pages. The two records must agree but
//! for the differences listed in [`KNOWN`] (each explained in
//! `docs/sandbox.md`, "S3 measured against versitygw"); a few facts of S3 are
//! also asserted outright, so the test fails even where both servers were
//! wrong alike.
//!
//! Requests are signed with `object_store`'s SigV4 signer (`AwsAuthorizer`):
//! its own client cannot send an empty `delimiter=` or a bare `?uploads`.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use ferry_sandbox::s3::S3Server;
use ferry_testkit::versitygw::RealVersityGw;
use md5::{Digest, Md5};
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequest;

/// Differences between the sandbox (left) and versitygw (right) that are
/// known and explained in `docs/sandbox.md` ("S3 measured against
/// versitygw"): a difference is allowed when its step starts with the first
/// text and its field is the second (`""`: any field).
const KNOWN: &[(&str, &str)] = &[
    // Both refuse a key with a `..` segment; each in its own words.
    ("objects: put dot-segment key \"../up.txt\"", ""),
    // versitygw ignores encoding-type=url (and does not echo it); S3 encodes.
    ("list: v2 url encoding", ""),
    ("list: v1 url encoding", ""),
    // versitygw names a v1 NextMarker without a delimiter; S3 only with one.
    ("list: v1 pages of 3 page", "x:ListBucketResult/NextMarker"),
    (
        "list: v1 pages of 1 empty delimiter page",
        "x:ListBucketResult/NextMarker",
    ),
    // versitygw completes an upload id it does not know (200); S3: NoSuchUpload.
    ("multipart: complete again", ""),
    ("multipart: complete an unknown upload", ""),
];

fn known(difference: &(String, String)) -> bool {
    let (step, field) = difference;
    KNOWN
        .iter()
        .any(|(s, f)| step.starts_with(s) && (f.is_empty() || field.starts_with(f)))
}

/// One server as the scenarios see it.
struct Target {
    name: &'static str,
    endpoint: String,
    credential: AwsCredential,
    region: String,
    http: reqwest::Client,
}

/// What a client reads of one answer, field by field (`status`, `code`,
/// `h:<header>`, `x:<element path>`), in a stable order.
type Answer = BTreeMap<String, String>;

/// Every answer of a run, by step name, in the order sent.
type Record = Vec<(String, Answer)>;

/// A request: method, path (already percent-encoded, from `/`), the raw
/// query string, extra headers, body, and whether its payload is signed.
struct Req {
    method: http::Method,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    signed_payload: bool,
    /// Sign this SHA-256 as the payload's instead of the body's own.
    claimed_digest: Option<[u8; 32]>,
    secret: Option<String>,
}

impl Req {
    fn new(method: http::Method, path: impl Into<String>) -> Self {
        Req {
            method,
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: Bytes::new(),
            signed_payload: true,
            claimed_digest: None,
            secret: None,
        }
    }
    fn get(path: impl Into<String>) -> Self {
        Self::new(http::Method::GET, path)
    }
    fn put(path: impl Into<String>, body: impl Into<Bytes>) -> Self {
        let mut r = Self::new(http::Method::PUT, path);
        r.body = body.into();
        r
    }
    fn query(mut self, q: &str) -> Self {
        self.query = q.to_owned();
        self
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    fn unsigned_payload(mut self) -> Self {
        self.signed_payload = false;
        self
    }
}

/// S3's URI encoding of a key for a path: every byte but the unreserved
/// ones and `/` as `%XX`.
fn enc(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The same for a query value (`/` encoded too).
fn qenc(value: &str) -> String {
    enc(value).replace('/', "%2F")
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Target {
    /// Sends `req` signed with SigV4 (or unsigned, when `secret` is `Some("")`).
    async fn send(&self, req: Req) -> Result<(u16, http::HeaderMap, Bytes)> {
        let url = if req.query.is_empty() {
            format!("{}{}", self.endpoint, req.path)
        } else {
            format!("{}{}?{}", self.endpoint, req.path, req.query)
        };
        let mut signed: HttpRequest = http::Request::builder()
            .method(req.method.clone())
            .uri(&url)
            .body(req.body.clone().into())
            .with_context(|| format!("building the request {url}"))?;
        for (name, value) in &req.headers {
            signed.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes())?,
                http::HeaderValue::from_str(value)?,
            );
        }
        let credential = AwsCredential {
            key_id: self.credential.key_id.clone(),
            secret_key: req
                .secret
                .clone()
                .unwrap_or_else(|| self.credential.secret_key.clone()),
            token: None,
        };
        if req.secret.as_deref() != Some("") {
            AwsAuthorizer::new(&credential, "s3", &self.region)
                .with_sign_payload(req.signed_payload)
                .try_authorize(&mut signed, req.claimed_digest.as_ref().map(|d| &d[..]))
                .with_context(|| format!("signing {url}"))?;
        }
        let mut out = self.http.request(req.method, &url).body(req.body);
        for (name, value) in signed.headers() {
            out = out.header(name, value);
        }
        let resp = out
            .send()
            .await
            .with_context(|| format!("{}: sending {url}", self.name))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("{}: reading the answer to {url}", self.name))?;
        Ok((status, headers, body))
    }
}

/// The XML answer as `(path, text)` leaves in document order, e.g.
/// `ListBucketResult/Contents/Key`.
fn xml_leaves(body: &[u8]) -> Result<Vec<(String, String)>> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut leaves = Vec::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf)? {
            Event::Start(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                leaves.push((format!("{}/{name}", path.join("/")), String::new()));
            }
            Event::Text(t) => text.push_str(&t.decode()?),
            Event::GeneralRef(r) => text.push_str(&format!("&{};", r.decode()?)),
            Event::End(_) => {
                leaves.push((
                    path.join("/"),
                    quick_xml::escape::unescape(&text)?.into_owned(),
                ));
                text.clear();
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    // Only leaves: an element with children leaves an empty text behind.
    let parents: Vec<String> = leaves.iter().map(|(p, _)| p.clone()).collect();
    leaves.retain(|(p, _)| !parents.iter().any(|q| q.starts_with(&format!("{p}/"))));
    Ok(leaves)
}

/// The headers clients read of an object or an upload.
const HEADERS: &[&str] = &[
    "content-length",
    "content-type",
    "content-range",
    "accept-ranges",
    "etag",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "x-amz-meta-color",
    "x-amz-meta-unicode",
];

/// Elements of an XML answer worth comparing (the rest — owners, request
/// ids, dates, upload ids — differ by nature).
const ELEMENTS: &[&str] = &[
    "Error/Code",
    "ListBucketResult/Name",
    "ListBucketResult/Prefix",
    "ListBucketResult/Delimiter",
    "ListBucketResult/MaxKeys",
    "ListBucketResult/KeyCount",
    "ListBucketResult/IsTruncated",
    "ListBucketResult/Marker",
    "ListBucketResult/NextMarker",
    "ListBucketResult/StartAfter",
    "ListBucketResult/EncodingType",
    "ListBucketResult/Contents/Key",
    "ListBucketResult/Contents/Size",
    "ListBucketResult/Contents/ETag",
    "ListBucketResult/Contents/StorageClass",
    "ListBucketResult/CommonPrefixes/Prefix",
    "ListAllMyBucketsResult/Buckets/Bucket/Name",
    "InitiateMultipartUploadResult/Bucket",
    "InitiateMultipartUploadResult/Key",
    "CompleteMultipartUploadResult/Bucket",
    "CompleteMultipartUploadResult/Key",
    "CompleteMultipartUploadResult/ETag",
    "ListPartsResult/Bucket",
    "ListPartsResult/Key",
    "ListPartsResult/Part/PartNumber",
    "ListPartsResult/Part/ETag",
    "ListPartsResult/Part/Size",
    "ListPartsResult/IsTruncated",
    "ListMultipartUploadsResult/Upload/Key",
    "DeleteResult/Deleted/Key",
    "DeleteResult/Error/Key",
    "DeleteResult/Error/Code",
    "CopyObjectResult/ETag",
];

/// What a client reads of an answer.
fn answer(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Result<Answer> {
    let mut a = Answer::new();
    a.insert("status".into(), status.to_string());
    let xml = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("xml"))
        || body.starts_with(b"<");
    for name in HEADERS {
        // The length of an XML answer says nothing a client reads.
        if xml && *name == "content-length" {
            continue;
        }
        if let Some(v) = headers.get(*name) {
            a.insert(
                format!("h:{name}"),
                v.to_str().unwrap_or("<not text>").to_owned(),
            );
        }
    }
    if xml && !body.is_empty() {
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, text) in xml_leaves(body)? {
            if ELEMENTS.contains(&path.as_str()) {
                fields.entry(path).or_default().push(text);
            }
        }
        for (path, values) in fields {
            a.insert(format!("x:{path}"), values.join(" | "));
        }
    } else if !body.is_empty() {
        a.insert(
            "body".into(),
            format!("{} bytes, md5 {}", body.len(), md5_hex(body)),
        );
    }
    Ok(a)
}

/// Sends requests and records their answers under step names.
struct Run<'a> {
    target: &'a Target,
    /// The scenario running: step names are recorded under it.
    scenario: &'static str,
    record: Record,
}

impl Run<'_> {
    async fn send(&mut self, step: &str, req: Req) -> Result<Answer> {
        let (status, headers, body) = self.target.send(req).await?;
        let a = answer(status, &headers, &body)
            .with_context(|| format!("{}: reading the answer of step {step}", self.target.name))?;
        self.record
            .push((format!("{}: {step}", self.scenario), a.clone()));
        Ok(a)
    }

    /// Lists through every page (v2 continuation tokens, or v1 markers),
    /// recording each page; the tokens themselves are each server's own.
    async fn list_pages(&mut self, step: &str, path: &str, query: &str, v1: bool) -> Result<()> {
        let mut next: Option<String> = None;
        for page in 1..=50 {
            let q = match (&next, v1) {
                (None, _) => query.to_owned(),
                (Some(t), false) => format!("{query}&continuation-token={}", qenc(t)),
                (Some(m), true) => format!("{query}&marker={}", qenc(m)),
            };
            let (status, headers, body) = self.target.send(Req::get(path).query(&q)).await?;
            let mut a = answer(status, &headers, &body)?;
            let leaves = xml_leaves(&body)?;
            let value = |p: &str| {
                leaves
                    .iter()
                    .filter(|(q, _)| q == p)
                    .map(|(_, v)| v.clone())
                    .next_back()
            };
            let truncated = value("ListBucketResult/IsTruncated").as_deref() == Some("true");
            a.insert(
                "has next token".into(),
                value("ListBucketResult/NextContinuationToken")
                    .is_some()
                    .to_string(),
            );
            a.remove("x:ListBucketResult/Marker");
            self.record
                .push((format!("{}: {step} page {page}", self.scenario), a));
            if !truncated {
                return Ok(());
            }
            next = if v1 {
                value("ListBucketResult/NextMarker")
                    .or_else(|| value("ListBucketResult/Contents/Key"))
            } else {
                value("ListBucketResult/NextContinuationToken")
            };
            if next.is_none() {
                bail!(
                    "{}: {step} page {page} is truncated but names nowhere to go on from",
                    self.target.name
                );
            }
        }
        bail!("{}: {step} did not end within 50 pages", self.target.name)
    }
}

/// Keys that need care in a path, a listing and a file system.
const KEYS: &[&str] = &[
    "a.txt",
    "dir/b.txt",
    "dir/sub/c.txt",
    "dir/sub/d.txt",
    "dir2/e.txt",
    "space key.txt",
    "unicode/ü-ñ-日本.txt",
    "plus+sign.txt",
    "per%25cent.txt",
    "tilde~and(paren)!.txt",
];

/// A bucket name unique to this run (both servers get the same names).
fn bucket(suffix: &str) -> String {
    format!("ferry-conf-{suffix}")
}

async fn buckets(run: &mut Run<'_>) -> Result<()> {
    let b = bucket("buckets");
    run.send("create bucket", Req::put(format!("/{b}"), Bytes::new()))
        .await?;
    run.send("create it again", Req::put(format!("/{b}"), Bytes::new()))
        .await?;
    run.send("create Bad_Name", Req::put("/Bad_Name", Bytes::new()))
        .await?;
    run.send("head bucket", Req::new(http::Method::HEAD, format!("/{b}")))
        .await?;
    run.send(
        "head missing bucket",
        Req::new(http::Method::HEAD, "/ferry-conf-missing"),
    )
    .await?;
    run.send(
        "list missing bucket",
        Req::get("/ferry-conf-missing").query("list-type=2"),
    )
    .await?;
    run.send("list buckets", Req::get("/")).await?;
    run.send(
        "put into missing bucket",
        Req::put("/ferry-conf-missing/k", "x"),
    )
    .await?;
    run.send("put k", Req::put(format!("/{b}/k"), "x")).await?;
    run.send(
        "delete non-empty bucket",
        Req::new(http::Method::DELETE, format!("/{b}")),
    )
    .await?;
    run.send(
        "delete k",
        Req::new(http::Method::DELETE, format!("/{b}/k")),
    )
    .await?;
    run.send(
        "delete empty bucket",
        Req::new(http::Method::DELETE, format!("/{b}")),
    )
    .await?;
    run.send(
        "delete missing bucket",
        Req::new(http::Method::DELETE, format!("/{b}")),
    )
    .await?;
    Ok(())
}

async fn objects(run: &mut Run<'_>) -> Result<()> {
    let b = bucket("objects");
    run.send("create", Req::put(format!("/{b}"), Bytes::new()))
        .await?;
    for key in KEYS {
        let body = format!("body of {key}");
        run.send(
            &format!("put {key:?}"),
            Req::put(format!("/{b}/{}", enc(key)), body),
        )
        .await?;
    }
    for key in KEYS {
        run.send(
            &format!("get {key:?}"),
            Req::get(format!("/{b}/{}", enc(key))),
        )
        .await?;
    }
    let meta = format!("/{b}/{}", enc("meta/with metadata.bin"));
    run.send(
        "put with metadata",
        Req::put(&meta, "0123456789abcdef")
            .header("content-type", "application/x-ferry")
            .header("cache-control", "no-cache")
            .header("content-disposition", "attachment; filename=\"m.bin\"")
            .header("x-amz-meta-color", "blue"),
    )
    .await?;
    run.send("head with metadata", Req::new(http::Method::HEAD, &meta))
        .await?;
    run.send("get with metadata", Req::get(&meta)).await?;
    run.send(
        "get range 2-5",
        Req::get(&meta).header("range", "bytes=2-5"),
    )
    .await?;
    run.send(
        "get range suffix 3",
        Req::get(&meta).header("range", "bytes=-3"),
    )
    .await?;
    run.send(
        "get range from 10",
        Req::get(&meta).header("range", "bytes=10-"),
    )
    .await?;
    run.send(
        "get range past the end",
        Req::get(&meta).header("range", "bytes=100-200"),
    )
    .await?;
    run.send(
        "head range 2-5",
        Req::new(http::Method::HEAD, &meta).header("range", "bytes=2-5"),
    )
    .await?;
    run.send(
        "head missing key",
        Req::new(http::Method::HEAD, format!("/{b}/nope")),
    )
    .await?;
    run.send("get missing key", Req::get(format!("/{b}/nope")))
        .await?;
    run.send("get a prefix that is no key", Req::get(format!("/{b}/dir")))
        .await?;
    run.send(
        "put unsigned payload",
        Req::put(format!("/{b}/unsigned"), "unsigned body").unsigned_payload(),
    )
    .await?;
    run.send("get unsigned", Req::get(format!("/{b}/unsigned")))
        .await?;
    run.send("overwrite", Req::put(format!("/{b}/unsigned"), "replaced"))
        .await?;
    run.send("get overwritten", Req::get(format!("/{b}/unsigned")))
        .await?;
    run.send(
        "put empty object",
        Req::put(format!("/{b}/empty"), Bytes::new()),
    )
    .await?;
    run.send("get empty object", Req::get(format!("/{b}/empty")))
        .await?;
    let copy = Req::put(format!("/{b}/copied"), Bytes::new()).header(
        "x-amz-copy-source",
        &format!("/{b}/{}", enc("meta/with metadata.bin")),
    );
    run.send("copy object", copy).await?;
    run.send(
        "head copied",
        Req::new(http::Method::HEAD, format!("/{b}/copied")),
    )
    .await?;
    // A `/` sent as `%2F`, signed over the path as sent: both servers
    // canonicalise the decoded key and refuse the signature (403).
    run.send(
        "put with an encoded slash",
        Req::put(format!("/{b}/enc%2Fslash.txt"), "encoded"),
    )
    .await?;
    run.send(
        "get it with a plain slash",
        Req::get(format!("/{b}/enc/slash.txt")),
    )
    .await?;
    for key in ["../up.txt", "a/../b.txt", "./here.txt"] {
        // `/` encoded: a URL parser would resolve the dot segments otherwise.
        let path = format!("/{b}/{}", enc(key).replace('/', "%2F"));
        run.send(
            &format!("put dot-segment key {key:?}"),
            Req::put(path, "dots"),
        )
        .await?;
    }
    Ok(())
}

async fn auth(run: &mut Run<'_>) -> Result<()> {
    let b = bucket("auth");
    run.send("create", Req::put(format!("/{b}"), Bytes::new()))
        .await?;
    let mut wrong = Req::put(format!("/{b}/k"), "x");
    wrong.secret = Some("not-the-secret".into());
    run.send("wrong secret", wrong).await?;
    let mut anonymous = Req::get(format!("/{b}/k"));
    anonymous.secret = Some(String::new());
    run.send("anonymous get", anonymous).await?;
    let mut lying = Req::put(format!("/{b}/k"), "x");
    lying.claimed_digest = Some([0; 32]);
    run.send("payload hash that does not match", lying).await?;
    run.send("get after refusals", Req::get(format!("/{b}/k")))
        .await?;
    Ok(())
}

async fn listings(run: &mut Run<'_>) -> Result<()> {
    let b = bucket("list");
    run.send("create", Req::put(format!("/{b}"), Bytes::new()))
        .await?;
    for key in KEYS {
        run.send(
            &format!("put {key:?}"),
            Req::put(format!("/{b}/{}", enc(key)), *key),
        )
        .await?;
    }
    let p = format!("/{b}");
    for (v, base) in [("v2", "list-type=2"), ("v1", "")] {
        let v1 = v == "v1";
        let q = |rest: &str| match (base.is_empty(), rest.is_empty()) {
            (true, _) => rest.to_owned(),
            (false, true) => base.to_owned(),
            (false, false) => format!("{base}&{rest}"),
        };
        run.send(&format!("{v} all"), Req::get(&p).query(&q("")))
            .await?;
        run.send(
            &format!("{v} delimiter /"),
            Req::get(&p).query(&q("delimiter=%2F")),
        )
        .await?;
        run.send(
            &format!("{v} empty delimiter"),
            Req::get(&p).query(&q("delimiter=")),
        )
        .await?;
        run.send(
            &format!("{v} prefix dir/"),
            Req::get(&p).query(&q("prefix=dir%2F")),
        )
        .await?;
        run.send(
            &format!("{v} prefix dir/ delimiter /"),
            Req::get(&p).query(&q("delimiter=%2F&prefix=dir%2F")),
        )
        .await?;
        run.send(
            &format!("{v} prefix dir delimiter /"),
            Req::get(&p).query(&q("delimiter=%2F&prefix=dir")),
        )
        .await?;
        run.send(
            &format!("{v} prefix nothing"),
            Req::get(&p).query(&q("prefix=zzz")),
        )
        .await?;
        run.send(
            &format!("{v} max-keys 0"),
            Req::get(&p).query(&q("max-keys=0")),
        )
        .await?;
        run.send(
            &format!("{v} url encoding"),
            Req::get(&p).query(&q("encoding-type=url")),
        )
        .await?;
        run.send(
            &format!("{v} url encoding delimiter /"),
            Req::get(&p).query(&q("delimiter=%2F&encoding-type=url")),
        )
        .await?;
        run.send(
            &format!("{v} delimiter .txt"),
            Req::get(&p).query(&q("delimiter=.txt")),
        )
        .await?;
        run.list_pages(&format!("{v} pages of 3"), &p, &q("max-keys=3"), v1)
            .await?;
        run.list_pages(
            &format!("{v} pages of 2 delimiter /"),
            &p,
            &q("delimiter=%2F&max-keys=2"),
            v1,
        )
        .await?;
        run.list_pages(
            &format!("{v} pages of 1 empty delimiter"),
            &p,
            &q("delimiter=&max-keys=1"),
            v1,
        )
        .await?;
    }
    run.send(
        "v2 start-after dir/sub/",
        Req::get(&p).query("list-type=2&start-after=dir%2Fsub%2F"),
    )
    .await?;
    run.send(
        "v1 marker dir/sub/c.txt",
        Req::get(&p).query("marker=dir%2Fsub%2Fc.txt"),
    )
    .await?;
    run.send(
        "v2 negative max-keys",
        Req::get(&p).query("list-type=2&max-keys=-1"),
    )
    .await?;
    Ok(())
}

/// Starts a multipart upload of `key` (with a content type and metadata)
/// and returns its id, query-encoded.
async fn create_upload(run: &mut Run<'_>, step: &str, key: &str) -> Result<String> {
    let req = Req::new(http::Method::POST, key)
        .query("uploads")
        .header("content-type", "application/x-ferry")
        .header("x-amz-meta-color", "green");
    let (status, headers, body) = run.target.send(req).await?;
    run.record.push((
        format!("{}: {step}", run.scenario),
        answer(status, &headers, &body)?,
    ));
    let id = xml_leaves(&body)?
        .into_iter()
        .find(|(p, _)| p == "InitiateMultipartUploadResult/UploadId")
        .map(|(_, v)| v)
        .with_context(|| format!("{}: {step} answered no UploadId", run.target.name))?;
    Ok(qenc(&id))
}

/// 5 MiB, S3's smallest part but the last.
const PART: usize = 5 * 1024 * 1024;

async fn multipart(run: &mut Run<'_>) -> Result<()> {
    let b = bucket("multipart");
    run.send("create", Req::put(format!("/{b}"), Bytes::new()))
        .await?;
    let key = format!("/{b}/{}", enc("mp/big object.bin"));
    let part1 = Bytes::from(vec![b'1'; PART]);
    let part2 = Bytes::from_static(b"the last part may be small");
    let (e1, e2) = (md5_hex(&part1), md5_hex(&part2));

    let id = create_upload(run, "create upload", &key).await?;
    run.send(
        "upload part 1",
        Req::put(&key, part1.clone()).query(&format!("partNumber=1&uploadId={id}")),
    )
    .await?;
    run.send(
        "upload part 2",
        Req::put(&key, part2.clone())
            .query(&format!("partNumber=2&uploadId={id}"))
            .unsigned_payload(),
    )
    .await?;
    run.send(
        "list parts",
        Req::get(&key).query(&format!("uploadId={id}")),
    )
    .await?;
    run.send("list uploads", Req::get(format!("/{b}")).query("uploads"))
        .await?;
    let complete = |parts: &[(u32, &str)]| {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let mut r = Req::new(http::Method::POST, key.clone()).query(&format!("uploadId={id}"));
        r.body = Bytes::from(xml);
        r
    };
    run.send(
        "complete with a wrong ETag",
        complete(&[(1, &e1), (2, &e1)]),
    )
    .await?;
    run.send("complete out of order", complete(&[(2, &e2), (1, &e1)]))
        .await?;
    run.send(
        "complete with a part never uploaded",
        complete(&[(1, &e1), (3, &e2)]),
    )
    .await?;
    run.send("complete with no parts", complete(&[])).await?;
    run.send("complete", complete(&[(1, &e1), (2, &e2)]))
        .await?;
    run.send("head completed", Req::new(http::Method::HEAD, &key))
        .await?;
    run.send(
        "get part of completed",
        Req::get(&key).header("range", format!("bytes={}-{}", PART - 2, PART + 3).as_str()),
    )
    .await?;
    run.send(
        "list parts after completion",
        Req::get(&key).query(&format!("uploadId={id}")),
    )
    .await?;
    run.send("complete again", complete(&[(1, &e1), (2, &e2)]))
        .await?;

    let small = create_upload(run, "create upload of small parts", &key).await?;
    let small_key = key.clone();
    for n in 1..=2 {
        run.send(
            &format!("upload small part {n}"),
            Req::put(&small_key, part2.clone()).query(&format!("partNumber={n}&uploadId={small}")),
        )
        .await?;
    }
    let mut too_small = complete(&[(1, &e2), (2, &e2)]);
    too_small.query = format!("uploadId={small}");
    run.send("complete with a small first part", too_small)
        .await?;
    run.send(
        "abort",
        Req::new(http::Method::DELETE, &key).query(&format!("uploadId={small}")),
    )
    .await?;
    run.send(
        "list parts after abort",
        Req::get(&key).query(&format!("uploadId={small}")),
    )
    .await?;
    run.send(
        "abort again",
        Req::new(http::Method::DELETE, &key).query(&format!("uploadId={small}")),
    )
    .await?;
    let mut unknown = complete(&[(1, &e1)]);
    unknown.query = "uploadId=00000000-0000-0000-0000-000000000000".into();
    run.send("complete an unknown upload", unknown).await?;
    run.send(
        "upload a part to an unknown upload",
        Req::put(&key, part2).query("partNumber=1&uploadId=00000000-0000-0000-0000-000000000000"),
    )
    .await?;
    Ok(())
}

async fn deletes(run: &mut Run<'_>) -> Result<()> {
    let b = bucket("delete");
    run.send("create", Req::put(format!("/{b}"), Bytes::new()))
        .await?;
    for key in ["one", "two", "three", "dir/four", "space five"] {
        run.send(
            &format!("put {key}"),
            Req::put(format!("/{b}/{}", enc(key)), key),
        )
        .await?;
    }
    run.send(
        "delete one",
        Req::new(http::Method::DELETE, format!("/{b}/one")),
    )
    .await?;
    run.send(
        "delete one again",
        Req::new(http::Method::DELETE, format!("/{b}/one")),
    )
    .await?;
    let batch = |quiet: bool, keys: &[&str]| {
        let mut xml = String::from("<Delete>");
        if quiet {
            xml.push_str("<Quiet>true</Quiet>");
        }
        for k in keys {
            xml.push_str(&format!("<Object><Key>{k}</Key></Object>"));
        }
        xml.push_str("</Delete>");
        let body = Bytes::from(xml);
        let md5 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body))
        };
        let mut r = Req::new(http::Method::POST, format!("/{b}"))
            .query("delete")
            .header("content-md5", &md5);
        r.body = body;
        r
    };
    run.send(
        "delete objects",
        batch(false, &["two", "dir/four", "never-there"]),
    )
    .await?;
    run.send(
        "delete objects quietly",
        batch(true, &["three", "space five"]),
    )
    .await?;
    run.send(
        "list after deletes",
        Req::get(format!("/{b}")).query("list-type=2"),
    )
    .await?;
    run.send(
        "delete the bucket",
        Req::new(http::Method::DELETE, format!("/{b}")),
    )
    .await?;
    Ok(())
}

async fn run_all(target: &Target) -> Result<Record> {
    let mut run = Run {
        target,
        scenario: "",
        record: Record::new(),
    };
    run.scenario = "buckets";
    buckets(&mut run).await?;
    run.scenario = "objects";
    objects(&mut run).await?;
    run.scenario = "auth";
    auth(&mut run).await?;
    run.scenario = "list";
    listings(&mut run).await?;
    run.scenario = "multipart";
    multipart(&mut run).await?;
    run.scenario = "delete";
    deletes(&mut run).await?;
    Ok(run.record)
}

/// Every field in which the two records differ: the step, and
/// `<field>: <a> | <b>`.
fn compare(a: &Record, b: &Record) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b_steps: BTreeMap<&str, &Answer> = b.iter().map(|(s, x)| (s.as_str(), x)).collect();
    let a_steps: BTreeMap<&str, &Answer> = a.iter().map(|(s, x)| (s.as_str(), x)).collect();
    for (step, x) in a {
        let Some(y) = b_steps.get(step.as_str()) else {
            out.push((step.clone(), "(step): present | absent".to_owned()));
            continue;
        };
        let fields: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for f in fields {
            // An empty element and none read the same to a client.
            fn read<'m>(m: &'m Answer, f: &str) -> Option<&'m String> {
                m.get(f).filter(|v| !(f.starts_with("x:") && v.is_empty()))
            }
            let (u, v) = (read(x, f), read(y, f));
            if u != v {
                let show = |s: Option<&String>| s.map_or("(none)".to_owned(), |s| format!("{s:?}"));
                out.push((step.clone(), format!("{f}: {} | {}", show(u), show(v))));
            }
        }
    }
    for (step, _) in b {
        if !a_steps.contains_key(step.as_str()) {
            out.push((step.clone(), "(step): absent | present".to_owned()));
        }
    }
    out
}

fn field<'a>(record: &'a Record, step: &str, f: &str) -> Option<&'a str> {
    record
        .iter()
        .find(|(s, _)| s == step)
        .and_then(|(_, a)| a.get(f))
        .map(String::as_str)
}

/// What S3 does, whoever else agrees: checked on each server's record.
fn assert_s3_facts(name: &str, r: &Record) -> Result<()> {
    let keys = "x:ListBucketResult/Contents/Key";
    let all = field(r, "list: v2 all", keys);
    ensure!(
        all.is_some_and(|k| k.split(" | ").count() == KEYS.len()),
        "{name}: v2 lists every key: {all:?}"
    );
    for v in ["v1", "v2"] {
        let empty = field(r, &format!("list: {v} empty delimiter"), keys);
        ensure!(
            empty == field(r, &format!("list: {v} all"), keys),
            "{name}: an empty delimiter is no delimiter ({v}): {empty:?}"
        );
        ensure!(
            field(
                r,
                &format!("list: {v} empty delimiter"),
                "x:ListBucketResult/CommonPrefixes/Prefix"
            )
            .is_none(),
            "{name}: an empty delimiter groups nothing ({v})"
        );
        let grouped = field(
            r,
            &format!("list: {v} delimiter /"),
            "x:ListBucketResult/CommonPrefixes/Prefix",
        );
        ensure!(
            grouped == Some("dir/ | dir2/ | unicode/"),
            "{name}: {v} groups by /: {grouped:?}"
        );
    }
    // Keys come url-encoded exactly when the answer says so (clients decode
    // only then); versitygw never encodes, and says nothing.
    let encoded = field(r, "list: v2 url encoding", keys).unwrap_or_default();
    let says = field(
        r,
        "list: v2 url encoding",
        "x:ListBucketResult/EncodingType",
    );
    ensure!(
        (says == Some("url"))
            == (encoded.contains("plus%2Bsign.txt") && encoded.contains("per%2525cent.txt")),
        "{name}: url-encoded listing ({says:?}): {encoded}"
    );
    ensure!(
        field(r, "objects: get range 2-5", "status") == Some("206"),
        "{name}: a range GET is 206"
    );
    ensure!(
        field(r, "objects: get range 2-5", "h:content-range") == Some("bytes 2-5/16"),
        "{name}: content-range"
    );
    ensure!(
        field(r, "objects: head missing key", "status") == Some("404"),
        "{name}: HEAD of a missing key is 404"
    );
    ensure!(
        field(r, "multipart: complete", "status") == Some("200"),
        "{name}: completion succeeds"
    );
    ensure!(
        field(
            r,
            "multipart: complete",
            "x:CompleteMultipartUploadResult/ETag"
        )
        .is_some_and(|e| e.ends_with("-2\"")),
        "{name}: a two-part object's ETag ends in -2"
    );
    ensure!(
        field(r, "auth: wrong secret", "status") == Some("403"),
        "{name}: a wrong secret is refused"
    );
    ensure!(
        field(r, "auth: get after refusals", "status") == Some("404"),
        "{name}: refused PUTs stored nothing: {:?}",
        r.iter()
            .filter(|(s, _)| s.starts_with("auth:"))
            .collect::<Vec<_>>()
    );
    let after = field(r, "delete: list after deletes", keys);
    ensure!(after.is_none(), "{name}: everything was deleted: {after:?}");
    Ok(())
}

struct Sandbox {
    _dir: tempfile::TempDir,
    server: S3Server,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_s3_answers_as_versitygw_does() -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let sandbox = Sandbox {
        server: S3Server::start(dir.path(), "ferry-conformance", "ferry-conformance-secret")
            .await?,
        _dir: dir,
    };
    let versity = RealVersityGw::start().await?;
    let http = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let targets = [
        Target {
            name: "sandbox",
            endpoint: sandbox.server.endpoint().to_owned(),
            credential: AwsCredential {
                key_id: sandbox.server.access_key().to_owned(),
                secret_key: sandbox.server.secret_key().to_owned(),
                token: None,
            },
            region: sandbox.server.region().to_owned(),
            http: http.clone(),
        },
        Target {
            name: "versitygw",
            endpoint: versity.endpoint().to_owned(),
            credential: AwsCredential {
                key_id: versity.access_key().to_owned(),
                secret_key: versity.secret_key().to_owned(),
                token: None,
            },
            region: versity.region().to_owned(),
            http,
        },
    ];
    let a = run_all(&targets[0]).await?;
    let b = run_all(&targets[1])
        .await
        .with_context(|| format!("versitygw's log:\n{}", versity.log_tail()))?;
    let differences = compare(&a, &b);
    let (known, unexplained): (Vec<_>, Vec<_>) = differences.iter().partition(|d| known(d));
    for (step, d) in &known {
        eprintln!("known difference: {step} {d}");
    }
    eprintln!(
        "{} requests to each server, {} known differences, {} unexplained, in {:.1} s",
        a.len(),
        known.len(),
        unexplained.len(),
        started.elapsed().as_secs_f64()
    );
    let unexplained: Vec<String> = unexplained
        .iter()
        .map(|(step, d)| format!("{step} {d}"))
        .collect();
    assert!(
        unexplained.is_empty(),
        "the sandbox's S3 answers differently from versitygw (sandbox | versitygw), and docs/sandbox.md does not explain it:\n{}",
        unexplained.join("\n")
    );
    for (target, record) in targets.iter().zip([&a, &b]) {
        assert_s3_facts(target.name, record)?;
    }
    Ok(())
}
