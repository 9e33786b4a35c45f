//! Link pools: one switch, several upstream hosts ([`LinkPool`]), each an
//! [`UpstreamLink`] of its own (its own connection, sign-on and zone keys).
//!
//! - [`Strategy`] / [`Selector`] — the sans-IO choice of a link among those that are *live*
//!   (connected and signed on): `failover` takes the first live link in the order given
//!   (traffic goes back to the first once it is live again), `round-robin` spreads
//!   requests over every live link. A link that is down or not signed on gets nothing.
//! - [`LinkPool`] — the links, the selector and the routing notes: which link a PIN
//!   block was translated for, which link each original went to (its *home*).
//! - [`PoolTransport`] — the reversal engine's [`Transport`] over the pool. The engine
//!   encodes each message as it leaves; the pool picks the link, MACs the message under
//!   *that link's* MAK and sends it there, so a message is PIN-translated, MACed and sent
//!   under one link's keys (a PIN block translated for link A never leaves on link B: the
//!   engine is told it could not be sealed, and the switch prepares it again for a live
//!   link). An answer's MAC is checked under the keys of the link it came on; a `77`/`A0`
//!   or a MAC that does not verify asks that link (only) to sign on again.
//! - [`PoolMac`] — the engine's [`Security`] hook over the pool: encodes (the MAC is the
//!   transport's), refuses a message whose PIN block's link is no longer live or has new
//!   keys, and verifies answers (late ones too) under the keys of any link.
//!
//! # Reversals when a host dies
//!
//! A host that dies leaves its originals in doubt: their requests fail (connection lost,
//! timeout), the engine journals their reversals, and the pool sends each 0400 to the
//! original's home link when that one is live, else through a live link chosen by the
//! strategy. A reversal is idempotent at a host: a host that never saw the original
//! acknowledges it without a ledger effect and remembers it, so a late original is
//! declined (`host_sim`, the library's [`isoswitch_reversal::ReversalHandler`]). When the
//! hosts of a pool are front-ends of one authorization system (one ledger), that reversal
//! is the one that counts. When they keep ledgers of their own, only the home host can
//! undo its approval: so a reversal acknowledged by another link than its home is
//! *owed* to the home link too — the pool hands it to the engine again
//! ([`ReversalDriver::reverse_message_tagged`], journaled) pinned to the home link, and
//! it is delivered when that host is back (the home acknowledges it, or answers `25` if
//! the reversal already reached it). Each in-doubt transaction is thus reversed through
//! a live link exactly once, and once more at its home when that is another host. The
//! notes of homes and pins are in memory: after a restart of the switch, a reversal left
//! pending goes through the strategy's link and is not owed anywhere else.
//!
//! # Advices
//!
//! An advice (`0220`) goes where the strategy says the first time; the engine repeats it
//! until it is answered, and every repeat goes to that same host (its home) only, waiting
//! while the home is down: a host that kept a ledger of its own and recorded the first
//! copy before it died would otherwise see the refund once and another host once more.
//!
//! # No echo loops
//!
//! A message the switch receives from upstream is never sent upstream again:
//! [`upstream_unmatched`] answers a host's network management request (an `0800` echo)
//! on the link it came on and drops every other unsolicited message (logged and counted
//! by the client); late responses go to the reversal engine, which never forwards them.
//! Responses are never answered, so two isoswitch peers echoing each other with default
//! settings exchange one `0800`/`0810` pair per echo interval, not a loop.

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use isoswitch_codec::{Dialect, Message, MessageClass, MessageFunction, MessageView};
use isoswitch_net::{Client, RejectReason, RequestError, Unmatched, UnmatchedHandler};
use isoswitch_reversal::{
    OriginalDataElements, ReversalDriver, ReversalError, ReversalReason, Security, Transport,
    Verify,
};
use isoswitch_session::counters::Counters;
use isoswitch_session::SessionProfile;

use crate::upstream::{UpstreamLink, ZoneKeys};

