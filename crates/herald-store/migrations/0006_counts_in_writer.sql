-- herald's schema, version 6: `destination_counts` is kept by the writer.
-- The triggers of 0003_retention.sql ran an UPDATE and an upsert on the counters for
-- every single state change of a delivery, a large part of each lease and record. The
-- store's writer now notes each insert, state change and delete of a delivery and adds
-- them to the counters once per transaction, before its COMMIT (sqlite/counts.rs), so
-- the counters stay exact at every commit. Anything that writes `deliveries` outside
-- the store must now keep `destination_counts` itself.
DROP TRIGGER deliveries_counted_insert;
DROP TRIGGER deliveries_counted_update;
DROP TRIGGER deliveries_counted_delete;
