//! What the client and the server count, two ways:
//!
//! - **Snapshots**: [`ClientMetrics`] and [`ServerMetrics`], plain atomic counters readable
//!   at any time ([`Client::metrics`](crate::client::Client::metrics),
//!   [`Server::metrics`](crate::server::Server::metrics)).
//! - **The [`metrics`] facade**: every client and server also records the
//!   metrics below through the facade, labelled with its link name
//!   ([`ClientConfig::link`](crate::client::ClientConfig::link),
//!   [`ServerConfig::link`](crate::server::ServerConfig::link)). The library installs no
//!   recorder and no exporter: a program installs one (e.g. `metrics-exporter-prometheus`)
//!   **before** it builds its clients and servers, which register their handles when they
//!   are built. Without a recorder the facade costs next to nothing.
//!
//! Every name carries the `isoswitch_` prefix already, so an exporter must not add one.
//! Label values are static strings or the link's shared name: nothing is allocated per
//! message once an MTI or response code has been seen on a link (handles are cached).
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `isoswitch_messages_total` | counter | `link`, `direction`, `mti` | messages read (`direction="in"`) or written (`"out"`); `mti="unknown"` when the MTI cannot be read (no dialect, or bad bytes) |
//! | `isoswitch_responses_total` | counter | `link`, `direction`, `rc` | response messages by DE 39 (`rc="none"` without a DE 39, `"other"` for a non-alphanumeric one): on a client the responses received (`in`), on a server the responses sent (`out`); needs a dialect |
//! | `isoswitch_request_duration_seconds` | histogram | `link` | client: request written → response matched |
//! | `isoswitch_handler_duration_seconds` | histogram | `link` | server: message read → handler done |
//! | `isoswitch_in_flight` | gauge | `link` | client: requests waiting for a response; server: handlers running |
//! | `isoswitch_link_up` | gauge | `link` | client: 1 while connected, else 0 |
//! | `isoswitch_connects_total` | counter | `link` | client: connections established (the first included) |
//! | `isoswitch_reconnects_total` | counter | `link` | client: connections established after a loss |
//! | `isoswitch_connect_failures_total` | counter | `link` | client: failed connect attempts (TCP or TLS handshake) |
//! | `isoswitch_link_down_total` | counter | `link` | client: connections lost (not counting a close asked for) |
//! | `isoswitch_timeouts_total` | counter | `link` | client: requests sent and not answered in time |
//! | `isoswitch_connection_lost_total` | counter | `link` | client: requests sent whose connection dropped before the answer |
//! | `isoswitch_rejected_total` | counter | `link` | client: requests refused unsent |
//! | `isoswitch_unmatched_total` | counter | `link` | client: incoming messages that matched no pending request (late responses and host-initiated messages) |
//! | `isoswitch_late_responses_total` | counter | `link` | client: responses whose request was no longer pending |
//! | `isoswitch_connections` | gauge | `link` | server: connections open |
//! | `isoswitch_connections_accepted_total` | counter | `link` | server: connections accepted |
//! | `isoswitch_connections_refused_total` | counter | `link` | server: connections refused (maximum reached, or draining) |
//! | `isoswitch_tls_handshake_failures_total` | counter | `link` | server: TLS handshakes failed or timed out (an untrusted client certificate, for one) |
//! | `isoswitch_protocol_errors_total` | counter | `link` | server: connections closed on a framing error |
//! | `isoswitch_rate_limited_total` | counter | `link` | server: messages answered by the rate-limit hook |
//! | `isoswitch_drain_answered_total` | counter | `link` | server: messages answered by the drain hook while draining |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use ::metrics::{Counter, Gauge, Histogram, Key, Label, SharedString};
use isoswitch_codec::Mti;

