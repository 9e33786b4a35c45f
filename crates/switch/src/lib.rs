//! # isoswitch-switch
//!
//! The acquirer switch as library parts. A switch is a *host* to its terminals and an
//! *acquirer* (a terminal) to its host; this crate joins the library's two roles instead
//! of writing a third copy of either.
//!
//! ## Module map
//! - [`field_map`] — [`FieldMap`]: mapping between two dialects as data (copy, copy n→m,
//!   constant, named function), one definition for the request sent upstream (which is
//!   also the original the reversal engine journals) and one for the answer back.
//! - [`security`] — [`SecurityOps`]: PIN translation, MAC, KCV behind one trait;
//!   [`SoftSecurity`] over `isoswitch_session::crypto`.
//! - [`dukpt`] — [`DukptPins`]: PIN blocks of DUKPT terminals (KSN in a named field)
//!   translated to the zone PIN key inside a security module (`isoswitch-hsm`'s
//!   `SoftHsm` or a Thales-compatible HSM).
//! - [`upstream`] — [`UpstreamLink`]: a net `Client` + `TerminalSession` signed on to the
//!   host at every connection and again on 77 / A0 / bad MAC; [`ZoneKeyRing`] holds the
//!   zone keys as numbered generations; [`ZoneMac`] is the reversal engine's MAC hook.
//! - [`pool`] — [`LinkPool`]: several upstream links (`failover` / `round-robin`,
//!   [`Strategy`]), each signed on with its own zone keys; the reversal engine's
//!   [`PoolTransport`] and [`PoolMac`] send each message on one live link under that
//!   link's keys; in-doubt transactions of a dead link are reversed through a live one;
//!   a host's echo is answered, never relayed ([`UpstreamUnmatched`]).
//! - [`metrics`] — the switch's own metric names (sign-ons, MAC failures, upstream
//!   readiness); the net and reversal crates record the rest.
//! - [`error`] — [`SwitchError`].
//!
//! ## Data flow
//! ```text
//! terminal ─▶ admit (HostSession: 30/97/77/A0/94) ─▶ idempotency (ReversalHandler)
//!          ─▶ FieldMap + PIN translation (SecurityOps) under one zone-key generation
//!          ─▶ ReversalEngine (journal first, then send; reversal if in doubt) ─▶ host
//! terminal ◀─ FieldMap back, terminal MAC ◀─ complete with the host's decision ◀─┘
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dukpt;
pub mod error;
pub mod field_map;
pub mod metrics;
pub mod pool;
pub mod security;
pub mod service;
pub mod switch;
pub mod upstream;

pub use dukpt::DukptPins;
pub use error::{Result, SwitchError};
pub use field_map::{FieldMap, FieldMapDef, Functions, MapContext, MapFn, Rule, Source};
pub use pool::{
    answer_upstream_request, upstream_unmatched, LinkPool, PoolMac, PoolMember, PoolTransport,
    Selector, Strategy, UpstreamUnmatched,
};
pub use security::{SecurityOps, SoftSecurity};
pub use service::{
    cup_to_iso87, host_part, iso87_to_cup, keep_leases, DrainSummary, ServiceConfig, ServiceSwitch,
    SwitchService, RETRY_CODE, UPSTREAM_JOURNAL, UPSTREAM_LINK,
};
pub use switch::{
    refusal_message, tag_of, PendingCheck, Reply, Switch, SwitchConfig, SwitchParts,
    TerminalReload, TERMINAL_LINK,
};
pub use upstream::{
    resume_after_sign_on, LinkPersistence, SharedSessions, UpstreamConfig, UpstreamLink,
    ZoneKeyRing, ZoneKeys, ZoneMac,
};
