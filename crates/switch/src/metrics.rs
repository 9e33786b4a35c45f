//! What the switch records through the [`metrics`] facade, beside what its
//! net client and server ([`isoswitch_net::metrics`]) and its reversal driver
//! ([`isoswitch_reversal::metrics`]) record. No recorder is installed here.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `isoswitch_sign_ons_total` | counter | `link` | sign-ons completed: the switch's upstream (`link` = the upstream link's name) and its terminals' (`link="terminals"`) |
//! | `isoswitch_mac_failures_total` | counter | `link` | MACs that did not verify: on an upstream response, or on a terminal request (answered `A0`) |
//! | `isoswitch_upstream_ready` | gauge | `link` | 1 while the upstream link is connected and signed on |

/// Sign-ons completed.
pub const SIGN_ONS: &str = "isoswitch_sign_ons_total";
/// MACs that did not verify.
pub const MAC_FAILURES: &str = "isoswitch_mac_failures_total";
/// 1 while the upstream link is connected and signed on.
pub const UPSTREAM_READY: &str = "isoswitch_upstream_ready";
