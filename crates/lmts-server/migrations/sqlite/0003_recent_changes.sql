-- Processes sharing one data directory look for each other's revocations by time
-- (store/sqlite/changes.rs): this index keeps each look to the few rows revoked lately.
CREATE INDEX api_tokens_revoked_at ON api_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
