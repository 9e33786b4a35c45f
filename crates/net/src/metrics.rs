//! Counters kept by the client and the server, readable at any time as plain snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

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
