-- SPEC C2's rotation: when a token was superseded by a rotation (its expiry then moved to the
-- end of the overlap). Other instances learn of it as of a revocation: numbered, notified.
ALTER TABLE api_tokens ADD COLUMN rotated_at BIGINT;
