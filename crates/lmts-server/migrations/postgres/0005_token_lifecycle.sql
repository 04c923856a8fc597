-- SPEC C2: a token may expire, and may be held to address blocks. Existing tokens keep
-- working as they did: no expiry (NULL), any address (''). Adding a nullable column, or one
-- with a constant default, rewrites no rows, so instances of the earlier release keep running
-- during a rolling upgrade (their statements name their columns).
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
-- Canonical CIDR blocks, comma-separated; '' allows every address.
ALTER TABLE api_tokens ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '';
