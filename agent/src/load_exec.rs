//! Executes a `LoadCommand`: connects to the named database from the
//! agent's configuration, pulls the client's files through the coordinator
//! on the load's own data stream (`LoadData.Pull`), and hands them to
//! [`crate::load::load`]. Refused data is an output (with its row errors),
//! not a failure of the command: the command did its job.
use std::time::{Duration, Instant};

use ferry_common::pb::{
    self, LoadState, load_data_client::LoadDataClient, load_pull_down, load_pull_up,
};
use futures::Stream;
use tokio::sync::mpsc;
use tonic::Streaming;

use crate::load::{
    self, Chunk, FileMapping, FileSpec, LoadError, LoadOutcome, LoadSpec, LoadStatus, RowError,
};
use crate::relay::RelayContext;

/// Progress goes up at most this often (and when a file is done).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

pub async fn run_load(
    ctx: &RelayContext,
    command_id: &str,
    cmd: &pb::LoadCommand,
) -> Result<pb::LoadOutput, String> {
    let spec = cmd
        .spec
        .as_ref()
        .ok_or("the load command carries no spec; the coordinator and agent versions differ")?;
    let id = &spec.load_id;
    let config = &ctx.config;
    let db = config
        .databases
        .iter()
        .find(|d| d.name == spec.database)
        .ok_or_else(|| {
            format!(
                "load {id}: the agent of cluster {} has no database named {:?}; start it with `--database {}=postgres://…`",
                config.cluster_id, spec.database, spec.database
            )
        })?;
    let (mut client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("load {id}: cannot connect to database {}: {e}", db.name))?;
    let database = db.name.clone();
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(%database, error = %e, "database connection ended");
        }
    });
    let result = pull_and_load(ctx, command_id, cmd.attempt, spec, &mut client).await;
    drop(client);
    let _ = connection.await;
    result
}

async fn pull_and_load(
    ctx: &RelayContext,
    command_id: &str,
    attempt: u32,
    spec: &pb::LoadSpec,
    client: &mut tokio_postgres::Client,
) -> Result<pb::LoadOutput, String> {
    let id = &spec.load_id;
    let mut load_spec = to_load_spec(spec)?;
    load_spec.schemas = ctx.config.load_schemas.clone();
    // Already in the database with this content: answer without pulling a
    // byte. Content not declared: the load reads it to compare.
    if let Some(done) = load::ledger_lookup(&*client, id)
        .await
        .map_err(|e| e.to_string())?
    {
        let declared = load::declared_digest(&load_spec);
        if declared.is_some() || done.digest.is_none() {
            return Ok(match load::check_same(&done, declared.as_deref()) {
                Ok(()) => output(done),
                Err(e) => conflict(e),
            });
        }
    }
    let (up_tx, up_rx) = mpsc::channel(4);
    let hello = pb::LoadPullUp {
        msg: Some(load_pull_up::Msg::Hello(pb::LoadHello {
            load_id: id.clone(),
            command_id: command_id.to_string(),
            attempt,
        })),
    };
    let _ = up_tx.send(hello).await;
    let config = &ctx.config;
    let channel = ferry_common::tls::connect_to(
        &config.coordinator,
        &config.tls_paths(),
        config.coordinator_check(),
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| format!("load {id}: cannot open its data stream: {e}"))?;
    let down = LoadDataClient::new(channel)
        .pull(tokio_stream::wrappers::ReceiverStream::new(up_rx))
        .await
        .map_err(|s| {
            format!(
                "load {id}: the coordinator refused its data stream: {}",
                s.message()
            )
        })?
        .into_inner();
    let mut last = Instant::now();
    let progress = |p: &load::Progress| {
        if p.file_done || last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            let msg = pb::LoadPullUp {
                msg: Some(load_pull_up::Msg::Progress(pb::LoadProgress {
                    file: p.file as u32,
                    rows: p.total_rows,
                    rows_written: p.total_written,
                    bytes_done: p.total_bytes,
                    ..Default::default()
                })),
            };
            // Progress is best effort: never slow the load for it.
            let _ = up_tx.try_send(msg);
        }
    };
    match load::load(client, &load_spec, chunks(down), progress).await {
        Ok(outcome) => Ok(output(outcome)),
        Err(LoadError::Rejected {
            errors, truncated, ..
        }) => Ok(pb::LoadOutput {
            state: LoadState::Rejected as i32,
            errors: errors.into_iter().map(row_error).collect(),
            errors_truncated: truncated,
            ..Default::default()
        }),
        Err(e @ LoadError::Conflict { .. }) => Ok(conflict(e)),
        Err(e) => Err(e.to_string()),
    }
}

