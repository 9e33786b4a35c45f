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
//! - [`upstream`] — [`UpstreamLink`]: a net `Client` + `TerminalSession` signed on to the
//!   host at every connection and again on 77 / A0 / bad MAC; [`ZoneKeyRing`] holds the
//!   zone keys as numbered generations; [`ZoneMac`] is the reversal engine's MAC hook.
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

pub mod error;
pub mod field_map;
pub mod security;
pub mod service;
pub mod switch;
pub mod upstream;

pub use error::{Result, SwitchError};
pub use field_map::{FieldMap, FieldMapDef, Functions, MapContext, MapFn, Rule, Source};
pub use security::{SecurityOps, SoftSecurity};
pub use service::{
    cup_to_iso87, iso87_to_cup, keep_leases, ServiceConfig, ServiceSwitch, SwitchService,
    UPSTREAM_JOURNAL,
};
pub use switch::{tag_of, Reply, Switch, SwitchConfig, SwitchParts};
pub use upstream::{
    resume_after_sign_on, LinkPersistence, SharedSessions, UpstreamConfig, UpstreamLink,
    ZoneKeyRing, ZoneKeys, ZoneMac,
};
