-- SPEC C2: a token may expire, and may be held to address blocks. Existing tokens keep
-- working as they did: no expiry (NULL), any address ('').
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
-- Canonical CIDR blocks, comma-separated; '' allows every address.
ALTER TABLE api_tokens ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '';
