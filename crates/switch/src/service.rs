//! [`SwitchService`]: a [`Switch`] started from a [`Store`] with a net client to its host
//! and a net server for its terminals — what a switch daemon runs.
//!
//! Start-up, in order:
//! 1. the terminal sessions are restored from the store (a terminal signed on before a
//!    restart is served without a new sign-on), and the upstream link's zone keys where
//!    the store has them;
//! 2. the reversal engine recovers its journal: reversals and advices left pending are
//!    sent again; admissions whose upstream transaction never reached the journal are
//!    completed as not sent (`91`), those the engine reverses as `98`;
//! 3. the upstream link signs on at every connection and whenever a `77`/`A0`/bad MAC
//!    under the current keys asks for it;
//! 4. the terminal server starts ([`SwitchService::bind`]); a handler runs to its end
//!    even when its terminal goes away (the server's default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use isoswitch_net::{
    Client, ClientConfig, ClientTls, ConnState, DialectCorrelator, Frame, Framing, ReconnectPolicy,
    Request, Server, ServerConfig, ServerControl, ServerTls, TcpConnector, TlsConnector,
};
use isoswitch_reversal::{
    EngineConfig, HostConfig as BookConfig, Journal, LateResponses, ReversalDriver, ReversalEngine,
    ReversalHandler, ReversalProfile, Store,
};
use isoswitch_session::crypto::Key;
use isoswitch_session::{
    HostConfig, HostSession, Kek, MemoryKeyStore, SessionProfile, TerminalConfig, TerminalId,
    TerminalSession,
};
use tokio::sync::mpsc;

use crate::dukpt::DukptPins;
use crate::error::{Result, SwitchError};
use crate::field_map::{FieldMap, Functions, Rule};
use crate::security::SoftSecurity;
use crate::switch::{Switch, SwitchConfig, SwitchParts};
use crate::upstream::{LinkPersistence, SharedSessions, UpstreamConfig, UpstreamLink};

/// Everything a [`SwitchService`] needs besides its store.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The host (`host:port`, length-prefixed `len2` framing).
    pub host_addr: String,
    /// The switch's identity towards the host (DE 41 + DE 42 of its network messages).
    pub switch_id: TerminalId,
    /// The zone master key the host sends the zone working keys under.
    pub zone_key: Key,
    /// How long to wait for the host's answer before the original is in doubt.
    pub upstream_timeout: Duration,
    /// Upstream requests in flight at most.
    pub upstream_in_flight: usize,
    /// Reversals in flight at most (after an outage, the link that came back is not
    /// flooded).
    pub max_reversals_in_flight: usize,
    /// The switch's own settings.
    pub switch: SwitchConfig,
    /// PIN translation for DUKPT terminals through a security module (`None`: every
    /// terminal has session keys).
    pub dukpt: Option<Arc<DukptPins>>,
    /// TLS towards the host (`None`: plain TCP). The host's certificate must name the
    /// host part of [`ServiceConfig::host_addr`] (a DNS name or an IP address), and so
    /// must each of [`ServiceConfig::more_hosts`]'.
    pub host_tls: Option<ClientTls>,
    /// More hosts beside `host_addr`: with any, the switch runs a link pool
    /// ([`crate::pool`]), each host a link of its own (its own sign-on and zone keys),
    /// named `host`, `host-2`, `host-3`… in this order (the `link` label of their
    /// metrics and the name their zone keys are stored under). Empty: the one link
    /// `host`, as without pools.
    pub more_hosts: Vec<String>,
    /// How the pool picks a link (unused without `more_hosts`).
    pub host_strategy: crate::pool::Strategy,
}

/// The name of upstream link `i` (0-based): `host`, then `host-2`, `host-3`…
pub fn link_name(i: usize) -> String {
    match i {
        0 => UPSTREAM_LINK.to_owned(),
        _ => format!("{UPSTREAM_LINK}-{}", i + 1),
    }
}

