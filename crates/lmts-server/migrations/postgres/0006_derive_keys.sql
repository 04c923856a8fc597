-- SPEC C2: a derive sent with an Idempotency-Key is recorded under it, so that the same key
-- from the same profile within 24 hours answers the first derive's token again (its secret
-- is the token's own, sealed in api_tokens) instead of creating a second one.
CREATE TABLE derive_keys (
    profile_id      INTEGER NOT NULL,
    idempotency_key TEXT    NOT NULL,
    -- SHA-256 of the derive's body: the same key with another body is refused.
    body_digest     BYTEA   NOT NULL,
    token_id        TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (profile_id, idempotency_key)
);
CREATE INDEX derive_keys_created_at ON derive_keys (created_at);
