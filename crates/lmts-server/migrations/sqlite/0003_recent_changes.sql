-- Processes sharing one data directory look for each other's revocations and derives by time
-- (store/sqlite/changes.rs): these indexes keep each look to the few rows that changed.
CREATE INDEX api_tokens_revoked_at ON api_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX api_tokens_created_at ON api_tokens (created_at);