/// The client of one upstream link (`len2` framing, TLS when configured).
fn spawn_client(
    config: &ServiceConfig,
    addr: &str,
    name: &str,
    unmatched: crate::pool::UpstreamUnmatched,
    iso: &SessionProfile,
) -> Result<Client> {
    let mut cc = ClientConfig::new(Framing::Len2);
    cc.link = name.into();
    cc.max_in_flight = config.upstream_in_flight.max(1);
    cc.write_queue = 4096;
    cc.reconnect = Some(ReconnectPolicy {
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(300),
        ..Default::default()
    });
    let builder =
        Client::builder(cc, DialectCorrelator::new(iso.dialect.clone())).unmatched(unmatched);
    Ok(match &config.host_tls {
        Some(tls) => builder.spawn(
            TlsConnector::new(addr.to_owned(), host_part(addr), tls)
                .map_err(|e| SwitchError::Security(format!("upstream TLS: {e}")))?,
        )?,
        None => builder.spawn(TcpConnector::new(addr.to_owned()))?,
    })
}

/// The name of the upstream link: the `link` label of its metrics, and the name its
/// zone keys are stored under.
pub const UPSTREAM_LINK: &str = "host";

/// The response code a draining switch answers new terminal requests with (`91`:
/// issuer or switch inoperative — the terminal may try again later, elsewhere).
pub const RETRY_CODE: &str = "91";

/// How [`SwitchService::drain`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSummary {
    /// The terminal side's drain.
    pub server: isoswitch_net::DrainReport,
    /// Upstream transactions still undecided when the drain gave up on them (their
    /// reversals are in the journal: the next start sends them).
    pub undecided: usize,
    /// Upstream reversals pending (journaled: the next start sends them).
    pub pending_reversals: usize,
    /// Advices pending (journaled).
    pub pending_advices: usize,
    /// The upstream sign-off was answered.
    pub signed_off: bool,
}

impl std::fmt::Display for DrainSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "terminal side {} ({} handlers aborted), {} upstream undecided, {} reversals and {} advices pending in the journal, {}",
            if self.server.completed { "drained" } else { "cut at the deadline" },
            self.server.aborted_handlers,
            self.undecided,
            self.pending_reversals,
            self.pending_advices,
            if self.signed_off { "signed off upstream" } else { "upstream sign-off not answered" }
        )
    }
}

/// The host part of `host:port` (`[v6]:port` too), for TLS server-name checks.
pub fn host_part(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    }
}

/// The concrete switch a service runs.
pub type ServiceSwitch<St> =
    Switch<MemoryKeyStore, <St as Store>::Idempotency, Client, <St as Store>::Counters>;

/// A started switch; see the module docs.
pub struct SwitchService<St: Store> {
    switch: ServiceSwitch<St>,
    client: Client,
    /// Every upstream link (the first is `switch.upstream()`).
    links: Vec<Arc<UpstreamLink<Client, <St as Store>::Counters>>>,
    answerers: Vec<crate::pool::UpstreamUnmatched>,
    terminal_profile: SessionProfile,
    upstream_timeout: Duration,
    local: fn() -> NaiveDateTime,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<St: Store> std::fmt::Debug for SwitchService<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchService").finish_non_exhaustive()
    }
}

/// The default map from `cup-pos` terminal requests to `iso87-binary` upstream requests.
///
/// # Errors
/// Never for the built-in dialects.
pub fn cup_to_iso87(functions: &Functions) -> Result<FieldMap> {
    let iso =
        isoswitch_codec::Dialect::builtin("iso87-binary").ok_or_else(|| SwitchError::FieldMap {
            map: "cup-to-iso87".into(),
            what: "no dialect iso87-binary".into(),
        })?;
    FieldMap::new(
        "cup-to-iso87",
        &iso,
        vec![
            Rule::copy(2).required(),
            Rule::computed(3, "cup_processing_code").required(),
            Rule::copy(4).required(),
            Rule::computed(7, "transmission_datetime").required(),
            Rule::computed(11, "stan").required(),
            Rule::computed(12, "local_time"),
            Rule::computed(13, "local_date"),
            Rule::copy(14),
            Rule::copy(22),
            Rule::copy(25),
            Rule::computed(32, "acquirer_id").required(),
            Rule::copy(35),
            Rule::computed(37, "rrn").required(),
            Rule::copy(41).required(),
            Rule::copy(42).required(),
            Rule::copy(49),
            Rule::copy(53),
        ],
        functions,
    )
}