/// How a [`LinkPool`] picks among its live links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// The first live link in the order given (the others are stand-bys).
    #[default]
    Failover,
    /// Every live link in turn.
    RoundRobin,
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "failover" => Ok(Strategy::Failover),
            "round-robin" => Ok(Strategy::RoundRobin),
            other => Err(format!(
                "unknown host strategy {other:?} (failover or round-robin)"
            )),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::Failover => "failover",
            Strategy::RoundRobin => "round-robin",
        })
    }
}

/// The sans-IO choice of a link (see the module docs).
#[derive(Debug, Clone)]
pub struct Selector {
    strategy: Strategy,
    next: usize,
}

impl Selector {
    /// A selector with `strategy`.
    pub fn new(strategy: Strategy) -> Selector {
        Selector { strategy, next: 0 }
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The link for the next request among `n` links, of which `live(i)` says whether
    /// link `i` may take traffic; `None` when none may.
    pub fn pick(&mut self, n: usize, live: impl Fn(usize) -> bool) -> Option<usize> {
        match self.strategy {
            Strategy::Failover => (0..n).find(|&i| live(i)),
            Strategy::RoundRobin => {
                let start = self.next % n.max(1);
                let i = (0..n).map(|k| (start + k) % n).find(|&i| live(i))?;
                self.next = i + 1;
                Some(i)
            }
        }
    }
}

/// One link of a pool: the link and how to tell that its transport is connected.
pub struct PoolMember<T: Transport, C: Counters + Send + 'static> {
    /// The link (its transport, session and zone keys).
    pub link: Arc<UpstreamLink<T, C>>,
    /// Whether the link's connection is up now (e.g. a net client's state is
    /// `Connected`).
    pub connected: Box<dyn Fn() -> bool + Send + Sync>,
}

impl<C: Counters + Send + 'static> PoolMember<Client, C> {
    /// A member over a net client's link: connected while the client's state is
    /// `Connected`.
    pub fn client(link: Arc<UpstreamLink<Client, C>>) -> Self {
        let client = link.transport().clone();
        PoolMember {
            link,
            connected: Box::new(move || client.state() == isoswitch_net::ConnState::Connected),
        }
    }
}

/// A transaction's identity across its original and its reversals: the original's
/// STAN and DE 7.
type TxnRef = (u32, [u8; 10]);

/// The most homes remembered (older ones are forgotten: their originals were answered
/// long ago).
const MAX_HOMES: usize = 262_144;
/// The most PIN-block notes kept.
const MAX_PIN_NOTES: usize = 65_536;

/// A bounded map that forgets its oldest entries.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    max: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(max: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            max,
        }
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    /// Removes `k` from the map (its place in the order goes when it is the oldest).
    fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k)
    }
}

#[derive(Debug)]
struct Notes {
    /// PIN block → (link, key generation) it was translated for.
    pins: Bounded<Vec<u8>, (usize, u64)>,
    /// Original → the link it was sent on.
    homes: Bounded<TxnRef, usize>,
    /// Reversals owed to their home link: sent there only.
    pinned: HashMap<TxnRef, usize>,
}

/// Upstream links with a selection strategy; see the module docs.
pub struct LinkPool<T: Transport, C: Counters + Send + 'static> {
    members: Vec<PoolMember<T, C>>,
    selector: Mutex<Selector>,
    profile: SessionProfile,
    notes: Mutex<Notes>,
    driver: OnceLock<ReversalDriver>,
}

impl<T: Transport, C: Counters + Send + 'static> std::fmt::Debug for LinkPool<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkPool")
            .field(
                "links",
                &self
                    .members
                    .iter()
                    .map(|m| m.link.name())
                    .collect::<Vec<_>>(),
            )
            .field("strategy", &self.strategy())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The original a message names: DE 90 for a reversal, else its own DE 11 + DE 7.
