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
//! 4. the terminal server starts ([`SwitchService::serve`]); a handler runs to its end
//!    even when its terminal goes away (the server's default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use isoswitch_net::{
    Client, ClientConfig, DialectCorrelator, Frame, Framing, ReconnectPolicy, Request, Server,
    ServerConfig, TcpConnector,
};
use isoswitch_reversal::{
    EngineConfig, Finish, HostConfig as BookConfig, Journal, LateResponses, Outcome,
    RecoveredState, ReversalDriver, ReversalEngine, ReversalHandler, ReversalProfile, Store,
};
use isoswitch_session::crypto::Key;
use isoswitch_session::{
    HostConfig, HostSession, Kek, MemoryKeyStore, SessionProfile, TerminalConfig, TerminalId,
    TerminalSession,
};
use tokio::sync::mpsc;

use crate::error::{Result, SwitchError};
use crate::field_map::{FieldMap, Functions, Rule};
use crate::security::SoftSecurity;
use crate::switch::{tag_of, Switch, SwitchConfig, SwitchParts};
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
}

/// The concrete switch a service runs.
pub type ServiceSwitch<St> =
    Switch<MemoryKeyStore, <St as Store>::Idempotency, Client, <St as Store>::Counters>;

/// A started switch; see the module docs.
pub struct SwitchService<St: Store> {
    switch: ServiceSwitch<St>,
    client: Client,
    terminal_profile: SessionProfile,
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

impl<St: Store> SwitchService<St>
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

        // Upstream link: the client, the switch's own session, its stored zone keys.
        let mut cc = ClientConfig::new(Framing::Len2);
        cc.max_in_flight = config.upstream_in_flight.max(1);
        cc.write_queue = 4096;
        cc.reconnect = Some(ReconnectPolicy {
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(300),
            ..Default::default()
        });
        let late = LateResponses::new();
        let client = Client::builder(cc, DialectCorrelator::new(iso.dialect.clone()))
            .unmatched(late.clone())
            .spawn(TcpConnector::new(config.host_addr.clone()))?;
        let mut tc = TerminalConfig::new(config.switch_id);
        tc.response_timeout = Duration::from_secs(5);
        let mut up_session = TerminalSession::new(
            iso.clone(),
            tc,
            config.zone_key.clone(),
            store.counters("upstream-session")?,
        )?;
        let link_name = "host";
        let stored_zone =
            isoswitch_reversal::restore_link(&mut up_session, &sessions, link_name, &kek)?;
        let sessions: SharedSessions = Arc::new(std::sync::Mutex::new(Box::new(sessions)));
        let link = UpstreamLink::with_persistence(
            UpstreamConfig {
                name: link_name.into(),
                // With zone keys (restored, or from a sign-on) the link keeps them across
                // reconnections and restarts until the host refuses them (77 / A0 / bad
                // MAC): the host keeps its sessions too, and nodes sharing one identity do
                // not sign on in turn.
                sign_on_at_connect: false,
                ..UpstreamConfig::default()
            },
            client.clone(),
            up_session,
            Some(LinkPersistence {
                sessions: sessions.clone(),
                kek: kek.clone(),
            }),
            stored_zone,
        );

        // 2. The reversal engine over its journal.
        let mut journal = store.journal("upstream")?;
        let records = journal.load()?;
        let started: std::collections::HashMap<u64, bytes::Bytes> = records
            .iter()
            .filter_map(|r| match r {
                isoswitch_reversal::JournalRecord::Started { tag, message, .. } if *tag != 0 => {
                    Some((*tag, message.clone()))
                }
                _ => None,
            })
            .collect();
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
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let ring = link.ring().clone();
        let driver = ReversalDriver::builder(engine, journal, client.clone())
            .late(late)
            .events(events_tx)
            .on_sign_on(move |_| ring.request_sign_on(ring.generation()))
            .spawn();

