-- The replay record keyed by expiry first (store/replay.rs): a signature's expiry follows from
-- the timestamp it signs, so a copy has the same key, and fresh signatures land together at
-- the index's end instead of on a random page each; pruning reads the key's front. The table
-- stays the one instances of the earlier release write (their `ON CONFLICT DO NOTHING` names
-- no constraint), so a rolling upgrade keeps refusing copies across versions.
ALTER TABLE used_signatures DROP CONSTRAINT used_signatures_pkey;
ALTER TABLE used_signatures ADD PRIMARY KEY (expires_at, token_id, signature);
DROP INDEX used_signatures_expiry;
