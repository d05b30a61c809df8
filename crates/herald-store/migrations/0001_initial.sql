-- herald's schema, version 1.
-- The intent (broadcasts, messages) is written once; the hot state (deliveries) stays
-- narrow; the attempt log is append-only.

CREATE TABLE broadcasts (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, for paging
    id              TEXT    NOT NULL UNIQUE,
    idempotency_key TEXT    UNIQUE,
    fingerprint     TEXT    NOT NULL,
    requested       TEXT    NOT NULL, -- JSON array of names as given
    destinations    TEXT    NOT NULL, -- JSON array of resolved destinations
    created_at      INTEGER NOT NULL, -- ms since epoch
    expires_at      INTEGER
);

CREATE TABLE messages (
    broadcast_id TEXT    NOT NULL,
    seq          INTEGER NOT NULL, -- 0 = original, n = n-th update
    body         TEXT    NOT NULL, -- the portable message as JSON
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (broadcast_id, seq)
) WITHOUT ROWID;

CREATE TABLE deliveries (
    id               TEXT    NOT NULL UNIQUE,
    broadcast_id     TEXT    NOT NULL,
    seq              INTEGER NOT NULL,
    position         INTEGER NOT NULL, -- the destination's place in the broadcast
    destination      TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    fail_reason      TEXT,
    attempts         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    ambiguous        INTEGER NOT NULL DEFAULT 0,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    last_error       TEXT,
    remote_ref       TEXT,
    delivered_at     INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (broadcast_id, destination, seq)
);

-- Only claimable rows are indexed, so backed-off and terminal rows never slow a claim.
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leases ON deliveries (lease_expires_at) WHERE state = 'in_flight';

CREATE TABLE attempts (
    delivery_id  TEXT    NOT NULL,
    broadcast_id TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    number       INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    outcome      TEXT    NOT NULL,
    status       INTEGER,
    detail       TEXT
);
CREATE INDEX attempts_broadcast ON attempts (broadcast_id);
