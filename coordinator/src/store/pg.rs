//! The PostgreSQL backend, for several coordinator replicas on one database.
//!
//! The store's API is synchronous (redb's writes block the caller too), so
//! this backend owns a thread with its own current-thread runtime and one
//! connection, and answers jobs sent over a channel. That works from any
//! caller — a multi-thread or a current-thread runtime, or no runtime —
//! where `block_in_place` would panic on a current-thread one.
//!
//! A job is data, not code: a list of SQL statements with their parameters,
//! run in one transaction. A *stamped* write carries the writer's generation
//! as `$1`, and every write transaction of a fenced store first checks,
//! under a share lock on the lease row, that the generation is still its own
//! (docs/ha.md): a deposed leader's write is refused and rolled back.
use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;

use super::schema;
use crate::{Error, Result};

/// How long one job may take (connecting included) before it fails and the
/// connection is dropped, so a hung database cannot hang the coordinator.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    pub(super) fn text(s: impl Into<String>) -> Self {
        Value::Text(s.into())
    }

    pub(super) fn into_text(self) -> Option<String> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub(super) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Bytes(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <String as ToSql>::accepts(ty)
            || <Vec<u8> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

pub(super) type Row = Vec<Value>;

/// One SQL statement of a job.
pub(super) struct Stmt {
    sql: &'static str,
    params: Vec<Value>,
    /// `$1` is the writer's generation, bound by the store's thread.
    stamped: bool,
}

impl Stmt {
    pub(super) fn new(sql: &'static str, params: Vec<Value>) -> Self {
        Self {
            sql,
            params,
            stamped: false,
        }
    }

    /// A write whose `$1` is the writer's generation (`written_by`).
    pub(super) fn stamped(sql: &'static str, params: Vec<Value>) -> Self {
        Self {
            sql,
            params,
            stamped: true,
        }
    }
}

enum Job {
    Run {
        write: bool,
        stmts: Vec<Stmt>,
        reply: std::sync::mpsc::SyncSender<Result<Vec<Vec<Row>>>>,
    },
    Fence {
        generation: i64,
        reply: std::sync::mpsc::SyncSender<Result<Vec<Vec<Row>>>>,
    },
}

pub(super) struct PgStore {
    jobs: mpsc::UnboundedSender<Job>,
    target: String,
    deposed: CancellationToken,
}

impl PgStore {
    /// Connects, applies the schema's migrations, and starts the thread.
    pub(super) fn open(config: tokio_postgres::Config) -> Result<Self> {
        let target = redacted(&config);
        let deposed = CancellationToken::new();
        let (jobs, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread = Worker {
            config,
            target: target.clone(),
            client: None,
            statements: HashMap::new(),
            generation: None,
            deposed: deposed.clone(),
        };
        std::thread::Builder::new()
            .name("ferry-store-pg".into())
            .spawn(move || thread.run(rx, ready_tx))
            .map_err(|e| Error::Database {
                target: target.clone(),
                message: format!("cannot start the store's thread: {e}"),
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Error::Database {
                    target,
                    message: "the store's thread ended while opening the database".into(),
                });
            }
        }
        Ok(Self {
            jobs,
            target,
            deposed,
        })
    }

    /// The database, for messages: never its password.
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// Cancelled when a write was refused because another replica leads.
    pub(super) fn deposed(&self) -> CancellationToken {
        self.deposed.clone()
    }

    /// From now on every write must hold the lease at `generation`.
    pub(super) fn fence(&self, generation: i64) -> Result<()> {
        self.send(|reply| Job::Fence { generation, reply })
            .map(|_| ())
    }

    pub(super) fn read(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>> {
        self.send(|reply| Job::Run {
            write: false,
            stmts,
            reply,
        })
    }

    pub(super) fn write(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>> {
        self.send(|reply| Job::Run {
            write: true,
            stmts,
            reply,
        })
    }

    /// Rows of a single-statement read.
    pub(super) fn query(&self, sql: &'static str, params: Vec<Value>) -> Result<Vec<Row>> {
        Ok(self
            .read(vec![Stmt::new(sql, params)])?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    fn send(
        &self,
        job: impl FnOnce(std::sync::mpsc::SyncSender<Result<Vec<Vec<Row>>>>) -> Job,
    ) -> Result<Vec<Vec<Row>>> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let gone = || Error::Database {
            target: self.target.clone(),
            message: "the store's thread has stopped; restart the coordinator".into(),
        };
        self.jobs.send(job(reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

struct Worker {
    config: tokio_postgres::Config,
    target: String,
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
    generation: Option<i64>,
    deposed: CancellationToken,
}

impl Worker {
    fn run(
        mut self,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        ready: std::sync::mpsc::SyncSender<Result<()>>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(self.err(format!("cannot start a runtime: {e}"))));
                return;
            }
        };
        runtime.block_on(async move {
            let opened = match tokio::time::timeout(JOB_TIMEOUT, self.migrate()).await {
                Ok(r) => r,
                Err(_) => Err(self.err(format!(
                    "opening the database took longer than {JOB_TIMEOUT:?}"
                ))),
            };
            let failed = opened.is_err();
            let _ = ready.send(opened);
            if failed {
                return;
            }
            while let Some(job) = jobs.recv().await {
                match job {
                    Job::Fence { generation, reply } => {
                        self.generation = Some(generation);
                        let _ = reply.send(Ok(vec![]));
                    }
                    Job::Run {
                        write,
                        stmts,
                        reply,
                    } => {
                        let out =
                            match tokio::time::timeout(JOB_TIMEOUT, self.job(write, stmts)).await {
                                Ok(r) => r,
                                Err(_) => Err(self.err(format!(
                                    "no answer within {JOB_TIMEOUT:?}; check the database's health"
                                ))),
                            };
                        if out.is_err() && !matches!(out, Err(Error::Deposed { .. })) {
                            // A broken or timed-out connection is not reused.
                            self.client = None;
                        }
                        let _ = reply.send(out);
                    }
                }
            }
        });
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Database {
            target: self.target.clone(),
            message: message.into(),
        }
    }

    async fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.statements.clear();
            let client = connect(&self.config)
                .await
                .map_err(|e| pg_error(&self.target, "cannot connect", e))?;
            self.client = Some(client);
        }
        let target = &self.target;
        self.client.as_mut().ok_or_else(|| Error::Database {
            target: target.clone(),
            message: "no connection".into(),
        })
    }

    async fn migrate(&mut self) -> Result<()> {
        let target = self.target.clone();
        let client = self.client().await?;
        schema::migrate(client, &target).await
    }

    async fn job(&mut self, write: bool, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>> {
        self.client().await?;
        // Prepared once per connection; the statements are a fixed set.
        for s in &stmts {
            if !self.statements.contains_key(s.sql) {
                let target = self.target.clone();
                let prepared = self
                    .client()
                    .await?
                    .prepare(s.sql)
                    .await
                    .map_err(|e| pg_error(&target, &format!("preparing `{}`", s.sql), e))?;
                self.statements.insert(s.sql, prepared);
            }
        }
        let Worker {
            client,
            statements,
            generation,
            deposed,
            target,
            ..
        } = self;
        let client = client.as_mut().ok_or_else(|| Error::Database {
            target: target.clone(),
            message: "no connection".into(),
        })?;
        // One statement that only reads needs no transaction: one round trip.
        if !write && let [s] = stmts.as_slice() {
            let rows = client
                .query(prepared(statements, target, s)?, &params(s, None))
                .await
                .map_err(|e| pg_error(target, &format!("running `{}`", s.sql), e))?;
            return Ok(vec![rows_values(target, &rows)?]);
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error(target, "beginning a transaction", e))?;
        if write && let Some(mine) = *generation {
            let current: Option<i64> = tx
                .query_opt(
                    "SELECT generation FROM ferry_leader WHERE id = 1 FOR SHARE",
                    &[],
                )
                .await
                .map_err(|e| pg_error(target, "checking the lease", e))?
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(|e| pg_error(target, "reading the lease", e))?;
            if current != Some(mine) {
                // Dropping `tx` rolls back: nothing of this job lands.
                deposed.cancel();
                return Err(Error::Deposed {
                    generation: mine,
                    current,
                });
            }
        }
        let stamp = Value::from(*generation);
        let mut out = Vec::with_capacity(stmts.len());
        for s in &stmts {
            let rows = tx
                .query(prepared(statements, target, s)?, &params(s, Some(&stamp)))
                .await
                .map_err(|e| pg_error(target, &format!("running `{}`", s.sql), e))?;
            out.push(rows_values(target, &rows)?);
        }
        tx.commit()
            .await
            .map_err(|e| pg_error(target, "committing", e))?;
        Ok(out)
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Value::Null, Value::Int)
    }
}

fn pg_error(target: &str, what: &str, e: tokio_postgres::Error) -> Error {
    // `Display` of a server error is only its severity and code; the
    // message is in `as_db_error`.
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    Error::Database {
        target: target.to_string(),
        message: format!("{what}: {text}"),
    }
}

fn prepared<'a>(
    statements: &'a HashMap<&'static str, Statement>,
    target: &str,
    s: &Stmt,
) -> Result<&'a Statement> {
    statements.get(s.sql).ok_or_else(|| Error::Database {
        target: target.to_string(),
        message: format!("statement `{}` was not prepared", s.sql),
    })
}

/// `s`'s parameters, after the writer's generation if it is stamped.
fn params<'a>(s: &'a Stmt, stamp: Option<&'a Value>) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut out: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(s.params.len() + 1);
    if s.stamped {
        out.push(stamp.unwrap_or(&Value::Null));
    }
    out.extend(s.params.iter().map(|p| p as &(dyn ToSql + Sync)));
    out
}

fn rows_values(target: &str, rows: &[tokio_postgres::Row]) -> Result<Vec<Row>> {
    rows.iter()
        .map(|r| row_values(r).map_err(|e| pg_error(target, "reading a row", e)))
        .collect()
}

fn row_values(row: &tokio_postgres::Row) -> std::result::Result<Row, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes)
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map(|b| Value::Int(i64::from(b)))
        } else {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(out)
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(
    config: &tokio_postgres::Config,
) -> std::result::Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the store's database connection ended");
        }
    });
    Ok(client)
}

/// `postgres://user@host:port/db`: enough to say which database, never the
/// password (which may have come in the URL).
pub fn redacted(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}
