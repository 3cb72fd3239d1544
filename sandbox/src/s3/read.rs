//! Serving an object's bytes in large reads.
//!
//! `s3s-fs` streams a `GET` through `tokio::fs` in 4 KiB reads, each a round
//! trip to tokio's blocking pool: 8,192 thread hand-offs per 32 MiB. On a
//! busy machine that ping-pong, not the disk, set the endpoint's pace, and it
//! made every reader (the relay's source, rclone) wait on the sandbox rather
//! than on itself. `s3s-fs` still answers the request (headers, range checks,
//! metadata, errors); only the body it opened is replaced by one read from
//! the same file in 256 KiB pieces on one blocking thread.
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use bytes::Bytes;
use s3s::dto::{GetObjectOutput, StreamingBlob};

const PIECE: usize = 256 * 1024;

/// Replaces `out`'s body with large reads of `path`, when the file is still
/// the one `s3s-fs` answered for (same length); otherwise leaves it.
pub(crate) fn large_reads(path: PathBuf, out: &mut GetObjectOutput) {
    let Some(length) = out.content_length.and_then(|l| u64::try_from(l).ok()) else {
        return;
    };
    let (start, total) = match out.content_range.as_deref() {
        None => (0, length),
        Some(range) => match parse_content_range(range) {
            Some(r) => r,
            None => return,
        },
    };
    let Ok(mut file) = std::fs::File::open(&path) else {
        return;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(total) {
        return; // replaced meanwhile: keep what s3s-fs opened
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = length;
        while left > 0 {
            let mut buf = vec![0u8; PIECE.min(left as usize)];
            match file.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{} ended {left} bytes early", path.display()),
                    )));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    out.body = Some(StreamingBlob::wrap(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
}

/// `bytes <first>-<last>/<total>` → (first, total).
fn parse_content_range(s: &str) -> Option<(u64, u64)> {
    let rest = s.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, _) = span.split_once('-')?;
    Some((first.parse().ok()?, total.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 10)));
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
