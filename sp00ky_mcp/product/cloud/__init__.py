"""The Sp00ky control plane: tenancy, roles, state machines and the business rules of each
area (projects, deployments, logs, env, vault, backups, domains, repo links, teams, billing).
It holds no SQL: it reads and writes through the storage port (`..store`)."""
