-- 0001: tenants, their admin API keys, and the SQL document store.
--
-- Runs unchanged on TiDB and MariaDB (DESIGN §2.7): ids are BIGINT UNSIGNED
-- minted by the application (lib/parley_id.h), never AUTO_INCREMENT; no
-- triggers, procedures, sequences, RETURNING or foreign keys (TiDB enforces
-- none of them the same way; the application keeps tenant_id consistent).
-- Timestamps are UTC, DATETIME(3).  Text is utf8mb4 with the binary
-- collation, which both servers implement identically (case-sensitive ids
-- and names).
--
-- Every statement can run again (IF NOT EXISTS): DDL commits on its own, so
-- a migration that stopped half-way is completed by running it once more.

-- One row per tenant (an "app").  The only table without tenant_id: it is
-- the tenant.  Names are unique so operators can address tenants by name
-- (parleyctl tenant create --if-absent).
CREATE TABLE IF NOT EXISTS tenants (
    id          BIGINT UNSIGNED NOT NULL,
    name        VARCHAR(128)    NOT NULL,
    status      VARCHAR(16)     NOT NULL DEFAULT 'active',
    settings    JSON            NULL,
    created_at  DATETIME(3)     NOT NULL,
    updated_at  DATETIME(3)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_tenants_name (name),
    CONSTRAINT ck_tenants_status CHECK (status IN ('active', 'suspended'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Admin API keys.  Only the SHA-256 of a key is stored (hex, looked up
-- through the unique index when a key is presented) plus its first 11
-- characters for display and revocation; the key itself is shown once.
CREATE TABLE IF NOT EXISTS tenant_api_keys (
    id          BIGINT UNSIGNED NOT NULL,
    tenant_id   BIGINT UNSIGNED NOT NULL,
    key_hash    CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    key_prefix  CHAR(11) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    label       VARCHAR(128)    NOT NULL DEFAULT '',
    created_at  DATETIME(3)     NOT NULL,
    revoked_at  DATETIME(3)     NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_tenant_api_keys_hash (key_hash),
    KEY ix_tenant_api_keys_tenant (tenant_id, key_prefix)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Documents (policies, preferences, webhook configurations, audit): the SQL
-- stand-in for the MongoDB backend (DESIGN §3), one JSON body per
-- (tenant, collection, document id).
CREATE TABLE IF NOT EXISTS documents (
    tenant_id   BIGINT UNSIGNED NOT NULL,
    collection  VARCHAR(64)     NOT NULL,
    doc_id      VARCHAR(128)    NOT NULL,
    body        JSON            NOT NULL,
    updated_at  DATETIME(3)     NOT NULL,
    PRIMARY KEY (tenant_id, collection, doc_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