        let book = ReversalHandler::new(
            ReversalProfile::cup_pos()?,
            store.idempotency("terminals")?,
            BookConfig::default(),
        );
        let functions = Functions::builtin();
        let switch = Switch::new(SwitchParts {
            config: config.switch.clone(),
            terminals,
            book,
            counters: store.counters("upstream")?,
            upstream: link.clone(),
            driver: driver.clone(),
            security: Arc::new(SoftSecurity),
            to_host: cup_to_iso87(&functions)?,
            to_terminal: iso87_to_cup(&functions)?,
            local,
            utc,
            sessions,
            kek,
        });

        // Admissions left open by the previous run: the terminal was never answered.
        let open: Vec<u64> =
            switch.with_book(|b| b.admitted().iter().map(|t| tag_of(t.key())).collect());
        let mut finished = 0usize;
        for tag in open {
            let state = recovered.iter().find(|r| r.tag == tag).map(|r| r.state);
            let outcome = match state {
                // The engine has it (an advice being repeated, a reversal pending): its
                // outcome arrives as an event.
                Some(RecoveredState::Repeating)
                | Some(RecoveredState::Finished(Finish::Reverse { .. })) => continue,
                // Approved upstream, but the terminal never heard it: reversed upstream
                // (from the journaled original), declined 98 to the terminal.
                Some(RecoveredState::Finished(Finish::Approved { .. })) => {
                    if let Some(original) = started.get(&tag) {
                        if let Ok(m) =
                            isoswitch_codec::Message::decode(&iso.dialect, original.clone())
                        {
                            switch
                                .driver()
                                .reverse_message_tagged(
                                    m,
                                    isoswitch_reversal::ReversalReason::Recovered,
                                    tag,
                                )
                                .await?;
                        }
                    }
                    Outcome::Reversed {
                        reason: isoswitch_reversal::ReversalReason::Recovered,
                    }
                }
                Some(RecoveredState::Finished(Finish::Declined { code })) => Outcome::Declined {
                    code,
                    response: Box::new(isoswitch_codec::Message::new(
                        &iso.dialect,
                        isoswitch_codec::Mti::ZERO,
                    )),
                },
                Some(RecoveredState::Finished(_)) | Some(RecoveredState::ReversalAcked { .. }) => {
                    Outcome::Reversed {
                        reason: isoswitch_reversal::ReversalReason::Recovered,
                    }
                }
                // Never journaled upstream: nothing reached the host.
                None => Outcome::NotSent {
                    reason: isoswitch_reversal::NotSentReason::Rejected,
                },
            };
            switch.completed(tag, &outcome).await?;
            finished += 1;
        }
        tracing::info!(
            store = %store.describe(),
            sessions = restored.restored,
            zone_keys = stored_zone.is_some(),
            recovered = recovered.len(),
            admissions_finished = finished,
            "switch state recovered"
        );

        let tasks = vec![
            // 3. Sign-on at every connection and on request.
            tokio::spawn(link.clone().keep_signed_on(local)),
            tokio::spawn(crate::upstream::resume_after_sign_on(
                link.ring().clone(),
                driver.clone(),
            )),
            // Engine events: outcomes of transactions nobody waits for any more.
            tokio::spawn(switch.clone().run_events(events_rx)),
        ];
        Ok(SwitchService {
            switch,
            client,
            terminal_profile: cup,
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
        let sw = self.switch.clone();
        let handler = move |req: Request| {
            let sw = sw.clone();
            async move {
                let header = req.reply_header();
                match sw.handle(req.frame.payload.clone()).await {
                    Ok(Some(reply)) => Some(match (header, reply.sign_on_again) {
                        (Some(h), true) => Frame::with_header(h.reply_sign_on_again(), reply.bytes),
                        _ => req.reply(reply.bytes),
                    }),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "terminal message not answered");
                        None
                    }
                }
            }
        };
        Ok(Server::bind(listen, Framing::CupPos, config, handler)
            .await?
            .with_dialect(self.terminal_profile.dialect.clone()))
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
    }
}
