"""Identity: users, groups, sessions, API tokens, OIDC, the roles policy and the audit trail."""
