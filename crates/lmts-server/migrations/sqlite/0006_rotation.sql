-- SPEC C2's rotation: when a token was superseded by a rotation (its expiry then moved to the
-- end of the overlap). Other processes on this file look for rotations as for revocations
-- (store/sqlite/changes.rs), by this index.
ALTER TABLE api_tokens ADD COLUMN rotated_at INTEGER;
CREATE INDEX api_tokens_rotated_at ON api_tokens (rotated_at) WHERE rotated_at IS NOT NULL;
