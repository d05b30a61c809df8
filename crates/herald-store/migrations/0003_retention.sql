-- Retention and per-destination counters.
-- `destination_counts` holds, per destination and state, how many delivery rows exist,
-- so `/metrics` and `GET /v1/destinations` read O(destinations) rows instead of
-- counting every delivery. Triggers keep it exact on every path that inserts, changes
-- the state of, or deletes a delivery (submits, updates, records, cascades, operator
-- actions, retention), inside the same transaction. `last_delivered_at` only grows:
-- pruning old rows does not forget when the destination last took a message.

CREATE TABLE destination_counts (
    destination       TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    n                 INTEGER NOT NULL,
    last_delivered_at INTEGER,
    PRIMARY KEY (destination, state)
) WITHOUT ROWID;

INSERT INTO destination_counts (destination, state, n, last_delivered_at)
    SELECT destination, state, COUNT(*), MAX(delivered_at) FROM deliveries
    GROUP BY destination, state;

CREATE TRIGGER deliveries_counted_insert AFTER INSERT ON deliveries
BEGIN
    INSERT INTO destination_counts (destination, state, n, last_delivered_at)
        VALUES (NEW.destination, NEW.state, 1, NEW.delivered_at)
        ON CONFLICT (destination, state) DO UPDATE SET
            n = n + 1,
            last_delivered_at = COALESCE(MAX(last_delivered_at, excluded.last_delivered_at),
                                         last_delivered_at, excluded.last_delivered_at);
END;

CREATE TRIGGER deliveries_counted_update AFTER UPDATE OF state, delivered_at, destination ON deliveries
WHEN OLD.state IS NOT NEW.state
  OR OLD.destination IS NOT NEW.destination
  OR OLD.delivered_at IS NOT NEW.delivered_at
BEGIN
    UPDATE destination_counts SET n = n - 1
        WHERE destination = OLD.destination AND state = OLD.state;
    INSERT INTO destination_counts (destination, state, n, last_delivered_at)
        VALUES (NEW.destination, NEW.state, 1, NEW.delivered_at)
        ON CONFLICT (destination, state) DO UPDATE SET
            n = n + 1,
            last_delivered_at = COALESCE(MAX(last_delivered_at, excluded.last_delivered_at),
                                         last_delivered_at, excluded.last_delivered_at);
END;

CREATE TRIGGER deliveries_counted_delete AFTER DELETE ON deliveries
BEGIN
    UPDATE destination_counts SET n = n - 1
        WHERE destination = OLD.destination AND state = OLD.state;
END;

-- Retention deletes a broadcast's attempts by broadcast id (`attempts_broadcast`), its
-- deliveries by the unique (broadcast_id, destination, seq) index and its messages by
-- their primary key; no new index is needed.