macro_rules! counters {
    (
        $(#[$meta:meta])*
        $name:ident / $snap:ident { $( $(#[$fmeta:meta])* $field:ident ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub(crate) $field: AtomicU64, )*
        }

        /// A point-in-time copy of the counters.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $snap {
            $( $(#[$fmeta])* pub $field: u64, )*
        }

        impl $name {
            /// Reads every counter (each individually atomic).
            pub fn snapshot(&self) -> $snap {
                $snap { $( $field: self.$field.load(Ordering::Relaxed), )* }
            }
        }
    };
}

counters! {
    /// Client counters. See [`Client::metrics`](crate::client::Client::metrics).
    ClientMetrics / ClientMetricsSnapshot {
        /// Frames written to the socket (requests, echoes and fire-and-forget sends).
        sent,
        /// Frames read from the socket.
        received,
        /// Responses matched to a pending request.
        matched,
        /// Requests that timed out after being sent.
        timeouts,
        /// Responses that matched no pending request (late, after a timeout, or unknown).
        late,
        /// Incoming messages that are not responses (host-initiated).
        unsolicited,
        /// Unmatched messages the handler could not take (its channel was full).
        unmatched_dropped,
        /// Requests failed with `ConnectionLost`.
        connection_lost,
        /// Requests rejected unsent.
        rejected,
        /// Connections established (the first one included).
        connects,
        /// Failed connection attempts.
        connect_failures,
        /// Echo tests sent on idle.
        echoes,
    }
}

counters! {
    /// Server counters. See [`Server::metrics`](crate::server::Server::metrics).
    ServerMetrics / ServerMetricsSnapshot {
        /// Connections accepted and served.
        accepted,
        /// Connections refused because the maximum was reached.
        refused,
        /// Connections closed (for any reason).
        closed,
        /// Frames read.
        frames_in,
        /// Frames written.
        frames_out,
        /// Messages answered by the rate-limit hook instead of the handler.
        rate_limited,
        /// Connections closed on a framing error (oversized, zero length, truncated...).
        protocol_errors,
        /// Connections closed by the idle timeout.
        idle_timeouts,
        /// Connections closed by a write timeout or write error.
        write_errors,
    }
}

pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Metric names of the facade (see the table in the module docs).
pub mod names {
    /// Messages by link, direction and MTI.
    pub const MESSAGES: &str = "isoswitch_messages_total";
    /// Responses by link, direction and response code.
    pub const RESPONSES: &str = "isoswitch_responses_total";
    /// Client request latency.
    pub const REQUEST_DURATION: &str = "isoswitch_request_duration_seconds";
    /// Server handler latency.
    pub const HANDLER_DURATION: &str = "isoswitch_handler_duration_seconds";
    /// Requests (client) or handlers (server) in flight.
    pub const IN_FLIGHT: &str = "isoswitch_in_flight";
    /// 1 while the client's link is connected.
    pub const LINK_UP: &str = "isoswitch_link_up";
    /// Client connections established.
    pub const CONNECTS: &str = "isoswitch_connects_total";
    /// Client connections established after a loss.
    pub const RECONNECTS: &str = "isoswitch_reconnects_total";
    /// Client connect attempts failed.
    pub const CONNECT_FAILURES: &str = "isoswitch_connect_failures_total";
    /// Client connections lost.
    pub const LINK_DOWN: &str = "isoswitch_link_down_total";
    /// Client requests timed out after being sent.
    pub const TIMEOUTS: &str = "isoswitch_timeouts_total";
    /// Client requests lost with their connection.
    pub const CONNECTION_LOST: &str = "isoswitch_connection_lost_total";
    /// Client requests refused unsent.
    pub const REJECTED: &str = "isoswitch_rejected_total";
    /// Client incoming messages matching no pending request.
    pub const UNMATCHED: &str = "isoswitch_unmatched_total";
    /// Client late responses.
    pub const LATE: &str = "isoswitch_late_responses_total";
    /// Server connections open.
    pub const CONNECTIONS: &str = "isoswitch_connections";
    /// Server connections accepted.
    pub const ACCEPTED: &str = "isoswitch_connections_accepted_total";
    /// Server connections refused.
    pub const REFUSED: &str = "isoswitch_connections_refused_total";
    /// Server TLS handshakes failed.
    pub const TLS_FAILURES: &str = "isoswitch_tls_handshake_failures_total";
    /// Server connections closed on a framing error.
    pub const PROTOCOL_ERRORS: &str = "isoswitch_protocol_errors_total";
    /// Server messages answered by the rate-limit hook.
    pub const RATE_LIMITED: &str = "isoswitch_rate_limited_total";
    /// Server messages answered by the drain hook.
    pub const DRAIN_ANSWERED: &str = "isoswitch_drain_answered_total";
}

/// The direction label of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    In,
    Out,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// The 10,000 four-digit MTI strings back to back, so that an MTI label is a `&'static
/// str` (no allocation).
static MTI_TEXT: [u8; 40_000] = {
    let mut t = [0u8; 40_000];
    let mut i = 0;
    while i < 10_000 {
        t[i * 4] = b'0' + (i / 1000) as u8;
        t[i * 4 + 1] = b'0' + (i / 100 % 10) as u8;
        t[i * 4 + 2] = b'0' + (i / 10 % 10) as u8;
        t[i * 4 + 3] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

const RC_ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Every two-character alphanumeric response code back to back (62 × 62 × 2 bytes).
static RC_TEXT: [u8; 62 * 62 * 2] = {
    let mut t = [0u8; 62 * 62 * 2];
    let mut i = 0;
    while i < 62 * 62 {
        t[i * 2] = RC_ALPHABET[i / 62];
        t[i * 2 + 1] = RC_ALPHABET[i % 62];
        i += 1;
    }
    t
};

/// The static label of an MTI.
pub(crate) fn mti_label(mti: Option<Mti>) -> &'static str {
    let Some(mti) = mti else { return "unknown" };
    let i = usize::from(mti.as_u16());
    MTI_TEXT
        .get(i * 4..i * 4 + 4)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("unknown")
}

fn rc_index(b: u8) -> Option<usize> {
    RC_ALPHABET.iter().position(|&c| c == b)
}

/// The static label of a response code (DE 39 as text).
pub(crate) fn rc_label(rc: Option<&[u8]>) -> &'static str {
    let Some(rc) = rc else { return "none" };
    let (Some(a), Some(b)) = (
        rc.first().copied().and_then(rc_index),
        rc.get(1).copied().and_then(rc_index),
    ) else {
        return "other";
    };
    if rc.len() != 2 {
        return "other";
    }
    let i = a * 62 + b;
    RC_TEXT
        .get(i * 2..i * 2 + 2)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("other")
}

/// Handles of one link registered with the recorder installed when the link was built.
/// Per-MTI and per-code counters are registered the first time a value is seen and cached.
pub(crate) struct LinkMetrics {
    link: SharedString,
    messages: RwLock<HashMap<(Direction, &'static str), Counter>>,
    responses: RwLock<HashMap<(Direction, &'static str), Counter>>,
    pub(crate) request_duration: Histogram,
    pub(crate) handler_duration: Histogram,
    pub(crate) in_flight: Gauge,
    pub(crate) link_up: Gauge,
    pub(crate) connects: Counter,
    pub(crate) reconnects: Counter,
    pub(crate) connect_failures: Counter,
    pub(crate) link_down: Counter,
    pub(crate) timeouts: Counter,
    pub(crate) connection_lost: Counter,
    pub(crate) rejected: Counter,
    pub(crate) unmatched: Counter,
    pub(crate) late: Counter,
    pub(crate) connections: Gauge,
    pub(crate) accepted: Counter,
    pub(crate) refused: Counter,
    pub(crate) tls_failures: Counter,
    pub(crate) protocol_errors: Counter,
    pub(crate) rate_limited: Counter,
    pub(crate) drain_answered: Counter,
}

impl std::fmt::Debug for LinkMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkMetrics")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// Which handles a link registers: a client's or a server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

impl LinkMetrics {
    pub(crate) fn new(link: &str, role: Role) -> Self {
        let link = SharedString::from(link.to_owned());
        let key =
            |name: &'static str| Key::from_parts(name, vec![Label::new("link", link.clone())]);
        let counter = |name: &'static str, wanted: bool| {
            if wanted {
                ::metrics::with_recorder(|r| r.register_counter(&key(name), &META))
            } else {
                Counter::noop()
            }
        };
        let gauge = |name: &'static str, wanted: bool| {
            if wanted {
                ::metrics::with_recorder(|r| r.register_gauge(&key(name), &META))
            } else {
                Gauge::noop()
            }
        };
        let histogram = |name: &'static str, wanted: bool| {
            if wanted {
                ::metrics::with_recorder(|r| r.register_histogram(&key(name), &META))
            } else {
                Histogram::noop()
            }
        };
        let client = role == Role::Client;
        let server = role == Role::Server;
        Self {
            messages: RwLock::new(HashMap::new()),
            responses: RwLock::new(HashMap::new()),
            request_duration: histogram(names::REQUEST_DURATION, client),
            handler_duration: histogram(names::HANDLER_DURATION, server),
            in_flight: gauge(names::IN_FLIGHT, true),
            link_up: gauge(names::LINK_UP, client),
            connects: counter(names::CONNECTS, client),
            reconnects: counter(names::RECONNECTS, client),
            connect_failures: counter(names::CONNECT_FAILURES, client),
            link_down: counter(names::LINK_DOWN, client),
            timeouts: counter(names::TIMEOUTS, client),
            connection_lost: counter(names::CONNECTION_LOST, client),
            rejected: counter(names::REJECTED, client),
            unmatched: counter(names::UNMATCHED, client),
            late: counter(names::LATE, client),
            connections: gauge(names::CONNECTIONS, server),
            accepted: counter(names::ACCEPTED, server),
            refused: counter(names::REFUSED, server),
            tls_failures: counter(names::TLS_FAILURES, server),
            protocol_errors: counter(names::PROTOCOL_ERRORS, server),
            rate_limited: counter(names::RATE_LIMITED, server),
            drain_answered: counter(names::DRAIN_ANSWERED, server),
            link,
        }
    }

    fn cached(
        &self,
        map: &RwLock<HashMap<(Direction, &'static str), Counter>>,
        name: &'static str,
        label: &'static str,
        direction: Direction,
        value: &'static str,
    ) {
        let cache_key = (direction, value);
        if let Some(c) = map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cache_key)
        {
            c.increment(1);
            return;
        }
        let key = Key::from_parts(
            name,
            vec![
                Label::new("link", self.link.clone()),
                Label::new("direction", direction.label()),
                Label::new(label, value),
            ],
        );
        let counter = ::metrics::with_recorder(|r| r.register_counter(&key, &META));
        counter.increment(1);
        map.write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(cache_key)
            .or_insert(counter);
    }

    /// Counts one message of `mti` in `direction`.
    pub(crate) fn message(&self, direction: Direction, mti: Option<Mti>) {
        self.cached(
            &self.messages,
            names::MESSAGES,
            "mti",
            direction,
            mti_label(mti),
        );
    }

    /// Counts one response with code `rc` (DE 39 content) in `direction`.
    pub(crate) fn response(&self, direction: Direction, rc: Option<&[u8]>) {
        self.cached(
            &self.responses,
            names::RESPONSES,
            "rc",
            direction,
            rc_label(rc),
        );
    }
}

static META: ::metrics::Metadata<'static> = ::metrics::Metadata::new(
    "isoswitch_net",
    ::metrics::Level::INFO,
    Some(module_path!()),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_digits_and_codes() {
        assert_eq!(mti_label(Some(Mti::new(*b"0200").unwrap())), "0200");
        assert_eq!(mti_label(Some(Mti::new(*b"9999").unwrap())), "9999");
        assert_eq!(mti_label(Some(Mti::new(*b"0000").unwrap())), "0000");
        assert_eq!(mti_label(None), "unknown");
        assert_eq!(rc_label(Some(b"00")), "00");
        assert_eq!(rc_label(Some(b"A0")), "A0");
        assert_eq!(rc_label(Some(b"zz")), "zz");
        assert_eq!(rc_label(Some(b"9")), "other");
        assert_eq!(rc_label(Some(b"0 ")), "other");
        assert_eq!(rc_label(Some(b"000")), "other");
        assert_eq!(rc_label(None), "none");
    }
}