/// The id belongs to other content: an outcome (the command did its job),
/// its message naming the files the id belongs to.
fn conflict(e: LoadError) -> pb::LoadOutput {
    pb::LoadOutput {
        state: LoadState::Conflict as i32,
        error: e.to_string(),
        ..Default::default()
    }
}

/// The pulled chunks. The stream must end with `end`: any other ending is a
/// broken upload, which makes the load roll back.
fn chunks(down: Streaming<pb::LoadPullDown>) -> impl Stream<Item = Result<Chunk, String>> {
    futures::stream::unfold(Some(down), |state| async move {
        let mut down = state?;
        loop {
            match down.message().await {
                Ok(Some(m)) => match m.msg {
                    Some(load_pull_down::Msg::Chunk(c)) => {
                        let chunk = Chunk {
                            file: c.file as usize,
                            data: c.data,
                        };
                        return Some((Ok(chunk), Some(down)));
                    }
                    Some(load_pull_down::Msg::End(_)) => return None,
                    None => continue,
                },
                Ok(None) => {
                    let e = "the upload ended before its end marker (the client stopped or its link broke)";
                    return Some((Err(e.to_string()), None));
                }
                Err(s) => {
                    return Some((Err(format!("the data stream broke: {}", s.message())), None));
                }
            }
        }
    })
}

pub(crate) fn to_load_spec(spec: &pb::LoadSpec) -> Result<LoadSpec, String> {
    let files = spec
        .files
        .iter()
        .map(|f| {
            let mut file = FileSpec::new(&f.name, &f.table);
            file.sha256 = (!f.sha256.is_empty()).then(|| f.sha256.to_ascii_lowercase());
            if !f.csv_columns.is_empty() || !f.target_columns.is_empty() {
                file.mapping = Some(FileMapping {
                    csv_columns: f.csv_columns.clone(),
                    target_columns: f.target_columns.clone(),
                });
            }
            file
        })
        .collect();
    let mut s = LoadSpec::new(&spec.load_id, files);
    s.delimiter = match spec.delimiter.as_str() {
        "" => None,
        "," => Some(b','),
        ";" => Some(b';'),
        other => return Err(format!("delimiter {other:?} is not `,` or `;`")),
    };
    s.dry_run = spec.dry_run;
    if spec.max_errors > 0 {
        s.max_errors = spec.max_errors as usize;
    }
    Ok(s)
}

fn output(o: LoadOutcome) -> pb::LoadOutput {
    let (state, loaded_at) = match o.status {
        LoadStatus::Loaded => (LoadState::Loaded, o.loaded_at.unwrap_or_default()),
        LoadStatus::AlreadyLoaded { loaded_at } => (LoadState::AlreadyLoaded, loaded_at),
        LoadStatus::DryRun => (LoadState::DryRunPassed, String::new()),
    };
    pb::LoadOutput {
        state: state as i32,
        rows: o.rows,
        bytes: o.bytes,
        files: o
            .files
            .into_iter()
            .map(|f| pb::LoadFileOutcome {
                name: f.name,
                table: f.table,
                rows: f.rows,
                bytes: f.bytes,
                model: f.model,
            })
            .collect(),
        loaded_at,
        ..Default::default()
    }
}

fn row_error(e: RowError) -> pb::LoadRowError {
    pb::LoadRowError {
        file: e.file,
        line: e.line,
        column: e.column.unwrap_or_default(),
        value: e.value.unwrap_or_default(),
        reason: e.reason,
    }
}

/// Says at start when a load database's role is a superuser. A database
/// that is not reachable yet is only noted: loads report their own errors.
pub async fn warn_if_superuser(db: crate::config::DatabaseUrl) {
    let database = db.name.clone();
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(&db.url, tokio_postgres::NoTls),
    )
    .await;
    let (client, connection) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::info!(%database, error = %e, "cannot check the load database's role now");
            return;
        }
        Err(_) => {
            tracing::info!(%database, "cannot check the load database's role now: connecting timed out");
            return;
        }
    };
    let connection = tokio::spawn(connection);
    match crate::load::superuser_warning(&client).await {
        Ok(Some(warning)) => tracing::warn!(%database, "{warning}"),
        Ok(None) => {}
        Err(e) => tracing::info!(%database, error = %e, "cannot check the load database's role"),
    }
    drop(client);
    let _ = connection.await;
}
