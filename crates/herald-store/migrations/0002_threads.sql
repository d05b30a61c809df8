-- herald's schema, version 2: idempotent updates and held deliveries with a reason.

-- An update's idempotency key is scoped to its broadcast; the fingerprint of the request
-- that used it tells a replay (same request) from a conflict (another one). The original
-- (seq 0) keeps its key on `broadcasts`.
ALTER TABLE messages ADD COLUMN idempotency_key TEXT;
ALTER TABLE messages ADD COLUMN fingerprint TEXT;
CREATE UNIQUE INDEX messages_idempotency ON messages (broadcast_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Why a held delivery is held when herald (not an ambiguous outcome) put it there:
-- `destination_removed` while its destination is missing from the configuration.
ALTER TABLE deliveries ADD COLUMN hold_reason TEXT;
CREATE INDEX deliveries_held ON deliveries (destination) WHERE state = 'held';
