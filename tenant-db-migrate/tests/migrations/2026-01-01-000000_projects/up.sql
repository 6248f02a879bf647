CREATE TABLE plans (code text PRIMARY KEY, name text NOT NULL);
INSERT INTO plans VALUES ('free', 'Free');
CREATE TABLE projects (
    tenant_id uuid NOT NULL,
    id bigint NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
