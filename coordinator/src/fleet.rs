//! The fleet: every agent the coordinator knows, its live session if any, and
//! the commands sent to it.
//!
//! Delivery is at least once: a command is stored before it is sent, and
//! every command not finished is sent again when its agent (re)registers,
//! unless the agent says it is still executing it. The agent executes an id
//! at most once, so the pair gives exactly-once execution.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_common::pb::{self, coordinator_message::Msg as Down};
use ferry_common::time::unix_ms;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::store::{Store, is_finished};
use crate::{Error, Result};

pub type Outbound = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

/// What the fleet tells waiters as it happens, so none has to look again
/// at a fixed interval. A receiver that lags reads the store once instead.
#[derive(Debug, Clone)]
pub enum FleetEvent {
    /// A running command's agent reported how far it is.
    Progress(pb::CommandProgress),
    /// A command's result was recorded (its id).
    Finished(String),
    /// A cluster's agent opened a session (`true`) or its session closed.
    Session { cluster: String, connected: bool },
}

struct Session {
    id: String,
    tx: Outbound,
    cancel: CancellationToken,
    last_seen: Instant,
    last_seen_unix_ms: u64,
    connected_since_unix_ms: u64,
    peer: SocketAddr,
}

pub struct Fleet {
    store: Store,
    heartbeat: Duration,
    lost_after: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    /// Every known agent's record, read from the store once (on first use)
    /// and kept in step with it, so a command or a session change looks one
    /// agent up instead of decoding every stored record.
    known: Mutex<Option<HashMap<String, pb::AgentInfo>>>,
    events: broadcast::Sender<FleetEvent>,
    /// The last progress each running command reported (live only: a
    /// restarted coordinator learns it again from the next report).
    progress: Mutex<HashMap<String, pb::CommandProgress>>,
    shutdown: CancellationToken,
}

/// What `open_session` hands the stream handler.
pub struct OpenedSession {
    pub session_id: String,
    /// Replies (acknowledgements) go out on the same stream as commands.
    pub tx: Outbound,
    pub rx: mpsc::Receiver<Result<pb::CoordinatorMessage, Status>>,
    pub cancel: CancellationToken,
}

impl Fleet {
    pub fn new(
        store: Store,
        heartbeat: Duration,
        lost_after: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            store,
            heartbeat,
            lost_after,
            sessions: Mutex::new(HashMap::new()),
            known: Mutex::new(None),
            events,
            progress: Mutex::new(HashMap::new()),
            shutdown,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        lock(&self.sessions)
    }

    /// Runs `f` over the known agents' records, loading them on first use.
    fn known<T>(&self, f: impl FnOnce(&mut HashMap<String, pb::AgentInfo>) -> T) -> Result<T> {
        let mut guard = lock(&self.known);
        let map = match &mut *guard {
            Some(map) => map,
            None => {
                let loaded = self.store.agents()?;
                guard.insert(
                    loaded
                        .into_iter()
                        .map(|a| (a.cluster_id.clone(), a))
                        .collect(),
                )
            }
        };
        Ok(f(map))
    }

    /// Writes an agent's record to the store, then to memory. What the
    /// store already holds but for the session (state, session id,
    /// address, times) is not waited on the disk for: the agent tells it
    /// again when it registers. A new agent, or new facts, version or
    /// capabilities, are written durably.
    fn put_agent(&self, info: pb::AgentInfo) -> Result<()> {
        let same = self.agent_record(&info.cluster_id)?.is_some_and(|k| {
            k.facts == info.facts
                && k.capabilities == info.capabilities
                && k.agent_version == info.agent_version
        });
        if same {
            self.store.note_agent(&info)?;
        } else {
            self.store.put_agent(&info)?;
        }
        self.known(|map| map.insert(info.cluster_id.clone(), info))?;
        Ok(())
    }

    /// Fills in what only the live session knows.
    fn with_live_state(&self, a: &mut pb::AgentInfo, sessions: &HashMap<String, Session>) {
        match sessions.get(&a.cluster_id) {
            Some(s) => {
                a.set_state(if s.last_seen.elapsed() > self.lost_after {
                    pb::AgentState::Lost
                } else {
                    pb::AgentState::Connected
                });
                a.last_seen_unix_ms = s.last_seen_unix_ms;
                a.connected_since_unix_ms = s.connected_since_unix_ms;
                a.session_id = s.id.clone();
                a.peer_address = s.peer.to_string();
            }
            None => {
                a.set_state(pb::AgentState::Disconnected);
                a.session_id.clear();
            }
        }
    }

