-- herald's schema, version 4: what the connectors for chat and ticket APIs need.
-- A destination that accepts a request without confirming the post (Teams Workflows
-- answer 202: a flow run was queued) is delivered but marked unconfirmed.
ALTER TABLE deliveries ADD COLUMN unconfirmed INTEGER NOT NULL DEFAULT 0;
