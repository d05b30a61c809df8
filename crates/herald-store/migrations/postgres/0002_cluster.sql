-- Several herald nodes on one database: who is alive, which node drives each
-- destination's lane, and which destinations are paused (for every node).
-- Times are milliseconds since the epoch, written by the nodes' clocks (NTP-synced: a
-- lane lease is seconds long).

CREATE TABLE nodes (
    node_id      TEXT   NOT NULL PRIMARY KEY,
    incarnation  TEXT   NOT NULL, -- random per process: tells a restart from an impostor
    address      TEXT   NOT NULL,
    version      TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    destinations TEXT   NOT NULL  -- JSON array of the destinations it configures
);

CREATE TABLE lanes (
    destination TEXT   NOT NULL PRIMARY KEY,
    owner       TEXT   NOT NULL, -- a node_id
    expires_at  BIGINT NOT NULL
);

CREATE TABLE paused_destinations (
    destination TEXT NOT NULL PRIMARY KEY,
    reason      TEXT -- NULL: an operator paused it
);