fn txn_ref(msg: &Message) -> Option<TxnRef> {
    if msg.mti().class() == MessageClass::Reversal {
        let ode = OriginalDataElements::read(msg).ok()??;
        return Some((ode.stan, ode.transmission));
    }
    let stan = msg.get(11)?.trim().parse().ok()?;
    let mut de7 = [b'0'; 10];
    if let Some(t) = msg.get(7) {
        let t = t.as_bytes();
        if t.len() == 10 {
            de7.copy_from_slice(t);
        }
    }
    Some((stan, de7))
}

/// The original a reversal was built from, as far as the reversal carries it (its MTI
/// from DE 90, the copied fields): building a reversal of it gives the same reversal.
fn original_of(reversal: &Message) -> Option<Message> {
    let ode = OriginalDataElements::read(reversal).ok()??;
    let mut m = reversal.clone();
    m.set_mti(ode.mti);
    m.remove(90);
    m.remove(39);
    m.remove(64);
    m.remove(128);
    Some(m)
}

impl<T: Transport, C: Counters + Send + 'static> LinkPool<T, C> {
    /// A pool over `members` (at least one) with `strategy`; `profile` is the upstream
    /// dialect's session profile (every link speaks it).
    ///
    /// # Panics
    /// Never; an empty pool simply has no live link.
    pub fn new(
        members: Vec<PoolMember<T, C>>,
        strategy: Strategy,
        profile: SessionProfile,
    ) -> Arc<LinkPool<T, C>> {
        Arc::new(LinkPool {
            members,
            selector: Mutex::new(Selector::new(strategy)),
            profile,
            notes: Mutex::new(Notes {
                pins: Bounded::new(MAX_PIN_NOTES),
                homes: Bounded::new(MAX_HOMES),
                pinned: HashMap::new(),
            }),
            driver: OnceLock::new(),
        })
    }

    /// The driver that owed reversals are handed to (set once, after the driver is
    /// spawned over [`PoolTransport`]). Returns `false` if one was set already.
    pub fn attach_driver(&self, driver: ReversalDriver) -> bool {
        self.driver.set(driver).is_ok()
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        lock(&self.selector).strategy()
    }

    /// The links, in the order given.
    pub fn links(&self) -> impl Iterator<Item = &Arc<UpstreamLink<T, C>>> + '_ {
        self.members.iter().map(|m| &m.link)
    }

    /// Link `i`.
    pub fn link(&self, i: usize) -> Option<&Arc<UpstreamLink<T, C>>> {
        self.members.get(i).map(|m| &m.link)
    }

    /// How many links.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// No links at all.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether link `i` may take traffic: connected and signed on.
    pub fn is_live(&self, i: usize) -> bool {
        self.members
            .get(i)
            .is_some_and(|m| (m.connected)() && m.link.ring().current().is_some())
    }

    /// The link the strategy gives the next request, with its current keys.
    pub fn pick(&self) -> Option<(usize, Arc<ZoneKeys>)> {
        let i = lock(&self.selector).pick(self.members.len(), |i| self.is_live(i))?;
        Some((i, self.members[i].link.ring().current()?))
    }

    /// `Ok` while at least one link is live; else why not (every link's state).
    ///
    /// # Errors
    /// The reason, as text.
    pub fn ready(&self) -> Result<(), String> {
        if (0..self.members.len()).any(|i| self.is_live(i)) {
            return Ok(());
        }
        let states: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                let state = match ((m.connected)(), m.link.ring().current().is_some()) {
                    (false, _) => "not connected",
                    (true, false) => "not signed on",
                    (true, true) => "up",
                };
                format!("{} {state}", m.link.name())
            })
            .collect();
        Err(format!("no upstream link is up: {}", states.join(", ")))
    }

    /// Notes that `block` was translated to link `i`'s PIK of `generation`: its message
    /// leaves on link `i` under that generation, or not at all.
    pub fn note_pin_block(&self, block: &[u8], i: usize, generation: u64) {
        lock(&self.notes)
            .pins
            .insert(block.to_vec(), (i, generation));
    }

    /// Whether a message holding `block` may still leave (its link live, its keys the
    /// ones the block was translated under); `true` for a block not noted.
    fn pin_block_current(&self, block: &[u8]) -> bool {
        let Some(&(i, g)) = lock(&self.notes).pins.get(&block.to_vec()) else {
            return true;
        };
        self.is_live(i) && self.members[i].link.ring().generation() == g
    }

    /// Where `msg` goes: its link and the keys to MAC it under. An original's link is
    /// noted as its home.
    fn route(&self, msg: &Message) -> Result<(usize, Arc<ZoneKeys>), RejectReason> {
        let r = txn_ref(msg);
        if msg.mti().class() == MessageClass::Reversal {
            return self.route_reversal(r);
        }
        // An advice repeated goes to the host that may hold its first copy: its home
        // only (store and forward), never to another host that would count it again.
        if isoswitch_reversal::is_advice(msg.mti()) {
            let home = r.and_then(|r| lock(&self.notes).homes.get(&r).copied());
            if let Some(i) = home {
                let keys = self.members[i].link.ring().current();
                return match keys {
                    Some(k) if self.is_live(i) => Ok((i, k)),
                    _ => Err(RejectReason::NotConnected),
                };
            }
        }
        let chosen = self.route_original(msg)?;
        if let Some(r) = r {
            lock(&self.notes).homes.insert(r, chosen.0);
        }
        Ok(chosen)
    }

    /// A PIN block goes on the link it was translated for, under those keys; a void to
    /// the host of the sale it cancels when that is live; anything else where the
    /// strategy says.
    fn route_original(&self, msg: &Message) -> Result<(usize, Arc<ZoneKeys>), RejectReason> {
        let none = || RejectReason::NotConnected;
        if let Some(f) = msg.field(52) {
            let noted = lock(&self.notes).pins.remove(&f.bytes().to_vec());
            if let Some((i, g)) = noted {
                let keys = self.members[i].link.ring().current().ok_or_else(none)?;
                if !self.is_live(i) || keys.generation != g {
                    return Err(none());
                }
                return Ok((i, keys));
            }
        }
        // A void (DE 90 names the sale it cancels) goes to the sale's host when it is live.
        if let Some(Ok(Some(ode))) = msg.has(90).then(|| OriginalDataElements::read(msg)) {
            let home = lock(&self.notes)
                .homes
                .get(&(ode.stan, ode.transmission))
                .copied();
            if let Some(i) = home.filter(|&i| self.is_live(i)) {
                if let Some(keys) = self.members[i].link.ring().current() {
                    return Ok((i, keys));
                }
            }
        }
        self.pick().ok_or_else(none)
    }

    /// A reversal owed to its home goes there only (when it is back); any other to its
    /// home when that is live, else where the strategy says.
    fn route_reversal(&self, r: Option<TxnRef>) -> Result<(usize, Arc<ZoneKeys>), RejectReason> {
        let none = || RejectReason::NotConnected;
        let (pinned, home) = {
            let n = lock(&self.notes);
            let pinned = r.and_then(|r| n.pinned.get(&r).copied());
            let home = r.and_then(|r| n.homes.get(&r).copied());
            (pinned, home)
        };
        if let Some(i) = pinned {
            if !self.is_live(i) {
                return Err(none());
            }
            let keys = self.members[i].link.ring().current().ok_or_else(none)?;
            return Ok((i, keys));
        }
        if let Some(i) = home.filter(|&i| self.is_live(i)) {
            if let Some(keys) = self.members[i].link.ring().current() {
                return Ok((i, keys));
            }
        }
        self.pick().ok_or_else(none)
    }

    /// After link `i` answered `sent` with `answer` under `keys`: a `77`/`A0` or a MAC
    /// that does not verify asks link `i` to sign on again; a reversal acknowledged away
    /// from its home is owed to the home.
    fn answered(&self, i: usize, keys: &ZoneKeys, sent: &Message, answer: &Bytes) {
        let link = &self.members[i].link;
        let Ok(view) = MessageView::decode(&self.profile.dialect, answer) else {
            return;
        };
        if isoswitch_reversal::sign_on_code(&view).is_some() {
            link.ring().request_sign_on(keys.generation);
            return;
        }
        if !keys.verify(&self.profile, &view) {
            ::metrics::counter!(crate::metrics::MAC_FAILURES, "link" => link.name().to_owned())
                .increment(1);
            link.ring().request_sign_on(keys.generation);
            return;
        }
        if sent.mti().class() != MessageClass::Reversal || !view.mti().is_response() {
            return;
        }
        let Some(r) = txn_ref(sent) else {
            return;
        };
        let owed = {
            let mut n = lock(&self.notes);
            if n.pinned.get(&r) == Some(&i) {
                // The owed reversal reached its home: done.
                n.pinned.remove(&r);
                n.homes.remove(&r);
                None
            } else if n.pinned.contains_key(&r) {
                None
            } else {
                match n.homes.get(&r).copied() {
                    Some(home) if home != i => {
                        n.pinned.insert(r, home);
                        Some(home)
                    }
                    _ => {
                        n.homes.remove(&r);
                        None
                    }
                }
            }
        };
        let (Some(home), Some(driver)) = (owed, self.driver.get()) else {
            return;
        };
        let Some(original) = original_of(sent) else {
            return;
        };
        let (driver, home_name) = (driver.clone(), self.members[home].link.name().to_owned());
        tracing::info!(
            stan = r.0,
            via = %link.name(),
            home = %home_name,
            "reversal acknowledged away from the original's home: owed to the home link too"
        );
        tokio::spawn(async move {
            if let Err(e) = driver
                .reverse_message_tagged(original, ReversalReason::NoResponse, 0)
                .await
            {
                tracing::error!(home = %home_name, error = %e, "owed reversal not handed to the engine");
            }
        });
    }

    /// Reversals owed to their home link and not yet delivered there.
    pub fn owed_reversals(&self) -> usize {
        lock(&self.notes).pinned.len()
    }
}

