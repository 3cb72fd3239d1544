//! The COPY stream into one table: buffering and framing.
//!
//! Rows are encoded straight into one buffer that is handed to PostgreSQL
//! in large pieces (256 KiB): fewer, bigger CopyData messages keep the
//! client's per-message work negligible next to the server's.
//!
//! COPY BINARY is used whenever the loader knows every column's type: the
//! values are parsed here anyway (to report bad ones by line), and sending
//! the parsed form spares the server its text input functions, which are a
//! large share of its COPY time (see `docs/benchmarks.md` / the bench test).
//! A table with a column of another type falls back to COPY text.

use std::pin::Pin;

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::{CopyInSink, Transaction};

use super::schema::{Table, quote_ident};

/// Send the buffer once it holds this much.
pub const FLUSH_AT: usize = 256 * 1024;

/// Signature, flags and header-extension length of a binary COPY stream.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Binary,
    Text,
}

/// An open `COPY ... FROM STDIN` on the load's transaction.
pub struct CopyWriter {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    /// Encoded rows not sent yet; row encoders append here directly.
    pub buf: Vec<u8>,
    format: Format,
}

impl CopyWriter {
    pub async fn start(
        txn: &Transaction<'_>,
        table: &Table,
        columns: &[&str],
        format: Format,
    ) -> Result<Self, tokio_postgres::Error> {
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let fmt = match format {
            Format::Binary => "binary",
            Format::Text => "text",
        };
        let sql = format!(
            "COPY {} ({}) FROM STDIN (FORMAT {fmt})",
            table.sql_name,
            cols.join(", ")
        );
        let sink = Box::pin(txn.copy_in(sql.as_str()).await?);
        let mut buf = Vec::with_capacity(FLUSH_AT + 64 * 1024);
        if format == Format::Binary {
            buf.extend_from_slice(BINARY_HEADER);
        }
        Ok(CopyWriter { sink, buf, format })
    }

    /// Send the buffer if it is large enough (back-pressure: waits while
    /// the connection is busy writing the previous piece).
    pub async fn flush_if_full(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.buf.len() >= FLUSH_AT {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), tokio_postgres::Error> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(FLUSH_AT + 64 * 1024));
        self.sink.send(Bytes::from(full)).await
    }

    /// Close the stream; PostgreSQL's verdict on the rows comes back here.
    pub async fn finish(mut self) -> Result<u64, tokio_postgres::Error> {
        if self.format == Format::Binary {
            self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        }
        if !self.buf.is_empty() {
            self.send().await?;
        }
        self.sink.as_mut().finish().await
    }
}

/// Append `v` escaped for COPY text format.
pub fn push_text_escaped(buf: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}
