//! How long the sandbox's S3 takes to list a large bucket in pages of 1,000:
//! `s3s-fs`'s own listing (a walk and sort of the whole bucket per page, what
//! the endpoint served before issue 17) against the endpoint's index, over
//! the same directory in the same run, and the index once more over HTTP
//! through `object_store`. Prints figures; asserts nothing.
//!
//! ```sh
//! cargo run --release -p ferry-sandbox --example s3_list_bench -- 100000
//! ```
//! An optional second argument caps the pages the old listing walks (its
//! time is then given per page and extrapolated to the whole bucket).

use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_sandbox::s3::S3Server;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use s3s::S3;
use s3s::dto::ListObjectsV2Input;

const BUCKET: &str = "bench";
const OBJECT: usize = 4096;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let objects: usize = args.next().as_deref().unwrap_or("100000").parse()?;
    let old_pages: Option<usize> = args.next().map(|a| a.parse()).transpose()?;
    let dir = tempfile::tempdir()?;
    let server = S3Server::start(dir.path().join("s3"), "bench", "bench-secret").await?;
    server.create_bucket(BUCKET).await?;

    let t = Instant::now();
    let body = bytes::Bytes::from(vec![7u8; OBJECT]);
    futures::stream::iter(0..objects)
        .map(|i| {
            let (server, body) = (&server, body.clone());
            async move {
                let key = format!("data/{:03}/obj-{i:07}", i % 100);
                server.put_object(BUCKET, &key, body).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    println!(
        "wrote {objects} objects of {OBJECT} B in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Before: s3s-fs's listing, page after page, over the same directory.
    let fs = s3s_fs::FileSystem::new(server.root()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (mut token, mut listed, mut pages) = (None::<String>, 0usize, 0usize);
    let t = Instant::now();
    loop {
        let input = ListObjectsV2Input::builder()
            .bucket(BUCKET.to_owned())
            .continuation_token(token.take())
            .build()?;
        let out = fs
            .list_objects_v2(request(input))
            .await
            .map_err(|e| anyhow::anyhow!("s3s-fs listing failed: {e}"))?
            .output;
        listed += out.contents.map_or(0, |c| c.len());
        pages += 1;
        match out.next_continuation_token {
            Some(next) if out.is_truncated == Some(true) => token = Some(next),
            _ => break,
        }
        if old_pages.is_some_and(|cap| pages >= cap) {
            break;
        }
    }
    let old = t.elapsed();
    let old_per_page = old / u32::try_from(pages)?;
    let all_pages = objects.div_ceil(1000).max(1);
    let old_whole = old_per_page * u32::try_from(all_pages)?;
    println!(
        "old (s3s-fs walk + sort per page): {listed} keys in {pages} pages, {:.2} s ({:.1} ms a page; whole bucket {:.1} s{})",
        old.as_secs_f64(),
        ms(old_per_page),
        old_whole.as_secs_f64(),
        if pages < all_pages {
            ", extrapolated"
        } else {
            ""
        }
    );

    // After: the index, in process (first listing builds it) and again.
    for round in ["first listing (builds the index)", "second listing"] {
        let t = Instant::now();
        let listed = server.list_objects(BUCKET, "").await?.len();
        let took = t.elapsed();
        println!(
            "new, in process, {round}: {listed} keys in {:.3} s ({:.2} ms a page); old/new {:.0}x",
            took.as_secs_f64(),
            ms(took / u32::try_from(all_pages)?),
            old_whole.as_secs_f64() / took.as_secs_f64()
        );
    }

    // After, as a client sees it: object_store lists over HTTP, 1,000 a page.
    let store = AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_bucket_name(BUCKET)
        .with_region(server.region())
        .with_access_key_id(server.access_key())
        .with_secret_access_key(server.secret_key())
        .with_allow_http(true)
        .build()
        .context("building the object_store client")?;
    let t = Instant::now();
    let listed = store.list(None).try_collect::<Vec<_>>().await?.len();
    let took = t.elapsed();
    println!(
        "new, over HTTP (object_store): {listed} keys in {:.3} s; old/new {:.0}x",
        took.as_secs_f64(),
        old_whole.as_secs_f64() / took.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn request<T>(input: T) -> s3s::S3Request<T> {
    s3s::S3Request {
        input,
        method: http::Method::GET,
        uri: http::Uri::from_static("/"),
        headers: http::HeaderMap::new(),
        extensions: http::Extensions::new(),
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    }
}