    /// Registers an agent whose identity the handshake already checked,
    /// replacing any older session of the same cluster, then resyncs.
    pub async fn open_session(
        &self,
        register: pb::Register,
        peer: SocketAddr,
    ) -> Result<OpenedSession> {
        let cluster = register.cluster_id.clone();
        let (tx, rx) = mpsc::channel(256);
        let session_id = new_id();
        let cancel = self.shutdown.child_token();
        let now = unix_ms();
        let info = pb::AgentInfo {
            cluster_id: cluster.clone(),
            state: pb::AgentState::Connected.into(),
            agent_version: register.agent_version.clone(),
            facts: register.facts.clone(),
            capabilities: register.capabilities.clone(),
            last_seen_unix_ms: now,
            connected_since_unix_ms: now,
            session_id: session_id.clone(),
            peer_address: peer.to_string(),
        };
        self.put_agent(info)?;
        let old = self.sessions().insert(
            cluster.clone(),
            Session {
                id: session_id.clone(),
                tx: tx.clone(),
                cancel: cancel.clone(),
                last_seen: Instant::now(),
                last_seen_unix_ms: now,
                connected_since_unix_ms: now,
                peer,
            },
        );
        if let Some(old) = old {
            tracing::info!(%cluster, old_session = %old.id, "agent reconnected; closing its previous session");
            old.cancel.cancel();
        }
        let registered = pb::Registered {
            session_id: session_id.clone(),
            heartbeat_interval_ms: self.heartbeat.as_millis() as u64 as u32,
        };
        let _ = tx.send(Ok(down(Down::Registered(registered)))).await;

        // Resync, part 1: results the agent finished while we were apart.
        for result in register.unacked_results {
            let id = result.id.clone();
            self.complete(&cluster, result)?;
            let _ = tx
                .send(Ok(down(Down::ResultAck(pb::ResultAck { id }))))
                .await;
        }
        // Part 2: what we owe the agent. In-flight work is left alone.
        for mut status in self.store.open_commands(&cluster)? {
            if register.in_flight.contains(&status.command_id) {
                if status.state() != pb::CommandState::Running {
                    status.set_state(pb::CommandState::Running);
                    self.store.note_command(&status)?;
                }
            } else {
                self.deliver(&tx, &mut status).await?;
            }
        }
        let _ = self.events.send(FleetEvent::Session {
            cluster: cluster.clone(),
            connected: true,
        });
        tracing::info!(%cluster, %session_id, %peer, "agent registered");
        crate::metrics::get().session_opened(&cluster);
        Ok(OpenedSession {
            session_id,
            tx,
            rx,
            cancel,
        })
    }

    /// Ends a session if it is still the cluster's current one.
    pub fn close_session(&self, cluster: &str, session_id: &str) {
        let removed = {
            let mut sessions = self.sessions();
            match sessions.get(cluster) {
                Some(s) if s.id == session_id => sessions.remove(cluster),
                _ => None,
            }
        };
        if let Some(s) = removed {
            s.cancel.cancel();
            if let Ok(Some(mut info)) = self.agent_record(cluster) {
                info.last_seen_unix_ms = s.last_seen_unix_ms;
                info.set_state(pb::AgentState::Disconnected);
                info.session_id.clear();
                if let Err(e) = self.put_agent(info) {
                    tracing::warn!(%cluster, error = %e, "cannot record agent disconnect");
                }
            }
            let _ = self.events.send(FleetEvent::Session {
                cluster: cluster.to_string(),
                connected: false,
            });
            tracing::info!(%cluster, %session_id, "agent session closed");
        }
    }

