-- ferrotrue migration 0003: what the UserRegistry keeps that GoTrue's tables have no column for.
-- Every row references its GoTrue row and dies with it (ON DELETE CASCADE), so deleting a user
-- (by ferrotrue or by GoTrue) leaves nothing behind here.

-- The order of a user's identities: flows read `identities.first()`, and with a pinned clock
-- several identities share `created_at`. `seq` is the order in which ferrotrue inserted them;
-- identities GoTrue wrote have no row and sort first (by created_at, id).
CREATE TABLE {fx}.identity_order (
    identity_id uuid NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT identity_order_pkey PRIMARY KEY (identity_id),
    CONSTRAINT identity_order_identity_id_fkey FOREIGN KEY (identity_id)
        REFERENCES {ns}.identities (id) ON DELETE CASCADE
);

-- Per MFA factor: the newest accepted TOTP step (replay protection) and the exact time of the
-- last challenge ({ns}.mfa_factors.last_challenged_at is UNIQUE across all factors, so two
-- factors challenged in the same microsecond get the next free microsecond there; this column
-- keeps the true value).
CREATE TABLE {fx}.mfa_factor_state (
    factor_id uuid NOT NULL,
    last_used_step bigint,
    last_challenged_at timestamptz,
    CONSTRAINT mfa_factor_state_pkey PRIMARY KEY (factor_id),
    CONSTRAINT mfa_factor_state_factor_id_fkey FOREIGN KEY (factor_id)
        REFERENCES {ns}.mfa_factors (id) ON DELETE CASCADE
);

-- Per MFA challenge: wrong codes so far, the client IP exactly as ferrotrue saw it (the inet
-- column cannot hold every string) and the order in which challenges were opened.
CREATE TABLE {fx}.mfa_challenge_state (
    challenge_id uuid NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    failed_attempts bigint NOT NULL DEFAULT 0,
    ip text NOT NULL,
    CONSTRAINT mfa_challenge_state_pkey PRIMARY KEY (challenge_id),
    CONSTRAINT mfa_challenge_state_challenge_id_fkey FOREIGN KEY (challenge_id)
        REFERENCES {ns}.mfa_challenges (id) ON DELETE CASCADE
);