/// The reversal engine's transport over a [`LinkPool`]; see the module docs.
pub struct PoolTransport<T: Transport, C: Counters + Send + 'static>(pub Arc<LinkPool<T, C>>);

impl<T: Transport, C: Counters + Send + 'static> Transport for PoolTransport<T, C> {
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Bytes, RequestError>> + Send {
        let sent = self.request_decoded(msg, timeout);
        async move { sent.await.map(|(answer, _)| answer) }
    }

    fn request_decoded(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(Bytes, Option<Message>), RequestError>> + Send
    {
        let pool = self.0.clone();
        async move {
            let invalid = |e: isoswitch_codec::CodecError| {
                RequestError::Rejected(RejectReason::Invalid(isoswitch_net::NetError::Codec(e)))
            };
            let mut m = Message::decode(&pool.profile.dialect, msg).map_err(invalid)?;
            let (i, keys) = pool.route(&m).map_err(RequestError::Rejected)?;
            let sealed = keys.seal(&pool.profile, &mut m).map_err(|e| {
                tracing::warn!(error = %e, "upstream message not sealed");
                RequestError::Rejected(RejectReason::NotConnected)
            })?;
            let link = pool.members[i].link.clone();
            let (answer, decoded) = link.transport().request_decoded(sealed, timeout).await?;
            pool.answered(i, &keys, &m, &answer);
            Ok((answer, decoded))
        }
    }

    fn connections(&self) -> u64 {
        self.0
            .members
            .iter()
            .map(|m| m.link.transport().connections())
            .sum()
    }
}