    /// Agents with an open session now.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    pub fn touch(&self, cluster: &str, session_id: &str) {
        if let Some(s) = self.sessions().get_mut(cluster)
            && s.id == session_id
        {
            s.last_seen = Instant::now();
            s.last_seen_unix_ms = unix_ms();
        }
    }

    fn agent_record(&self, cluster: &str) -> Result<Option<pb::AgentInfo>> {
        self.known(|map| map.get(cluster).cloned())
    }

    /// How long an agent may be silent before it counts as lost.
    pub fn lost_after(&self) -> Duration {
        self.lost_after
    }

    /// Whether `cluster`'s agent has a live session now.
    pub fn is_connected(&self, cluster: &str) -> bool {
        self.agent(cluster)
            .is_ok_and(|a| a.state() == pb::AgentState::Connected)
    }

    /// Every known agent with its live state.
    pub fn agents(&self) -> Result<Vec<pb::AgentInfo>> {
        let mut agents: Vec<pb::AgentInfo> = self.known(|map| map.values().cloned().collect())?;
        let sessions = self.sessions();
        for a in &mut agents {
            self.with_live_state(a, &sessions);
        }
        agents.sort_by(|x, y| x.cluster_id.cmp(&y.cluster_id));
        Ok(agents)
    }

    pub fn agent(&self, cluster: &str) -> Result<pb::AgentInfo> {
        let mut a = self
            .agent_record(cluster)?
            .ok_or_else(|| Error::UnknownAgent(cluster.to_string()))?;
        self.with_live_state(&mut a, &self.sessions());
        Ok(a)
    }

    pub fn forget(&self, cluster: &str) -> Result<()> {
        if self.sessions().contains_key(cluster) {
            return Err(Error::AgentConnected(cluster.to_string()));
        }
        if !self.store.delete_agent(cluster)? {
            return Err(Error::UnknownAgent(cluster.to_string()));
        }
        self.known(|map| map.remove(cluster))?;
        Ok(())
    }

    /// Stores a command and sends it if its agent is connected. The same
    /// `request_id` from the same client returns the first command.
    pub async fn submit(
        &self,
        cluster: &str,
        spec: pb::CommandSpec,
        request_id: &str,
        by: &str,
    ) -> Result<pb::CommandStatus> {
        if spec.kind.is_none() {
            return Err(Error::Invalid("command spec has no kind".into()));
        }
        let request_key = (!request_id.is_empty()).then(|| format!("{by}/{request_id}"));
        if let Some(key) = &request_key
            && let Some(existing) = self.store.command_for_request(key)?
        {
            return Ok(existing);
        }
        if self.agent_record(cluster)?.is_none() {
            return Err(Error::UnknownAgent(cluster.to_string()));
        }
        let mut status = pb::CommandStatus {
            command_id: new_id(),
            cluster_id: cluster.to_string(),
            spec: Some(spec),
            state: pb::CommandState::Pending.into(),
            submitted_by: by.to_string(),
            submitted_at_unix_ms: unix_ms(),
            ..Default::default()
        };
        self.store.insert_command(&status, request_key.as_deref())?;
        tracing::info!(command_id = %status.command_id, %cluster, submitted_by = %by, "command stored");
        let tx = self.sessions().get(cluster).map(|s| s.tx.clone());
        if let Some(tx) = tx {
            self.deliver(&tx, &mut status).await?;
        }
        Ok(status)
    }

    async fn deliver(&self, tx: &Outbound, status: &mut pb::CommandStatus) -> Result<()> {
        status.deliveries += 1;
        // Bookkeeping, not waited on the disk for: a delivery lost in a
        // crash is a command delivered again, which the agent runs once.
        self.store.note_command(status)?;
        let command = pb::Command {
            id: status.command_id.clone(),
            spec: status.spec.clone(),
        };
        if tx.send(Ok(down(Down::Command(command)))).await.is_err() {
            tracing::debug!(command_id = %status.command_id, "session gone before delivery; will resend on reconnect");
        }
        Ok(())
    }

    pub fn accepted(&self, cluster: &str, id: &str) -> Result<()> {
        if let Some(mut status) = self.store.command(id)?
            && status.cluster_id == cluster
            && status.state() == pb::CommandState::Pending
        {
            status.set_state(pb::CommandState::Running);
            self.store.note_command(&status)?;
        }
        Ok(())
    }

    /// Records a result once; repeats and strangers' results change nothing.
    pub fn complete(&self, cluster: &str, result: pb::CommandResult) -> Result<()> {
        let Some(mut status) = self.store.command(&result.id)? else {
            tracing::warn!(%cluster, command_id = %result.id, "result for an unknown command ignored");
            return Ok(());
        };
        if status.cluster_id != cluster {
            tracing::warn!(%cluster, command_id = %result.id, owner = %status.cluster_id, "result from the wrong cluster ignored");
            return Ok(());
        }
        if is_finished(&status) {
            return Ok(());
        }
        status.set_state(match &result.outcome {
            Some(pb::command_result::Outcome::Output(_)) => pb::CommandState::Succeeded,
            _ => pb::CommandState::Failed,
        });
        status.finished_at_unix_ms = unix_ms();
        status.result = Some(result);
        self.store.update_command(&status)?;
        if let Ok(mut map) = self.progress.lock() {
            map.remove(&status.command_id);
        }
        tracing::info!(command_id = %status.command_id, %cluster, state = ?status.state(), "command finished");
        let _ = self
            .events
            .send(FleetEvent::Finished(status.command_id.clone()));
        Ok(())
    }

    /// Progress, results and sessions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FleetEvent> {
        self.events.subscribe()
    }

    /// Ends when the coordinator starts shutting down.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await
    }

    /// The coordinator is shutting down: waits end early.
    pub fn stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Keeps the latest progress of a command its own agent reported.
    pub fn record_progress(&self, cluster: &str, p: pb::CommandProgress) -> Result<()> {
        match self.store.command(&p.id)? {
            Some(status) if status.cluster_id == cluster && !is_finished(&status) => {
                let mut map = match self.progress.lock() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                map.insert(p.id.clone(), p.clone());
                drop(map);
                let _ = self.events.send(FleetEvent::Progress(p));
            }
            _ => {
                tracing::debug!(%cluster, command_id = %p.id, "progress for no running command of this cluster ignored")
            }
        }
        Ok(())
    }

    /// The latest progress of a running command, if it reported any.
    pub fn progress(&self, id: &str) -> Option<pb::CommandProgress> {
        let map = match self.progress.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(id).cloned()
    }

    pub fn command(&self, id: &str) -> Result<pb::CommandStatus> {
        self.store
            .command(id)?
            .ok_or_else(|| Error::UnknownCommand(id.to_string()))
    }

    /// The command's status once finished, or as it is when `timeout` ends.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<pb::CommandStatus> {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.command(id)?;
            if is_finished(&status) {
                return Ok(status);
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return Ok(status),
                    _ = self.shutdown.cancelled() => return Ok(status),
                    e = events.recv() => match e {
                        Ok(FleetEvent::Finished(done)) if done == id => break,
                        Ok(_) => {}
                        // Missed some: look at the record again.
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return Ok(status),
                    },
                }
            }
        }
    }
}

