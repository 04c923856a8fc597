-- SPEC C2: a token may expire, and may be held to address blocks. Existing tokens keep
-- working as they did: no expiry (NULL), any address (''). Adding a nullable column, or one
-- with a constant default, rewrites no rows, and instances of the earlier release keep
-- running beside this one (their statements name their columns). They neither take nor check
-- expiry and addresses, though: upgrade every instance before partners rely on them (the SDK
-- revokes a token derived without the restrictions it asked for).
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
-- Canonical CIDR blocks, comma-separated; '' allows every address.
ALTER TABLE api_tokens ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '';
