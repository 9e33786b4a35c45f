//! The upstream link: a net [`Client`](isoswitch_net::Client) and a [`TerminalSession`] (the switch is a
//! terminal to its host), with the zone keys it holds as numbered generations.
//!
//! - [`ZoneKeys`]: one generation of working keys (MAK, PIK) received at a network
//!   sign-on, plus the previous MAK (answers in flight during a key change still verify).
//! - [`ZoneKeyRing`]: the current generation, shared by everything that seals or
//!   verifies upstream messages. A sign-on installs generation `g + 1`; a caller that saw
//!   `77`/`A0` under generation `g` asks for a new sign-on *only if `g` is still current*,
//!   so a burst of refusals causes one sign-on, not one each.
//! - [`ZoneMac`]: the reversal engine's MAC hook over the ring: it MACs each message under
//!   the current MAK when it leaves. A PIN block translated to generation `g`'s PIK is noted
//!   with its generation ([`ZoneKeyRing::note_pin_block`]); if the keys changed before its
//!   message left, the message is refused (the engine reports it not sent, the caller
//!   prepares it again under the new keys) instead of going out with a PIN block under
//!   one generation and a MAC under the next.
//! - [`UpstreamLink`]: the transport (a net `Client`, or an in-memory host in tests) and
//!   the session; [`UpstreamLink::sign_on`] runs the
//!   0800/0810 exchange and installs the keys; [`UpstreamLink::keep_signed_on`] signs on at
//!   every (re)connection and when asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use isoswitch_codec::{Message, MessageView};
use isoswitch_reversal::{
    Answer, ReversalError, Security, SessionStore, Transport, UpstreamSave, Verify,
};
use isoswitch_session::counters::Counters;
use isoswitch_session::crypto::Key;
use isoswitch_session::{Inbound, Kek, SessionProfile, TerminalSession, WrappedKey};
use tokio::sync::{watch, Mutex};

use crate::error::{Result, SwitchError};

/// One generation of zone working keys.
pub struct ZoneKeys {
    /// 1 for the first sign-on of this process, then counting up.
    pub generation: u64,
    /// MAC key.
    pub mak: Key,
    /// PIN key.
    pub pik: Key,
    /// The MAK of the generation before (answers to messages sealed under it still
    /// verify during a key change).
    pub previous_mak: Option<Key>,
    /// The PIK under the zone master key as the host sent it (0810 key field), with its
    /// check value: what a security module holding the ZMK imports
    /// ([`crate::DukptPins`]) without anyone wrapping the clear PIK again. `None` for
    /// keys installed without it.
    pub pik_under_zmk: Option<WrappedKey>,
}

impl std::fmt::Debug for ZoneKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneKeys")
            .field("generation", &self.generation)
            .field("mak_kcv", &self.mak.kcv())
            .field("pik_kcv", &self.pik.kcv())
            .finish_non_exhaustive()
    }
}

impl ZoneKeys {
    /// Seals `msg` under this generation's MAK (messages the profile does not MAC are
    /// only encoded).
    ///
    /// # Errors
    /// Codec and session errors.
    pub fn seal(&self, profile: &SessionProfile, msg: &mut Message) -> Result<Bytes> {
        if !profile.requires_mac(msg.mti()) {
            return Ok(msg.to_bytes()?);
        }
        Ok(profile.seal(&self.mak, msg)?)
    }

    /// Checks the MAC of an answer under the current MAK, then the previous one.
    pub fn verify(&self, profile: &SessionProfile, view: &MessageView<'_>) -> bool {
        if !profile.requires_mac(view.mti()) {
            return true;
        }
        profile.verify_mac(&self.mak, view).is_ok()
            || self
                .previous_mak
                .as_ref()
                .is_some_and(|k| profile.verify_mac(k, view).is_ok())
    }
}

/// The current zone keys and a channel asking for a new sign-on; see the module docs.
#[derive(Debug)]
pub struct ZoneKeyRing {
    current: RwLock<Option<Arc<ZoneKeys>>>,
    generation: AtomicU64,
    resign: watch::Sender<u64>,
    installed: watch::Sender<u64>,
    pin_blocks: std::sync::Mutex<PinBlockNotes>,
}