/// The default map from `iso87-binary` upstream responses back to `cup-pos` terminal
/// responses: the host's RRN (DE 37) and approval code (DE 38); the rest from the
/// terminal's request.
///
/// # Errors
/// Never for the built-in dialects.
pub fn iso87_to_cup(functions: &Functions) -> Result<FieldMap> {
    let cup =
        isoswitch_codec::Dialect::builtin("cup-pos").ok_or_else(|| SwitchError::FieldMap {
            map: "iso87-to-cup".into(),
            what: "no dialect cup-pos".into(),
        })?;
    FieldMap::new(
        "iso87-to-cup",
        &cup,
        vec![
            Rule::computed(12, "local_time"),
            Rule::computed(13, "local_date"),
            Rule::copy(37),
            Rule::copy(38),
            Rule::copy(39),
        ],
        functions,
    )
}

fn engine_config(c: &ServiceConfig) -> EngineConfig {
    EngineConfig {
        response_timeout: c.upstream_timeout,
        reversal_timeout: c.upstream_timeout.max(Duration::from_millis(100)),
        max_reversal_tries: 5,
        max_reversals_in_flight: c.max_reversals_in_flight.max(1),
        max_in_flight: c.upstream_in_flight.max(1),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        deferred_retry: Some(Duration::from_secs(1)),
        ..EngineConfig::switch()
    }
}

/// The journal name of the upstream reversal engine (a shared store keeps one per
/// node: `upstream@<node>`).
pub const UPSTREAM_JOURNAL: &str = "upstream";

/// Keeps a shared store's leases alive and takes over the upstream reversals that
/// nodes whose lease ran out left pending: each is journaled and sent by this node's
/// engine (`reverse_message`), then handed over ([`Store::hand_over`]). Runs for as
/// long as the driver does; a store without leases returns at once.
pub async fn keep_leases<St, K, S, T, C>(
    store: St,
    switch: Switch<K, S, T, C>,
    dialect: isoswitch_codec::Dialect,
) where
    St: Store + Clone,
    K: isoswitch_session::KeyStore + Send + 'static,
    S: isoswitch_reversal::IdempotencyStore + Send + 'static,
    T: isoswitch_reversal::Transport,
    C: isoswitch_session::counters::Counters + Send + 'static,
{
    let Some(period) = store.lease_renewal() else {
        return;
    };
    let driver = switch.driver().clone();
    let on_taken = |tag| switch.note_taken_over(tag);
    // Claimed a few at a time, each journaled here before the next: a claim lasts one
    // lease, and orphans claimed but not handed over before it ends are claimed again
    // by another node (taken over twice; the host answers the repeat).
    const CLAIM_BATCH: usize = 16;
    let mut more = false;
    loop {
        if !more {
            tokio::time::sleep(period).await;
        }
        let s = store.clone();
        let claimed = tokio::task::spawn_blocking(move || {
            s.renew_leases()?;
            s.claim_orphans(UPSTREAM_JOURNAL, CLAIM_BATCH)
        })
        .await;
        more = matches!(&claimed, Ok(Ok(o)) if o.len() == CLAIM_BATCH);
        let orphans = match claimed {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lease renewal failed");
                continue;
            }
            Err(_) => return,
        };
        for orphan in orphans {
            let original = match isoswitch_codec::Message::decode(&dialect, orphan.message.clone())
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(part = %orphan.part, txn = orphan.id, error = %e, "a claimed reversal's original does not decode; left to its lease");
                    continue;
                }
            };
            // An advice is not in doubt, only its delivery: it is repeated from here.
            // Under the dead node's tag: the outcome completes the terminal's admission
            // (`Switch::completed`), so the terminal's repeat gets an answer.
            on_taken(orphan.tag);
            let taken = if isoswitch_reversal::is_advice(original.mti()) {
                driver.enqueue(original, orphan.tag).await.map(|()| 0)
            } else {
                driver
                    .reverse_message_tagged(original, orphan.reason, orphan.tag)
                    .await
            };
            match taken {
                Ok(txn) => {
                    tracing::info!(part = %orphan.part, from_txn = orphan.id, txn, "took over a reversal of a node whose lease ran out");
                }
                Err(isoswitch_reversal::ReversalError::DriverStopped) => return,
                Err(e) => {
                    tracing::warn!(part = %orphan.part, txn = orphan.id, error = %e, "could not take over a reversal");
                    continue;
                }
            }
            let s = store.clone();
            let o = orphan.clone();
            match tokio::task::spawn_blocking(move || s.hand_over(&o)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(part = %orphan.part, txn = orphan.id, error = %e, "hand-over not recorded (the host answers a repeat with its first answer)")
                }
                Err(_) => return,
            }
        }
        if !more {
            finish_dead_journals(&store, &switch).await;
        }
    }
}

