-- The quickstart's tables. Row-level security, the tenant indexes and the grants are not
-- written here: tenant-db-migrate applies them for every registered table after the
-- migrations.
CREATE TABLE plans (code text PRIMARY KEY, name text NOT NULL);
INSERT INTO plans VALUES ('free', 'Free'), ('pro', 'Pro');

CREATE TABLE customers (
    tenant_id uuid NOT NULL,
    id bigint NOT NULL,
    name text NOT NULL,
    plan_code text NOT NULL REFERENCES plans (code),
    PRIMARY KEY (tenant_id, id)
);