/// The reversal engine's security hook over a [`LinkPool`]; see the module docs.
pub struct PoolMac<T: Transport, C: Counters + Send + 'static>(pub Arc<LinkPool<T, C>>);

impl<T: Transport, C: Counters + Send + 'static> Security for PoolMac<T, C> {
    fn seal(&mut self, msg: &mut Message) -> isoswitch_reversal::Result<Bytes> {
        if let Some(f) = msg.field(52) {
            if !self.0.pin_block_current(&f.bytes()) {
                return Err(ReversalError::Session(
                    isoswitch_session::SessionError::NotSignedOn {
                        terminal: msg.get(41).unwrap_or_default(),
                    },
                ));
            }
        }
        // The transport MACs it under the keys of the link it goes on.
        Ok(msg.to_bytes()?)
    }

    fn verify(&mut self, bytes: &Bytes) -> Result<Message, Verify> {
        self.check(isoswitch_reversal::Answer::Bytes(bytes))
    }

    fn verify_decoded(&mut self, msg: Message) -> Result<Message, Verify> {
        self.check(isoswitch_reversal::Answer::Decoded(msg))
    }
}

impl<T: Transport, C: Counters + Send + 'static> PoolMac<T, C> {
    fn check(&self, answer: isoswitch_reversal::Answer<'_>) -> Result<Message, Verify> {
        let pool = &self.0;
        isoswitch_reversal::verify_answer(&pool.profile, answer, |view| {
            pool.members.iter().any(|m| {
                m.link
                    .ring()
                    .current()
                    .is_some_and(|k| k.verify(&pool.profile, view))
            })
        })
    }
}

