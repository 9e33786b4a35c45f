-- isoswitch-pg schema, version 5: one node at a time signs a shared upstream link on.
--
-- Nodes that share one upstream identity share its zone keys (upstream_session). A
-- node about to sign the link on first claims it here for a short lease; a node that
-- finds the claim held by another waits and adopts the keys that node stores, so two
-- nodes never sign on at once and then in turn against each other (the host keeps
-- the keys of the sign-on it processed last). A node that dies holding the claim
-- leaves it to lapse with its lease.
CREATE TABLE upstream_sign_on (
    part  text NOT NULL,
    link  text NOT NULL,
    owner text NOT NULL,
    until timestamptz NOT NULL,
    PRIMARY KEY (part, link)
);