/// PIN blocks translated and not yet sent, with the generation of their PIK.
#[derive(Debug, Default)]
struct PinBlockNotes {
    by_block: std::collections::HashMap<Vec<u8>, u64>,
    order: std::collections::VecDeque<Vec<u8>>,
}

/// The most PIN blocks noted at once (older notes are dropped: their messages are long
/// gone or will be refused and prepared again).
const MAX_PIN_NOTES: usize = 65_536;

impl ZoneKeyRing {
    /// No keys yet (generation 0).
    pub fn new() -> Arc<ZoneKeyRing> {
        let (resign, _) = watch::channel(0);
        let (installed, _) = watch::channel(0);
        Arc::new(ZoneKeyRing {
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            resign,
            installed,
            pin_blocks: std::sync::Mutex::new(PinBlockNotes::default()),
        })
    }

    /// The current keys, if signed on.
    pub fn current(&self) -> Option<Arc<ZoneKeys>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current generation (0 before the first sign-on).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Installs new keys as the next generation (`pik_under_zmk`: the PIK as the host
    /// sent it, see [`ZoneKeys::pik_under_zmk`]); returns it.
    pub fn install(&self, mak: Key, pik: Key, pik_under_zmk: Option<WrappedKey>) -> u64 {
        let mut cur = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = self.generation.load(Ordering::Acquire) + 1;
        let previous_mak = cur.as_ref().map(|k| k.mak.clone());
        *cur = Some(Arc::new(ZoneKeys {
            generation,
            mak,
            pik,
            previous_mak,
            pik_under_zmk,
        }));
        self.generation.store(generation, Ordering::Release);
        drop(cur);
        self.installed.send_replace(generation);
        generation
    }

    /// Notes that `block` was translated to the PIK of `generation` (see the module docs).
    pub fn note_pin_block(&self, block: &[u8], generation: u64) {
        let mut n = self
            .pin_blocks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if n.by_block.insert(block.to_vec(), generation).is_none() {
            n.order.push_back(block.to_vec());
        }
        while n.order.len() > MAX_PIN_NOTES {
            if let Some(old) = n.order.pop_front() {
                n.by_block.remove(&old);
            }
        }
    }

    /// The generation `block` was noted with (the note is taken).
    fn take_pin_block(&self, block: &[u8]) -> Option<u64> {
        let mut n = self
            .pin_blocks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let g = n.by_block.remove(block)?;
        if let Some(i) = n.order.iter().position(|b| b == block) {
            n.order.remove(i);
        }
        Some(g)
    }

    /// The generation after every install (e.g. to tell a reversal engine that sending
    /// may resume after a sign-on).
    pub fn installed(&self) -> watch::Receiver<u64> {
        self.installed.subscribe()
    }

    /// Asks for a new sign-on because generation `seen` was refused (77, A0, a MAC that
    /// does not verify); ignored when a newer generation is already installed.
    pub fn request_sign_on(&self, seen: u64) {
        if self.generation() == seen {
            self.resign.send_replace(seen.wrapping_add(1));
        }
    }

    /// Sign-on requests, for the task that carries them out.
    pub fn sign_on_requests(&self) -> watch::Receiver<u64> {
        self.resign.subscribe()
    }
}

/// The reversal engine's MAC hook over a [`ZoneKeyRing`]; see the module docs.
#[derive(Debug, Clone)]
pub struct ZoneMac {
    profile: SessionProfile,
    ring: Arc<ZoneKeyRing>,
    link: String,
}

impl ZoneMac {
    /// Over `profile` (the upstream dialect's) and `ring`.
    pub fn new(profile: SessionProfile, ring: Arc<ZoneKeyRing>) -> ZoneMac {
        ZoneMac {
            profile,
            ring,
            link: "upstream".to_owned(),
        }
    }

