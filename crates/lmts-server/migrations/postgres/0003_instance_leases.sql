-- Each instance's own lease, so that a revoker waits for every live instance by that instance's
-- lease, not its own: instances configured with different leases keep a revoke final before
-- it is answered. Rows of instances that predate this column are judged by the default lease.
ALTER TABLE lmts_instances ADD COLUMN lease_ms BIGINT NOT NULL DEFAULT 2000;
