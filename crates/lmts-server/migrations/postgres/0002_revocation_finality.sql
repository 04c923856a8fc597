-- A revoke is final on every instance before it is answered (SPEC C1, B13); see "Revocation
-- across instances" in docs/ARCHITECTURE.md.

-- Every running instance: the highest revocation number it has applied to its caches, and its
-- last heartbeat. Times are PostgreSQL's own clock (milliseconds since the epoch), never an
-- instance's. Rows silent for long are deleted by whichever instance notices.
CREATE TABLE lmts_instances (
    id           TEXT   PRIMARY KEY,
    applied_seq  BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- Revocations are numbered in commit order: a revoke increments the one row last thing before
-- it commits and holds its lock until then, so no later number can commit before an earlier
-- one, and "applied up to N" means every revocation numbered N or less.
CREATE TABLE lmts_revocation_counter (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    last_seq BIGINT  NOT NULL
);
INSERT INTO lmts_revocation_counter (last_seq) VALUES (0);

-- The number of the revocation that revoked each token, so that a repeated revoke (answered
-- 404) also waits until that revocation is final. NULL for tokens revoked before this column.
ALTER TABLE api_tokens ADD COLUMN revoked_seq BIGINT;