    /// The `link` label of its MAC-failure metric (default `"upstream"`).
    pub fn with_link(mut self, link: impl Into<String>) -> ZoneMac {
        self.link = link.into();
        self
    }
}

/// A message prepared under an older key generation carries a PIN block under that
/// generation's PIK: it must be prepared again.
fn stale_pin_block(msg: &Message) -> ReversalError {
    ReversalError::Session(isoswitch_session::SessionError::NotSignedOn {
        terminal: msg.get(41).unwrap_or_default(),
    })
}

impl Security for ZoneMac {
    fn seal(&mut self, msg: &mut Message) -> isoswitch_reversal::Result<Bytes> {
        let Some(keys) = self.ring.current() else {
            return Err(stale_pin_block(msg));
        };
        if !self.profile.requires_mac(msg.mti()) {
            return Ok(msg.to_bytes()?);
        }
        // A PIN block translated under an older generation must not leave under this MAC.
        if let Some(f) = msg.field(52) {
            if let Some(g) = self.ring.take_pin_block(&f.bytes()) {
                if g != keys.generation {
                    return Err(stale_pin_block(msg));
                }
            }
        }
        Ok(self.profile.seal(&keys.mak, msg)?)
    }

    fn verify(&mut self, bytes: &Bytes) -> std::result::Result<Message, Verify> {
        self.check(Answer::Bytes(bytes))
    }

    fn verify_decoded(&mut self, msg: Message) -> std::result::Result<Message, Verify> {
        self.check(Answer::Decoded(msg))
    }
}

impl ZoneMac {
    fn check(&self, answer: Answer<'_>) -> std::result::Result<Message, Verify> {
        let ring = &self.ring;
        let checked = isoswitch_reversal::verify_answer(&self.profile, answer, |view| {
            ring.current()
                .is_some_and(|keys| keys.verify(&self.profile, view))
        });
        match &checked {
            // 77 / A0: the host did not act on it and asks for a new sign-on (such an
            // answer usually has no MAC: the host has no keys for us).
            Err(Verify::SignOnAgain { .. }) => ring.request_sign_on(ring.generation()),
            Err(Verify::BadMac) => {
                ::metrics::counter!(crate::metrics::MAC_FAILURES, "link" => self.link.clone())
                    .increment(1);
                ring.request_sign_on(ring.generation());
            }
            _ => {}
        }
        checked
    }
}

/// A session store shared by the parts of a switch (terminal sessions and the upstream
/// link's zone keys live in one store part).
pub type SharedSessions = Arc<std::sync::Mutex<Box<dyn SessionStore>>>;

/// Where an [`UpstreamLink`] keeps its session (zone keys, generation) after a sign-on.
#[derive(Clone)]
pub struct LinkPersistence {
    /// The store.
    pub sessions: SharedSessions,
    /// The key-encryption key the snapshot is sealed under.
    pub kek: Kek,
}

impl std::fmt::Debug for LinkPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkPersistence")
            .field("kek", &self.kek)
            .finish()
    }
}

/// Settings of an [`UpstreamLink`].
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The link's name (logs, metrics).
    pub name: String,
    /// How long to wait for the 0810.
    pub sign_on_timeout: Duration,
    /// Wait between failed sign-on attempts.
    pub retry: Duration,
    /// Sign on again at every new connection (a switch's network sign-on with its host:
    /// `true`); a POS terminal keeps its session across reconnections (`false`) and signs
    /// on only when it has no keys or is asked to (77 / A0 / bad MAC).
    pub sign_on_at_connect: bool,
    /// How long a claim on signing on ([`SessionStore::claim_sign_on`]) lasts at most:
    /// the exchange (`sign_on_timeout`) and the store's writes of the new keys, with
    /// their own timeouts, must fit in it, or a waiting node could sign on too. It is
    /// released as soon as the keys are stored; only a node that dies holding it makes
    /// the others wait this long. At least `sign_on_timeout` + 10 s is used (a store
    /// write's default timeout is 5 s, and a stale snapshot takes two).
    pub claim_lease: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            name: "host".into(),
            sign_on_timeout: Duration::from_secs(2),
            retry: Duration::from_millis(200),
            sign_on_at_connect: true,
            claim_lease: Duration::from_secs(15),
        }
    }
}

/// The switch as a terminal of its host; see the module docs.
pub struct UpstreamLink<T: Transport, C: Counters + Send + 'static> {
    config: UpstreamConfig,
    transport: T,
    session: Mutex<TerminalSession<C>>,
    ring: Arc<ZoneKeyRing>,
    profile: SessionProfile,
    sign_ons: AtomicU64,
    persistence: Option<LinkPersistence>,
    stored_generation: std::sync::Mutex<Option<u64>>,
    /// The sealed snapshot this link last saved or restored: a different one in the
    /// store means another node sharing the identity signed on since.
    last_sealed: std::sync::Mutex<Option<Vec<u8>>>,
    adoptions: AtomicU64,
}

