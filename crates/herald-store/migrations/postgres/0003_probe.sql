-- A circuit breaker's probe takes a retried delivery. Sorting the destination's whole due
-- backlog by attempts cost a sort of every pending row per probe; this index holds only
-- the pending rows that were tried before, in due order, so a probe reads the rows it takes.
CREATE INDEX deliveries_retry_due ON deliveries (destination, next_attempt_at, id)
    WHERE state = 'pending' AND attempts > 0;
