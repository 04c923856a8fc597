-- Partner profiles, keyed by the identity's subject (SPEC B9). SERIAL: ids fit in i32.
CREATE TABLE profiles (
    id         SERIAL PRIMARY KEY,
    subject    TEXT   NOT NULL UNIQUE,
    account    TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX profiles_account ON profiles (lower(account));

-- Operator settings per partner account (lower-case address); the row '*' is the default.
CREATE TABLE partner_settings (
    account                  TEXT    PRIMARY KEY,
    token_management_enabled BOOLEAN NOT NULL,
    allowed_scopes           TEXT    NOT NULL,
    updated_at               BIGINT  NOT NULL
);

-- API tokens. The secret is sealed (AES-256-GCM) under the master key named by key_id.
CREATE TABLE api_tokens (
    token_id      TEXT    PRIMARY KEY,
    profile_id    INTEGER NOT NULL REFERENCES profiles (id),
    label         TEXT,
    scopes        TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    key_id        TEXT    NOT NULL,
    sealed_secret BYTEA   NOT NULL
);
CREATE INDEX api_tokens_active ON api_tokens (profile_id) WHERE revoked_at IS NULL;

-- Signatures of accepted state-changing requests, kept for the window (SPEC B6), shared by
-- every instance so that a request replayed to another one is refused too.
CREATE TABLE used_signatures (
    token_id   TEXT   NOT NULL,
    signature  BYTEA  NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (token_id, signature)
);
CREATE INDEX used_signatures_expiry ON used_signatures (expires_at);