/// The answer to a host-initiated network management request (an `0800` echo):
/// the `0810` with DE 39 `00`; `None` for anything else (responses are never answered,
/// other requests are not the switch's to answer upstream). Pure: see [`upstream_unmatched`].
pub fn answer_upstream_request(dialect: &Dialect, bytes: &Bytes) -> Option<Bytes> {
    let msg = Message::decode(dialect, bytes.clone()).ok()?;
    let mti = msg.mti();
    if mti.class() != MessageClass::NetworkManagement || mti.function() != MessageFunction::Request
    {
        return None;
    }
    let mut reply = Message::response_to(&msg).ok()?;
    for n in [7u8, 11, 41, 42, 70] {
        if let Some(v) = msg.get(n) {
            reply.set(n, v.as_bytes()).ok()?;
        }
    }
    reply.set(39, "00").ok()?;
    reply.to_bytes().ok()
}

/// The unmatched handler of an upstream client: late responses go to `late` (the
/// reversal engine); a host's network management request is answered on this client
/// ([`answer_upstream_request`]), never relayed; anything else is given back (logged and
/// counted by the client). Install it with `ClientBuilder::unmatched`, then give it the
/// spawned client with [`UpstreamUnmatched::attach`].
#[derive(Debug, Clone)]
pub struct UpstreamUnmatched {
    late: isoswitch_reversal::LateResponses,
    dialect: Dialect,
    client: Arc<Mutex<Option<Client>>>,
}

/// [`UpstreamUnmatched`] over `late` for messages of `dialect`.
pub fn upstream_unmatched(
    late: isoswitch_reversal::LateResponses,
    dialect: Dialect,
) -> UpstreamUnmatched {
    UpstreamUnmatched {
        late,
        dialect,
        client: Arc::new(Mutex::new(None)),
    }
}

impl UpstreamUnmatched {
    /// The client whose unsolicited requests this handler answers (the handler holds
    /// it until [`UpstreamUnmatched::detach`]).
    pub fn attach(&self, client: Client) {
        *lock(&self.client) = Some(client);
    }

    /// Lets go of the client (at shutdown: the client can then close when dropped).
    pub fn detach(&self) {
        lock(&self.client).take();
    }
}