impl Fleet {
    /// Resolves with the first of `clusters` whose agent has been away
    /// longer than `--lost-after` (counted from now for one away already);
    /// never, while each comes back in time. Woken by session changes and
    /// by the one deadline due, not by looking again. `None` once the
    /// coordinator stops.
    pub async fn lost(&self, clusters: &[String]) -> Option<String> {
        let mut events = self.subscribe();
        // Since when each of them has been away.
        let mut away: HashMap<String, tokio::time::Instant> = HashMap::new();
        let look = |away: &mut HashMap<String, tokio::time::Instant>| {
            for c in clusters {
                if self.is_connected(c) {
                    away.remove(c);
                } else {
                    away.entry(c.clone())
                        .or_insert_with(tokio::time::Instant::now);
                }
            }
        };
        look(&mut away);
        loop {
            let first = away.iter().min_by_key(|(_, since)| **since);
            let due = async {
                match first {
                    Some((c, since)) => {
                        tokio::time::sleep_until(*since + self.lost_after).await;
                        c.clone()
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cluster = due => return Some(cluster),
                () = self.stopped() => return None,
                e = events.recv() => match e {
                    Ok(FleetEvent::Session { cluster, connected }) if clusters.contains(&cluster) => {
                        if connected {
                            away.remove(&cluster);
                        } else {
                            away.entry(cluster).or_insert_with(tokio::time::Instant::now);
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => look(&mut away),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn down(msg: Down) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage { msg: Some(msg) }
}

/// 128 random bits, hex.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
