-- herald's schema, version 5: a circuit breaker's probe takes a retried delivery. Sorting
-- the destination's whole due backlog by attempts cost a scan of every pending row per
-- probe (0.5 s at 170,000 pending, enough to stall the writer); this index holds only the
-- pending rows that were tried before, in due order, so a probe reads the rows it takes.
CREATE INDEX deliveries_retry_due ON deliveries (destination, next_attempt_at)
    WHERE state = 'pending' AND attempts > 0;
