-- Development PostgreSQL for deploy/compose.yaml: one database per service, each owned by
-- its own role (ARCHITECTURE.md, "Invariants": every service owns its schema and reads
-- no other's tables).
-- The official postgres image runs this once, when its data volume is first created.
--
-- DEVELOPMENT PLACEHOLDERS: the passwords below are public and only fit a laptop. In
-- production each service gets its own credentials from a secret manager (see
-- deploy/k8s/base/secrets.yaml and deploy/SCALING.md).
--
-- Each service applies its own migrations (migrations/<service>/postgres) when it starts.

CREATE ROLE economy_gateway LOGIN PASSWORD 'dev-only-gateway';
CREATE ROLE economy_ledger LOGIN PASSWORD 'dev-only-ledger';
CREATE ROLE economy_items LOGIN PASSWORD 'dev-only-items';
CREATE ROLE economy_redemption LOGIN PASSWORD 'dev-only-redemption';
CREATE ROLE economy_market LOGIN PASSWORD 'dev-only-market';

-- Owning the database makes the role the owner of its `public` schema too (PostgreSQL 15+:
-- `public` belongs to pg_database_owner), so migrations can create tables there.
CREATE DATABASE economy_gateway OWNER economy_gateway;
CREATE DATABASE economy_ledger OWNER economy_ledger;
CREATE DATABASE economy_items OWNER economy_items;
CREATE DATABASE economy_redemption OWNER economy_redemption;
CREATE DATABASE economy_market OWNER economy_market;

-- No role may connect to another service's database.
REVOKE CONNECT ON DATABASE economy_gateway FROM PUBLIC;
REVOKE CONNECT ON DATABASE economy_ledger FROM PUBLIC;
REVOKE CONNECT ON DATABASE economy_items FROM PUBLIC;
REVOKE CONNECT ON DATABASE economy_redemption FROM PUBLIC;
REVOKE CONNECT ON DATABASE economy_market FROM PUBLIC;