/// The journals of nodes whose lease ran out: what they decided but did not complete in
/// the shared book (an approval whose terminal was never answered, a decline, an advice
/// never sent) is finished here ([`Switch::finish_dead_journal`]); a journal with
/// nothing pending any more is retired.
async fn finish_dead_journals<St, K, S, T, C>(store: &St, switch: &Switch<K, S, T, C>)
where
    St: Store + Clone,
    K: isoswitch_session::KeyStore + Send + 'static,
    S: isoswitch_reversal::IdempotencyStore + Send + 'static,
    T: isoswitch_reversal::Transport,
    C: isoswitch_session::counters::Counters + Send + 'static,
{
    let s = store.clone();
    let dead = match tokio::task::spawn_blocking(move || s.dead_journals(UPSTREAM_JOURNAL, 4)).await
    {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading dead nodes' journals failed");
            return;
        }
        Err(_) => return,
    };
    for (part, records) in dead {
        match switch.finish_dead_journal(&records).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(%part, finished = n, "finished what a dead node left in the shared book");
                }
            }
            Err(e) => {
                tracing::warn!(%part, error = %e, "finishing a dead node's journal failed (tried again)");
                continue;
            }
        }
        let s = store.clone();
        let p = part.clone();
        match tokio::task::spawn_blocking(move || s.retire_journal(&p)).await {
            Ok(Ok(true)) => tracing::info!(%part, "dead node's journal retired"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(%part, error = %e, "retiring a dead node's journal failed")
            }
            Err(_) => return,
        }
    }
}