impl UnmatchedHandler for UpstreamUnmatched {
    fn on_unmatched(&self, msg: Unmatched) -> Result<(), Unmatched> {
        if msg.kind == isoswitch_net::UnmatchedKind::Late {
            return self.late.on_unmatched(msg);
        }
        let Some(answer) = answer_upstream_request(&self.dialect, &msg.frame.payload) else {
            return Err(msg);
        };
        let Some(client) = lock(&self.client).clone() else {
            return Err(msg);
        };
        tracing::debug!("host network management request answered");
        tokio::spawn(async move {
            if let Err(e) = client.send(answer).await {
                tracing::debug!(error = %e, "answer to the host's network management request not sent");
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_takes_the_first_live_link_and_goes_back_to_it() {
        let mut s = Selector::new(Strategy::Failover);
        assert_eq!(s.pick(3, |_| true), Some(0));
        assert_eq!(s.pick(3, |_| true), Some(0));
        assert_eq!(s.pick(3, |i| i != 0), Some(1));
        assert_eq!(s.pick(3, |i| i == 2), Some(2));
        assert_eq!(
            s.pick(3, |_| true),
            Some(0),
            "back to the first once it is live"
        );
        assert_eq!(s.pick(3, |_| false), None);
        assert_eq!(s.pick(0, |_| true), None);
    }

    #[test]
    fn round_robin_spreads_over_the_live_links_only() {
        let mut s = Selector::new(Strategy::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| s.pick(3, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let picks: Vec<_> = (0..4).map(|_| s.pick(3, |i| i != 1).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(s.pick(3, |_| false), None);
        assert_eq!(s.pick(0, |_| true), None);
    }

    #[test]
    fn strategies_parse_and_print() {
        for s in [Strategy::Failover, Strategy::RoundRobin] {
            assert_eq!(s.to_string().parse::<Strategy>(), Ok(s));
        }
        assert!("random".parse::<Strategy>().is_err());
        assert_eq!(Strategy::default(), Strategy::Failover);
    }

    #[test]
    fn a_hosts_echo_is_answered_and_nothing_else_is() {
        let d = Dialect::builtin("iso87-binary").unwrap();
        let mut echo = Message::new(&d, isoswitch_codec::Mti::from_u16(800).unwrap());
        echo.set(7, "1201120000").unwrap();
        echo.set(11, "000123").unwrap();
        echo.set(70, "301").unwrap();
        let answer = answer_upstream_request(&d, &echo.to_bytes().unwrap()).expect("0810");
        let a = Message::decode(&d, answer).unwrap();
        assert_eq!(a.mti().as_u16(), 810);
        assert_eq!(a.get(39).as_deref(), Some("00"));
        assert_eq!(a.get(11).as_deref(), Some("000123"));
        assert_eq!(a.get(70).as_deref(), Some("301"));
        // A response (the peer's answer to our echo) is never answered: no loop.
        let b = a.to_bytes().unwrap();
        assert!(answer_upstream_request(&d, &b).is_none());
        // A financial request from upstream is not the switch's to answer or relay.
        let mut sale = Message::new(&d, isoswitch_codec::Mti::from_u16(200).unwrap());
        sale.set(11, "000124").unwrap();
        assert!(answer_upstream_request(&d, &sale.to_bytes().unwrap()).is_none());
        assert!(answer_upstream_request(&d, &Bytes::from_static(b"\x08")).is_none());
    }

    #[test]
    fn the_original_of_a_reversal_builds_the_same_reversal() {
        let profile = isoswitch_reversal::ReversalProfile::iso87_binary().unwrap();
        let d = profile.dialect.clone();
        let mut sale = Message::new(&d, isoswitch_codec::Mti::from_u16(200).unwrap());
        for (n, v) in [
            (2u8, "6222021234567890"),
            (3, "000000"),
            (4, "000000001050"),
            (7, "1201120000"),
            (11, "000042"),
            (32, "00000000001"),
            (41, "T0000001"),
            (42, "M00000000000001"),
        ] {
            sale.set(n, v).unwrap();
        }
        let rev = profile
            .build_reversal(&sale, ReversalReason::NoResponse)
            .unwrap();
        let again = profile
            .build_reversal(&original_of(&rev).unwrap(), ReversalReason::NoResponse)
            .unwrap();
        assert_eq!(rev.to_bytes().unwrap(), again.to_bytes().unwrap());
        assert_eq!(txn_ref(&rev), txn_ref(&sale));
        assert_eq!(txn_ref(&sale).map(|r| r.0), Some(42));
    }
}
