//! Leadership among coordinator replicas on one PostgreSQL: a lease row
//! with a generation number (docs/ha.md says why not an advisory lock).
//!
//! The row `ferry_leader` (id 1) holds the generation, the holder and when
//! the lease expires, always by the database's clock (`now()`), so replicas'
//! clocks never have to agree. A replica takes the lease only when it has
//! expired, and taking it adds one to the generation; the leader renews it
//! at a third of its duration. Fencing is in the store: every write of the
//! leader checks, in its own transaction, that the generation is still its.
use std::time::Duration;

use tokio_postgres::Client;

use crate::store::{connect, redacted};
use crate::{Error, Result};

pub struct Lease {
    config: tokio_postgres::Config,
    target: String,
    holder: String,
    duration: Duration,
    client: Option<Client>,
}

impl Lease {
    /// `holder` names this replica in the row (for people; never trusted).
    pub fn new(config: tokio_postgres::Config, holder: String, duration: Duration) -> Self {
        Self {
            target: redacted(&config),
            config,
            holder,
            duration,
            client: None,
        }
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// How often the leader renews and a standby tries to take over.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn err(&self, what: &str, e: tokio_postgres::Error) -> Error {
        Error::Database {
            target: self.target.clone(),
            message: match e.as_db_error() {
                Some(db) => format!("{what}: {}: {}", db.code().code(), db.message()),
                None => format!("{what}: {e}"),
            },
        }
    }

    async fn client(&mut self) -> Result<&Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = connect(&self.config)
                .await
                .map_err(|e| self.err("cannot connect for the lease", e))?;
            self.client = Some(client);
        }
        let target = &self.target;
        self.client.as_ref().ok_or_else(|| Error::Database {
            target: target.clone(),
            message: "no connection for the lease".into(),
        })
    }

    async fn one(&mut self, what: &str, sql: &str, generation: Option<i64>) -> Result<Option<i64>> {
        let secs = self.duration.as_secs_f64();
        let holder = self.holder.clone();
        let client = self.client().await?;
        let result = match generation {
            None => client.query_opt(sql, &[&holder, &secs]).await,
            Some(g) => client.query_opt(sql, &[&g, &secs]).await,
        };
        let row = match result {
            Ok(row) => row,
            Err(e) => {
                self.client = None;
                return Err(self.err(what, e));
            }
        };
        row.map(|r| r.try_get::<_, i64>(0))
            .transpose()
            .map_err(|e| self.err(what, e))
    }

    /// Takes the lease if it is free or expired; the new generation if so.
    pub async fn try_acquire(&mut self) -> Result<Option<i64>> {
        self.one(
            "taking the lease",
            "INSERT INTO ferry_leader AS l (id, generation, holder, acquired_at, expires_at) \
             VALUES (1, 1, $1, now(), now() + make_interval(secs => $2)) \
             ON CONFLICT (id) DO UPDATE SET generation = l.generation + 1, \
             holder = excluded.holder, acquired_at = now(), expires_at = excluded.expires_at \
             WHERE l.expires_at < now() \
             RETURNING generation",
            None,
        )
        .await
    }

    /// Extends the lease held at `generation`; `false` when another replica
    /// has taken it since (this one is deposed).
    pub async fn renew(&mut self, generation: i64) -> Result<bool> {
        let renewed = self
            .one(
                "renewing the lease",
                "UPDATE ferry_leader SET expires_at = now() + make_interval(secs => $2) \
                 WHERE id = 1 AND generation = $1 RETURNING generation",
                Some(generation),
            )
            .await?;
        Ok(renewed.is_some())
    }

    /// Lets the lease go at once (a clean shutdown), so a standby need not
    /// wait for it to expire.
    pub async fn release(&mut self, generation: i64) -> Result<()> {
        self.one(
            "releasing the lease",
            "UPDATE ferry_leader SET expires_at = now() - make_interval(secs => $2) \
             WHERE id = 1 AND generation = $1 RETURNING generation",
            Some(generation),
        )
        .await
        .map(|_| ())
    }
}
