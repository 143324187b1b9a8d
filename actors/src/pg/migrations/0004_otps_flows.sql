-- ferrotrue migration 0004: one-time tokens, and what GoTrue's flow_state has no column for.
--
-- GoTrue's {ns}.one_time_tokens cannot hold ours (its type enum has six values, it stores an
-- unkeyed hash, no code MAC and no attempt count), so ferrotrue's tokens live here: only keyed
-- MACs, never a link token or a code (see actors/src/otp_issuer). One token per user and type.

CREATE TABLE {fx}.one_time_tokens (
    id uuid NOT NULL,
    user_id uuid NOT NULL REFERENCES {ns}.users (id) ON DELETE CASCADE,
    token_type text NOT NULL,
    link_mac bytea,
    code_mac bytea NOT NULL,
    relates_to text NOT NULL,
    pkce boolean NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    CONSTRAINT one_time_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT one_time_tokens_user_type_key UNIQUE (user_id, token_type),
    CONSTRAINT one_time_tokens_link_mac_key UNIQUE (link_mac)
);
CREATE INDEX one_time_tokens_relates_to_idx ON {fx}.one_time_tokens (relates_to);
CREATE INDEX one_time_tokens_created_at_idx ON {fx}.one_time_tokens (created_at);

-- An OAuth sign-in's flow state is a {ns}.flow_state row plus this one (its presence marks the
-- flow as external): the nonce sent to the provider and when a callback claimed the state.
CREATE TABLE {fx}.flow_state_external (
    flow_state_id uuid NOT NULL REFERENCES {ns}.flow_state (id) ON DELETE CASCADE,
    nonce text NOT NULL DEFAULT '',
    claimed_at timestamptz,
    CONSTRAINT flow_state_external_pkey PRIMARY KEY (flow_state_id)
);
