-- SPEC C2's audit events: what happened to a partner's tokens, oldest first by id. Lifecycle
-- events are written in the transaction of the change they record; failures and new addresses
-- as they are seen. Pruned after the retention period (--event-retention-days).
CREATE TABLE token_events (
    id         BIGSERIAL PRIMARY KEY,
    profile_id INTEGER   NOT NULL,
    at         BIGINT    NOT NULL,
    kind       TEXT      NOT NULL,
    token_id   TEXT      NOT NULL,
    ip         TEXT,
    detail     TEXT      NOT NULL
);
CREATE INDEX token_events_by_profile ON token_events (profile_id, id);
CREATE INDEX token_events_by_time ON token_events (at);
-- Whether a token's expiry was written as an event (maintenance notes expiries as they pass).
ALTER TABLE api_tokens ADD COLUMN expiry_noted BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX api_tokens_expiring ON api_tokens (expires_at)
    WHERE expires_at IS NOT NULL AND NOT expiry_noted;
-- The addresses each token was used from, so that a new one is an event once.
CREATE TABLE token_addresses (
    token_id TEXT NOT NULL,
    ip       TEXT NOT NULL,
    PRIMARY KEY (token_id, ip)
);