impl<T: Transport, C: Counters + Send + 'static> std::fmt::Debug for UpstreamLink<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLink")
            .field("name", &self.config.name)
            .field("generation", &self.ring.generation())
            .finish_non_exhaustive()
    }
}

impl<T: Transport, C: Counters + Send + 'static> UpstreamLink<T, C> {
    /// Over a transport (e.g. a spawned net `Client`) and the switch's terminal session to
    /// the host.
    pub fn new(config: UpstreamConfig, transport: T, session: TerminalSession<C>) -> Arc<Self> {
        Self::with_persistence(config, transport, session, None, None)
    }

    /// As [`UpstreamLink::new`], writing the session to `persistence` after every sign-on
    /// (`stored`: the generation the store holds now, if any). A restarted switch restores
    /// the zone keys from there and needs no new sign-on while the host keeps them too.
    pub fn with_persistence(
        config: UpstreamConfig,
        transport: T,
        session: TerminalSession<C>,
        persistence: Option<LinkPersistence>,
        stored: Option<u64>,
    ) -> Arc<Self> {
        let profile = session.profile().clone();
        let keys = session
            .working_keys()
            .map(|k| (k.mak().clone(), k.pik().clone(), session.pik_under_master()));
        let last_sealed = match (&persistence, stored) {
            (Some(p), Some(_)) => p
                .sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .upstream(&config.name)
                .ok()
                .flatten()
                .map(|s| s.bytes),
            _ => None,
        };
        let link = Arc::new(UpstreamLink {
            config,
            transport,
            session: Mutex::new(session),
            ring: ZoneKeyRing::new(),
            profile,
            sign_ons: AtomicU64::new(0),
            persistence,
            stored_generation: std::sync::Mutex::new(stored),
            last_sealed: std::sync::Mutex::new(last_sealed),
            adoptions: AtomicU64::new(0),
        });
        if let Some((mak, pik, wrapped)) = keys {
            link.ring.install(mak, pik, wrapped);
        }
        link
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The zone keys.
    pub fn ring(&self) -> &Arc<ZoneKeyRing> {
        &self.ring
    }

    /// The upstream session profile.
    pub fn profile(&self) -> &SessionProfile {
        &self.profile
    }

    /// The MAC hook for the reversal engine.
    pub fn zone_mac(&self) -> ZoneMac {
        ZoneMac::new(self.profile.clone(), self.ring.clone()).with_link(self.config.name.clone())
    }

    /// Sign-ons completed by this link.
    pub fn sign_ons(&self) -> u64 {
        self.sign_ons.load(Ordering::Relaxed)
    }

    /// Times this link adopted zone keys another node had signed on with instead of
    /// signing on itself.
    pub fn adoptions(&self) -> u64 {
        self.adoptions.load(Ordering::Relaxed)
    }

    /// Signs on (0800/0810) unless a generation newer than `seen` is installed already,
    /// or the store holds keys that another node sharing this identity signed on with
    /// after this link's (those are adopted: nodes do not sign on in turn against each
    /// other); returns the current generation.
    ///
    /// With a store, the sign-on is claimed first ([`SessionStore::claim_sign_on`]):
    /// while another node sharing the store holds the claim, this link does not sign on
    /// and adopts that node's keys on a later call.
    ///
    /// # Errors
    /// The host did not answer, the answer was not a good sign-on, or another node is
    /// signing on now ([`SwitchError::SignOnElsewhere`]).
    pub async fn sign_on(&self, seen: u64, local: chrono::NaiveDateTime) -> Result<u64> {
        let mut session = self.session.lock().await;
        let current = self.ring.generation();
        if current != seen {
            return Ok(current);
        }
        if let Some(g) = self.adopt_stored(&mut session)? {
            return Ok(g);
        }
        // One node at a time signs a shared identity on: the others adopt its keys.
        if !self.claim_sign_on()? {
            return Err(SwitchError::SignOnElsewhere {
                link: self.config.name.clone(),
            });
        }
        let signed = self.exchange_sign_on(&mut session, local).await;
        if let Err(e) = self.release_sign_on() {
            // The claim lapses with its lease.
            tracing::warn!(link = %self.config.name, error = %e, "upstream sign-on claim not released");
        }
        signed
    }

    fn claim_sign_on(&self) -> Result<bool> {
        let Some(p) = &self.persistence else {
            return Ok(true);
        };
        Ok(p.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .claim_sign_on(
                &self.config.name,
                self.config
                    .claim_lease
                    .max(self.config.sign_on_timeout + Duration::from_secs(10)),
            )?)
    }

    fn release_sign_on(&self) -> Result<()> {
        let Some(p) = &self.persistence else {
            return Ok(());
        };
        Ok(p.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .release_sign_on(&self.config.name)?)
    }

    /// The 0800/0810 exchange of [`UpstreamLink::sign_on`], the claim held.
    async fn exchange_sign_on(
        &self,
        session: &mut TerminalSession<C>,
        local: chrono::NaiveDateTime,
    ) -> Result<u64> {
        let bytes = session.sign_on(Instant::now(), local)?;
        let resp = match self
            .transport
            .request(bytes, self.config.sign_on_timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // No answer will come for this exchange: end it in the session too (a
                // sign-on left pending refuses the restore of keys another node signed
                // on with, and the link would neither adopt nor sign on again).
                expire_pending(session);
                return Err(SwitchError::Security(format!("sign-on: {e}")));
            }
        };
        let answered = session.handle_message(Instant::now(), resp);
        if answered.is_err() {
            expire_pending(session);
        }
        match answered? {
            Inbound::SignedOn { .. } => {
                let keys = session
                    .working_keys()
                    .ok_or_else(|| SwitchError::NotSignedOn {
                        link: self.config.name.clone(),
                    })?;
                let g = self.ring.install(
                    keys.mak().clone(),
                    keys.pik().clone(),
                    session.pik_under_master(),
                );
                self.sign_ons.fetch_add(1, Ordering::Relaxed);
                ::metrics::counter!(crate::metrics::SIGN_ONS, "link" => self.config.name.clone())
                    .increment(1);
                self.persist(session)?;
                tracing::info!(link = %self.config.name, generation = g, mak_kcv = %keys.mak().kcv(), "signed on upstream");
                Ok(g)
            }
            other => Err(SwitchError::Security(format!(
                "sign-on: unexpected answer {other:?}"
            ))),
        }
    }

    /// The link's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Signs off (0820) and writes the session without keys to the store, so that the
    /// next start signs on afresh. Stop [`UpstreamLink::keep_signed_on`] first, or it
    /// signs on again.
    ///
    /// # Errors
    /// Not signed on, the host did not answer, the store failed.
    pub async fn sign_off(&self, local: chrono::NaiveDateTime) -> Result<()> {
        let mut session = self.session.lock().await;
        let bytes = session.sign_off(Instant::now(), local)?;
        let answer = self
            .transport
            .request(bytes, self.config.sign_on_timeout)
            .await
            .map_err(|e| SwitchError::Security(format!("sign-off: {e}")));
        if let Ok(resp) = &answer {
            if let Err(e) = session.handle_message(Instant::now(), resp.clone()) {
                tracing::warn!(link = %self.config.name, error = %e, "sign-off answer not understood");
            }
        }
        self.persist(&session)?;
        answer?;
        tracing::info!(link = %self.config.name, "signed off upstream");
        Ok(())
    }

    /// Installs the stored zone keys if the store holds a snapshot this link neither
    /// saved nor restored (another node's sign-on); the new ring generation if it did.
    fn adopt_stored(&self, session: &mut TerminalSession<C>) -> Result<Option<u64>> {
        let Some(p) = &self.persistence else {
            return Ok(None);
        };
        let stored = p
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .upstream(&self.config.name)?;
        let Some(sealed) = stored else {
            return Ok(None);
        };
        let mut last = self
            .last_sealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_deref() == Some(sealed.bytes.as_slice()) {
            // The store holds this link's own keys: they are the current ones, and the
            // host refused them: sign on.
            return Ok(None);
        }
        session.restore(sealed.open(&p.kek)?)?;
        let keys = session
            .working_keys()
            .ok_or_else(|| SwitchError::NotSignedOn {
                link: self.config.name.clone(),
            })?;
        let g = self.ring.install(
            keys.mak().clone(),
            keys.pik().clone(),
            session.pik_under_master(),
        );
        *self
            .stored_generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sealed.generation);
        *last = Some(sealed.bytes);
        self.adoptions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(link = %self.config.name, generation = g, stored = sealed.generation, "adopted the zone keys another node signed on with");
        Ok(Some(g))
    }

    /// Writes the session (sealed) to the store, if the link has one.
    fn persist(&self, session: &TerminalSession<C>) -> Result<()> {
        let Some(p) = &self.persistence else {
            return Ok(());
        };
        let sealed = session.export().seal(&p.kek)?;
        let mut stored = self
            .stored_generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut store = p
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match store.save_upstream(&self.config.name, &sealed, *stored)? {
            UpstreamSave::Saved => *stored = Some(sealed.generation),
            UpstreamSave::Stale { current } => {
                // Another node shares this identity and signed on meanwhile: write ours
                // over it (the host now holds our keys for this identity).
                store.save_upstream(&self.config.name, &sealed, current)?;
                *stored = Some(sealed.generation);
            }
        }
        *self
            .last_sealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sealed.bytes);
        Ok(())
    }

    /// Keeps the link signed on for as long as the returned task runs: at start, at every
    /// new connection of the transport ([`Transport::connections`] grows) and whenever
    /// [`ZoneKeyRing::request_sign_on`] asks. `local` gives the local time for DE 12/13.
    pub async fn keep_signed_on(self: Arc<Self>, local: fn() -> chrono::NaiveDateTime) {
        let mut requests = self.ring.sign_on_requests();
        // Keys restored or a sign-on already done on this connection: none needed now.
        let mut connections = self
            .ring
            .current()
            .is_some()
            .then(|| self.transport.connections());
        let mut woken = false;
        loop {
            let now = self.transport.connections();
            let reconnected = self.config.sign_on_at_connect && connections != Some(now);
            let asked = std::mem::take(&mut woken) || requests.has_changed().unwrap_or(false);
            if asked {
                requests.borrow_and_update();
            }
            if reconnected || asked || self.ring.current().is_none() {
                let seen = self.ring.generation();
                match self.sign_on(seen, local()).await {
                    Ok(_) => connections = Some(now),
                    Err(e) => {
                        if matches!(e, SwitchError::SignOnElsewhere { .. }) {
                            tracing::debug!(link = %self.config.name, "another node is signing on: adopting its keys once stored");
                        } else {
                            tracing::warn!(link = %self.config.name, error = %e, "upstream sign-on failed");
                        }
                        tokio::time::sleep(self.config.retry).await;
                        // Try again while the refused generation is still the current
                        // one: it still needs new keys (the engine holds its traffic
                        // until then), from this node's next sign-on or another node's.
                        // Not when new keys were installed and only storing them failed:
                        // another 0800 would change the host's keys under the traffic.
                        woken = self.ring.generation() == seen;
                        if !woken {
                            // Signed on, on this connection: keys in use.
                            connections = Some(now);
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                changed = requests.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    woken = true;
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// Ends a link session's pending exchange (a sign-on whose answer will not be handled)
/// as its deadline would, and drops the events nobody reads.
fn expire_pending<C: Counters>(session: &mut TerminalSession<C>) {
    if let Some(deadline) = session.poll_timeout() {
        session.handle_timeout(deadline);
    }
    while session.poll_event().is_some() {}
}

/// Tells `driver` after every new key generation that sending may resume (the engine
/// holds its traffic after asking for a sign-on). Run it as a task beside
/// [`UpstreamLink::keep_signed_on`]; it ends when the driver stops.
pub async fn resume_after_sign_on(
    ring: Arc<ZoneKeyRing>,
    driver: isoswitch_reversal::ReversalDriver,
) {
    let mut installed = ring.installed();
    while installed.changed().await.is_ok() {
        if driver.signed_on().await.is_err() {
            return;
        }
    }
}