impl<St: Store + Clone> SwitchService<St>
where
    St::Journal: Journal,
{
    /// Starts the switch over `store`; see the module docs. `local` / `utc` are the
    /// clocks for DE 12/13 and DE 7.
    ///
    /// # Errors
    /// A store that cannot be opened or is damaged, a session that does not decrypt
    /// under `kek`, a bad configuration.
    pub async fn start(
        store: &St,
        kek: Kek,
        keys: MemoryKeyStore,
        config: ServiceConfig,
        local: fn() -> NaiveDateTime,
        utc: fn() -> NaiveDateTime,
    ) -> Result<Self> {
        let cup = SessionProfile::cup_pos()?;
        let iso = SessionProfile::iso87_binary()?;

        // 1. Terminal sessions.
        let sessions = store.sessions("sessions")?;
        let mut terminals = HostSession::new(cup.clone(), HostConfig::default(), keys)?;
        let restored = isoswitch_reversal::restore_host(&mut terminals, &sessions, &kek)?;

        // Upstream links: per host a client, the switch's own session, its stored zone
        // keys.
        let hosts: Vec<&str> = std::iter::once(config.host_addr.as_str())
            .chain(config.more_hosts.iter().map(String::as_str))
            .collect();
        let late = LateResponses::new();
        let mut prepared = Vec::with_capacity(hosts.len());
        for (i, addr) in hosts.iter().enumerate() {
            let name = link_name(i);
            let answerer = crate::pool::upstream_unmatched(late.clone(), iso.dialect.clone());
            let client = spawn_client(&config, addr, &name, answerer.clone(), &iso)?;
            answerer.attach(client.clone());
            let mut tc = TerminalConfig::new(config.switch_id);
            tc.response_timeout = Duration::from_secs(5);
            let counters = match i {
                0 => "upstream-session".to_owned(),
                _ => format!("upstream-session-{name}"),
            };
            let mut up_session = TerminalSession::new(
                iso.clone(),
                tc,
                config.zone_key.clone(),
                store.counters(&counters)?,
            )?;
            let stored = isoswitch_reversal::restore_link(&mut up_session, &sessions, &name, &kek)?;
            prepared.push((name, client, up_session, stored, answerer));
        }
        let stored_zone = prepared.first().and_then(|p| p.3);
        let sessions: SharedSessions = Arc::new(std::sync::Mutex::new(Box::new(sessions)));
        let mut links = Vec::with_capacity(prepared.len());
        let mut clients = Vec::with_capacity(prepared.len());
        let mut answerers = Vec::with_capacity(prepared.len());
        for (name, client, up_session, stored, answerer) in prepared {
            links.push(UpstreamLink::with_persistence(
                UpstreamConfig {
                    name,
                    // With zone keys (restored, or from a sign-on) the link keeps them
                    // across reconnections and restarts until the host refuses them (77 /
                    // A0 / bad MAC): the host keeps its sessions too, and nodes sharing one
                    // identity do not sign on in turn.
                    sign_on_at_connect: false,
                    ..UpstreamConfig::default()
                },
                client.clone(),
                up_session,
                Some(LinkPersistence {
                    sessions: sessions.clone(),
                    kek: kek.clone(),
                }),
                stored,
            ));
            clients.push(client);
            answerers.push(answerer);
        }
        let link = links[0].clone();
        let client = clients[0].clone();
        let pool = (links.len() > 1).then(|| {
            crate::pool::LinkPool::new(
                links
                    .iter()
                    .cloned()
                    .map(crate::pool::PoolMember::client)
                    .collect(),
                config.host_strategy,
                iso.clone(),
            )
        });

        // 2. The reversal engine over its journal.
        let mut journal = store.journal(UPSTREAM_JOURNAL)?;
        let records = journal.load()?;
        // By transaction, not by tag: one terminal original prepared again under new
        // keys has several upstream attempts under its tag, each its own STAN, and a
        // compaction's snapshot does not keep them in the order they were sent.
        let started: std::collections::HashMap<u64, bytes::Bytes> = records
            .iter()
            .filter_map(|r| match r {
                isoswitch_reversal::JournalRecord::Started {
                    id, tag, message, ..
                } if *tag != 0 => Some((*id, message.clone())),
                _ => None,
            })
            .collect();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        // A terminal's admission is completed in the book after the engine finished:
        // until then a compaction must keep what reached the host (see
        // `Switch::completed` and the restart loop below).
        let driver_config = isoswitch_reversal::DriverConfig {
            hold_until_released: true,
            ..isoswitch_reversal::DriverConfig::default()
        };
        let (recovered, driver) = match &pool {
            None => {
                let engine = ReversalEngine::recover(
                    Instant::now(),
                    engine_config(&config),
                    ReversalProfile::iso87(iso.dialect.name())?,
                    link.zone_mac(),
                    0,
                    records,
                )
                .map_err(|e| journal.locate(e))?;
                let recovered = engine.recovered().to_vec();
                let ring = link.ring().clone();
                let driver = ReversalDriver::builder(engine, journal, client.clone())
                    .config(driver_config)
                    .link(UPSTREAM_LINK)
                    .late(late)
                    .events(events_tx)
                    .on_sign_on(move |_| ring.request_sign_on(ring.generation()))
                    .spawn();
                (recovered, driver)
            }
            Some(pool) => {
                // One engine and journal for the pool: the transport picks the link and
                // MACs under its keys; a `77`/`A0`/bad MAC asks that link to sign on.
                let engine = ReversalEngine::recover(
                    Instant::now(),
                    engine_config(&config),
                    ReversalProfile::iso87(iso.dialect.name())?,
                    crate::pool::PoolMac(pool.clone()),
                    0,
                    records,
                )
                .map_err(|e| journal.locate(e))?;
                let recovered = engine.recovered().to_vec();
                let driver = ReversalDriver::builder(
                    engine,
                    journal,
                    crate::pool::PoolTransport(pool.clone()),
                )
                .config(driver_config)
                .link(UPSTREAM_LINK)
                .late(late)
                .events(events_tx)
                .spawn();
                pool.attach_driver(driver.clone());
                (recovered, driver)
            }
        };

        let book = ReversalHandler::new(
            ReversalProfile::cup_pos()?,
            store.idempotency("terminals")?,
            BookConfig::default(),
        );
        let functions = Functions::builtin();
        let parts = SwitchParts {
            config: config.switch.clone(),
            terminals,
            book,
            counters: store.counters("upstream")?,
            upstream: link.clone(),
            driver: driver.clone(),
            security: Arc::new(SoftSecurity),
            dukpt: config.dukpt.clone(),
            to_host: cup_to_iso87(&functions)?,
            to_terminal: iso87_to_cup(&functions)?,
            local,
            utc,
            sessions,
            kek,
        };
        let switch = match &pool {
            Some(pool) => Switch::with_pool(parts, pool.clone()),
            None => Switch::new(parts),
        };
        // A shared store: advices a dead node admitted but never sent upstream are found
        // by their terminals' repeats, once they stay open for two leases.
        let switch = match store.lease_renewal() {
            Some(renewal) => {
                let s = store.clone();
                switch.with_shared_work(
                    Arc::new(move |tag| s.pending_tag(UPSTREAM_JOURNAL, tag)),
                    renewal * 6 + Duration::from_secs(1),
                )
            }
            None => switch,
        };

        // Admissions left open by the previous run: the terminal was never answered.
        // The latest upstream attempt of each admission decides (an earlier one was
        // refused under old keys and prepared again).
        let shared = store.lease_renewal().is_some();
        let latest = isoswitch_reversal::latest_by_tag(&recovered);
        let finished = switch.finish_admissions(&latest, &started, shared).await?;
        let reversed_again = switch.reverse_reversed_approvals(&latest, true).await?;
        tracing::info!(
            store = %store.describe(),
            sessions = restored.restored,
            zone_keys = stored_zone.is_some(),
            recovered = recovered.len(),
            admissions_finished = finished,
            reversed_again,
            "switch state recovered"
        );

        let mut tasks = Vec::new();
        for l in &links {
            // 3. Sign-on at every connection and on request, link by link.
            tasks.push(tokio::spawn(l.clone().keep_signed_on(local)));
            tasks.push(tokio::spawn(crate::upstream::resume_after_sign_on(
                l.ring().clone(),
                driver.clone(),
            )));
        }
        tasks.extend([
            // Engine events: outcomes of transactions nobody waits for any more.
            tokio::spawn(switch.clone().run_events(events_rx)),
            // A shared store: leases, and the reversals of nodes that stopped.
            tokio::spawn(keep_leases(
                store.clone(),
                switch.clone(),
                iso.dialect.clone(),
            )),
        ]);
        Ok(SwitchService {
            switch,
            client,
            links,
            answerers,
            terminal_profile: cup,
            upstream_timeout: config.upstream_timeout,
            local,
            tasks,
        })
    }

    /// The switch.
    pub fn switch(&self) -> &ServiceSwitch<St> {
        &self.switch
    }

    /// The upstream client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Binds the terminal side (`cup-pos` framing) on `listen`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(
        &self,
        listen: &str,
        config: ServerConfig,
    ) -> Result<Server<impl isoswitch_net::Handler>> {
        self.bind_tls(listen, config, None).await
    }

    /// [`SwitchService::bind`], over TLS when `tls` is given (with mutual TLS when it
    /// verifies client certificates). While the server drains
    /// ([`SwitchService::drain`]), new requests are answered [`RETRY_CODE`]
    /// ([`Switch::refusal`]).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind_tls(
        &self,
        listen: &str,
        mut config: ServerConfig,
        tls: Option<ServerTls>,
    ) -> Result<Server<impl isoswitch_net::Handler>> {
        if config.link == ServerConfig::default().link {
            config.link = crate::switch::TERMINAL_LINK.into();
        }
        let sw = self.switch.clone();
        let handler = move |req: Request| {
            let sw = sw.clone();
            async move {
                let header = req.reply_header();
                // The server's decode (made for its span, or now) is the hop's only one.
                let payload = req.frame.payload.clone();
                let answered = match req.into_message() {
                    Some(Ok(msg)) => sw.handle_decoded(msg).await,
                    _ => sw.handle(payload).await,
                };
                match answered {
                    Ok(Some(reply)) => Some(match (header, reply.sign_on_again) {
                        (Some(h), true) => Frame::with_header(h.reply_sign_on_again(), reply.bytes),
                        _ => Frame {
                            header,
                            payload: reply.bytes,
                        },
                    }),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "terminal message not answered");
                        None
                    }
                }
            }
        };
        let sw = self.switch.clone();
        let refuse = move |req: &Request| {
            let msg = req.message()?.ok()?;
            let bytes = sw.refusal(msg, RETRY_CODE)?;
            Some(req.reply(bytes))
        };
        let server = Server::bind(listen, Framing::CupPos, config, handler)
            .await?
            .with_dialect(self.terminal_profile.dialect.clone())
            .answer_while_draining(refuse);
        Ok(match tls {
            Some(tls) => server.with_tls(tls),
            None => server,
        })
    }

    /// Whether the switch can take traffic: the upstream link is connected and signed
    /// on. `Err` says why not (for a readiness check; the caller adds its own, such as
    /// "draining" or the store).
    ///
    /// # Errors
    /// The reason, as text.
    pub fn upstream_ready(&self) -> std::result::Result<(), String> {
        let states: Vec<_> = self
            .links
            .iter()
            .map(|link| {
                let ok = match link.transport().state() {
                    ConnState::Connected if link.ring().current().is_some() => Ok(()),
                    ConnState::Connected => {
                        Err(format!("upstream link {} not signed on", link.name()))
                    }
                    other => Err(format!("upstream link {} {other:?}", link.name()).to_lowercase()),
                };
                ::metrics::gauge!(crate::metrics::UPSTREAM_READY, "link" => link.name().to_owned())
                    .set(if ok.is_ok() { 1.0 } else { 0.0 });
                ok
            })
            .collect();
        // Ready while any link is: a pool takes traffic on the links that are up.
        if states.iter().any(std::result::Result::is_ok) {
            return Ok(());
        }
        Err(states
            .into_iter()
            .filter_map(std::result::Result::err)
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// Every upstream link, in the order of the hosts (the first is the switch's
    /// `upstream()`).
    pub fn links(&self) -> &[Arc<UpstreamLink<Client, <St as Store>::Counters>>] {
        &self.links
    }

    /// Graceful stop, in order: the terminal server drains (`control`: no new
    /// connections, new requests answered [`RETRY_CODE`], requests being handled get
    /// `timeout` to finish); upstream transactions still undecided are given the rest of
    /// `timeout` plus the upstream timeout, after which the engine has declared them in
    /// doubt and journaled their reversals (pending: the next start sends them); the
    /// upstream link signs off; the terminal side's store is synced; the background
    /// tasks stop.
    pub async fn drain(&self, control: &ServerControl, timeout: Duration) -> DrainSummary {
        let started = tokio::time::Instant::now();
        let server = control.drain(timeout).await;
        // The engine decides every transaction it sent within the upstream timeout.
        let deadline = started + timeout + self.upstream_timeout + Duration::from_millis(500);
        let mut status = self.switch.driver().status().await.ok();
        while let Some(s) = status {
            let now = tokio::time::Instant::now();
            // Reversals get what is left of `timeout` to be acknowledged; then they stay
            // journaled.
            let settled =
                s.in_flight == 0 && (s.pending_reversals == 0 || now >= started + timeout);
            if settled || now >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            status = self.switch.driver().status().await.ok();
        }
        for t in &self.tasks {
            t.abort();
        }
        let mut signed_off = true;
        for link in &self.links {
            if let Err(e) = link.sign_off(self.local()).await {
                tracing::warn!(link = %link.name(), error = %e, "upstream sign-off");
                signed_off = false;
            }
        }
        for a in &self.answerers {
            a.detach();
        }
        if let Err(e) = self.switch.sync_store().await {
            tracing::error!(error = %e, "store sync at drain");
        }
        let s = status.unwrap_or_default();
        DrainSummary {
            server,
            undecided: s.in_flight,
            pending_reversals: s.pending_reversals,
            pending_advices: s.pending_advices,
            signed_off,
        }
    }

    fn local(&self) -> NaiveDateTime {
        (self.local)()
    }

    /// Pending upstream reversals.
    ///
    /// # Errors
    /// The driver stopped.
    pub async fn pending_reversals(&self) -> Result<usize> {
        Ok(self.switch.driver().status().await?.pending_reversals)
    }

    /// Stops the background tasks.
    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        for a in &self.answerers {
            a.detach();
        }
    }
}
