CREATE TABLE tasks (
    tenant_id uuid NOT NULL,
    id bigint NOT NULL,
    project_id bigint NOT NULL,
    title text NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id)
);
