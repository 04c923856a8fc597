-- The replay record keyed by expiry first (store/replay.rs): a signature's expiry follows from
-- the timestamp it signs, so a copy has the same key, and fresh signatures land together at
-- the index's end instead of on a random page each. Instances of an earlier release still
-- write used_signatures until they are upgraded; a later release drops it.
CREATE TABLE replay_record (
    expires_at BIGINT NOT NULL,
    token_id   TEXT   NOT NULL,
    signature  BYTEA  NOT NULL,
    PRIMARY KEY (expires_at, token_id, signature)
);
