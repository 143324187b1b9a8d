-- ferrotrue migration 0001: GoTrue's `auth` schema as its latest migration leaves it.
--
-- Written for ferrotrue from the catalog GoTrue's migrations produce (table and column names,
-- types, nullability, defaults, constraint and index names), in one step rather than GoTrue's
-- seventy. `{ns}` is the namespace (GOTRUE_DB_NAMESPACE, a validated identifier). Runs inside
-- one transaction holding the migration lock (see pg/schema.rs); GoTrue's versions are recorded
-- in {ns}.schema_migrations by the caller, after this script.

CREATE SCHEMA IF NOT EXISTS {ns};

-- Enumerations
CREATE TYPE {ns}.aal_level AS ENUM ('aal1', 'aal2', 'aal3');
CREATE TYPE {ns}.factor_type AS ENUM ('totp', 'webauthn', 'phone');
CREATE TYPE {ns}.factor_status AS ENUM ('unverified', 'verified');
CREATE TYPE {ns}.code_challenge_method AS ENUM ('s256', 'plain');
CREATE TYPE {ns}.one_time_token_type AS ENUM (
    'confirmation_token', 'reauthentication_token', 'recovery_token',
    'email_change_token_new', 'email_change_token_current', 'phone_change_token');
CREATE TYPE {ns}.oauth_registration_type AS ENUM ('dynamic', 'manual');
CREATE TYPE {ns}.oauth_client_type AS ENUM ('public', 'confidential');
CREATE TYPE {ns}.oauth_authorization_status AS ENUM ('pending', 'approved', 'denied', 'expired');
CREATE TYPE {ns}.oauth_response_type AS ENUM ('code');

-- Bookkeeping read by GoTrue's migrator (one row per applied migration version).
CREATE TABLE {ns}.schema_migrations (
    version varchar(255) NOT NULL,
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
);

CREATE TABLE {ns}.instances (
    id uuid NOT NULL,
    uuid uuid,
    raw_base_config text,
    created_at timestamptz,
    updated_at timestamptz,
    CONSTRAINT instances_pkey PRIMARY KEY (id)
);

-- Users. The column order is GoTrue's (columns were appended over the years).
CREATE TABLE {ns}.users (
    instance_id uuid,
    id uuid NOT NULL,
    aud varchar(255),
    role varchar(255),
    email varchar(255),
    encrypted_password varchar(255),
    email_confirmed_at timestamptz,
    invited_at timestamptz,
    confirmation_token varchar(255),
    confirmation_sent_at timestamptz,
    recovery_token varchar(255),
    recovery_sent_at timestamptz,
    email_change_token_new varchar(255),
    email_change varchar(255),
    email_change_sent_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb,
    raw_user_meta_data jsonb,
    is_super_admin boolean,
    created_at timestamptz,
    updated_at timestamptz,
    -- phone and phone_change began as varchar(15) and became text; their defaults kept the type.
    phone text DEFAULT NULL::varchar,
    phone_confirmed_at timestamptz,
    phone_change text DEFAULT ''::varchar,
    phone_change_token varchar(255) DEFAULT '',
    phone_change_sent_at timestamptz,
    confirmed_at timestamptz GENERATED ALWAYS AS (least(email_confirmed_at, phone_confirmed_at)) STORED,
    email_change_token_current varchar(255) DEFAULT '',
    email_change_confirm_status smallint DEFAULT 0,
    banned_until timestamptz,
    reauthentication_token varchar(255) DEFAULT '',
    reauthentication_sent_at timestamptz,
    is_sso_user boolean NOT NULL DEFAULT false,
    deleted_at timestamptz,
    is_anonymous boolean NOT NULL DEFAULT false,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_phone_key UNIQUE (phone),
    CONSTRAINT users_email_change_confirm_status_check
        CHECK (email_change_confirm_status >= 0 AND email_change_confirm_status <= 2)
);
CREATE INDEX users_instance_id_idx ON {ns}.users (instance_id);
CREATE INDEX users_instance_id_email_idx ON {ns}.users (instance_id, lower(email::text));
CREATE INDEX users_is_anonymous_idx ON {ns}.users (is_anonymous);
-- SSO users may share an address; everybody else may not.
CREATE UNIQUE INDEX users_email_partial_key ON {ns}.users (email) WHERE is_sso_user = false;
-- Token columns are unique unless they hold nothing but digits and spaces (empty, or an OTP).
CREATE UNIQUE INDEX confirmation_token_idx ON {ns}.users (confirmation_token)
    WHERE confirmation_token::text !~ '^[0-9 ]*$';
CREATE UNIQUE INDEX recovery_token_idx ON {ns}.users (recovery_token)
    WHERE recovery_token::text !~ '^[0-9 ]*$';
CREATE UNIQUE INDEX email_change_token_current_idx ON {ns}.users (email_change_token_current)
    WHERE email_change_token_current::text !~ '^[0-9 ]*$';
CREATE UNIQUE INDEX email_change_token_new_idx ON {ns}.users (email_change_token_new)
    WHERE email_change_token_new::text !~ '^[0-9 ]*$';
CREATE UNIQUE INDEX reauthentication_token_idx ON {ns}.users (reauthentication_token)
    WHERE reauthentication_token::text !~ '^[0-9 ]*$';

CREATE TABLE {ns}.audit_log_entries (
    instance_id uuid,
    id uuid NOT NULL,
    payload json,
    created_at timestamptz,
    ip_address varchar(64) NOT NULL DEFAULT '',
    CONSTRAINT audit_log_entries_pkey PRIMARY KEY (id)
);
CREATE INDEX audit_logs_instance_id_idx ON {ns}.audit_log_entries (instance_id);

-- Identities: `provider_id` is the subject at the provider; `email` follows identity_data.
CREATE TABLE {ns}.identities (
    provider_id text NOT NULL,
    user_id uuid NOT NULL,
    identity_data jsonb NOT NULL,
    provider text NOT NULL,
    last_sign_in_at timestamptz,
    created_at timestamptz,
    updated_at timestamptz,
    email text GENERATED ALWAYS AS (lower(identity_data ->> 'email')) STORED,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    CONSTRAINT identities_pkey PRIMARY KEY (id),
    CONSTRAINT identities_provider_id_provider_unique UNIQUE (provider_id, provider),
    CONSTRAINT identities_user_id_fkey FOREIGN KEY (user_id) REFERENCES {ns}.users (id) ON DELETE CASCADE
);
CREATE INDEX identities_user_id_idx ON {ns}.identities (user_id);
CREATE INDEX identities_email_idx ON {ns}.identities (email text_pattern_ops);

-- OAuth server clients (sessions reference them, so they come first).
CREATE TABLE {ns}.oauth_clients (
    id uuid NOT NULL,
    client_secret_hash text,
    registration_type {ns}.oauth_registration_type NOT NULL,
    redirect_uris text NOT NULL,
    grant_types text NOT NULL,
    client_name text,
    client_uri text,
    logo_uri text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    client_type {ns}.oauth_client_type NOT NULL DEFAULT 'confidential',
    token_endpoint_auth_method text NOT NULL,
    CONSTRAINT oauth_clients_pkey PRIMARY KEY (id),
    CONSTRAINT oauth_clients_client_name_length CHECK (char_length(client_name) <= 1024),
    CONSTRAINT oauth_clients_client_uri_length CHECK (char_length(client_uri) <= 2048),
    CONSTRAINT oauth_clients_logo_uri_length CHECK (char_length(logo_uri) <= 2048),
    CONSTRAINT oauth_clients_token_endpoint_auth_method_check
        CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post', 'none'))
);
CREATE INDEX oauth_clients_deleted_at_idx ON {ns}.oauth_clients (deleted_at);

CREATE TABLE {ns}.sessions (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamptz,
    updated_at timestamptz,
    factor_id uuid,
    aal {ns}.aal_level,
    not_after timestamptz,
    refreshed_at timestamp,
    user_agent text,
    ip inet,
    tag text,
    oauth_client_id uuid,
    refresh_token_hmac_key text,
    refresh_token_counter bigint,
    scopes text,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES {ns}.users (id) ON DELETE CASCADE,
    CONSTRAINT sessions_oauth_client_id_fkey FOREIGN KEY (oauth_client_id)
        REFERENCES {ns}.oauth_clients (id) ON DELETE CASCADE,
    CONSTRAINT sessions_scopes_length CHECK (char_length(scopes) <= 4096)
);
CREATE INDEX sessions_user_id_idx ON {ns}.sessions (user_id);
CREATE INDEX user_id_created_at_idx ON {ns}.sessions (user_id, created_at);
CREATE INDEX sessions_not_after_idx ON {ns}.sessions (not_after DESC);
CREATE INDEX sessions_oauth_client_id_idx ON {ns}.sessions (oauth_client_id);

CREATE TABLE {ns}.refresh_tokens (
    instance_id uuid,
    id bigserial NOT NULL,
    token varchar(255),
    user_id varchar(255),
    revoked boolean,
    created_at timestamptz,
    updated_at timestamptz,
    parent varchar(255),
    session_id uuid,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT refresh_tokens_token_unique UNIQUE (token),
    CONSTRAINT refresh_tokens_session_id_fkey FOREIGN KEY (session_id)
        REFERENCES {ns}.sessions (id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_instance_id_idx ON {ns}.refresh_tokens (instance_id);
CREATE INDEX refresh_tokens_instance_id_user_id_idx ON {ns}.refresh_tokens (instance_id, user_id);
CREATE INDEX refresh_tokens_parent_idx ON {ns}.refresh_tokens (parent);
CREATE INDEX refresh_tokens_session_id_revoked_idx ON {ns}.refresh_tokens (session_id, revoked);
CREATE INDEX refresh_tokens_updated_at_idx ON {ns}.refresh_tokens (updated_at DESC);

-- MFA
CREATE TABLE {ns}.mfa_factors (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    friendly_name text,
    factor_type {ns}.factor_type NOT NULL,
    status {ns}.factor_status NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    secret text,
    phone text,
    last_challenged_at timestamptz,
    web_authn_credential jsonb,
    web_authn_aaguid uuid,
    last_webauthn_challenge_data jsonb,
    CONSTRAINT mfa_factors_pkey PRIMARY KEY (id),
    CONSTRAINT mfa_factors_last_challenged_at_key UNIQUE (last_challenged_at),
    CONSTRAINT mfa_factors_user_id_fkey FOREIGN KEY (user_id) REFERENCES {ns}.users (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX mfa_factors_user_friendly_name_unique ON {ns}.mfa_factors (friendly_name, user_id)
    WHERE trim(friendly_name) <> '';
CREATE UNIQUE INDEX unique_phone_factor_per_user ON {ns}.mfa_factors (user_id, phone);
CREATE INDEX factor_id_created_at_idx ON {ns}.mfa_factors (user_id, created_at);
CREATE INDEX mfa_factors_user_id_idx ON {ns}.mfa_factors (user_id);

CREATE TABLE {ns}.mfa_challenges (
    id uuid NOT NULL,
    factor_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    verified_at timestamptz,
    ip_address inet NOT NULL,
    otp_code text,
    web_authn_session_data jsonb,
    CONSTRAINT mfa_challenges_pkey PRIMARY KEY (id),
    CONSTRAINT mfa_challenges_auth_factor_id_fkey FOREIGN KEY (factor_id)
        REFERENCES {ns}.mfa_factors (id) ON DELETE CASCADE
);
CREATE INDEX mfa_challenge_created_at_idx ON {ns}.mfa_challenges (created_at DESC);

CREATE TABLE {ns}.mfa_amr_claims (
    session_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    authentication_method text NOT NULL,
    id uuid NOT NULL,
    CONSTRAINT amr_id_pk PRIMARY KEY (id),
    CONSTRAINT mfa_amr_claims_session_id_authentication_method_pkey UNIQUE (session_id, authentication_method),
    CONSTRAINT mfa_amr_claims_session_id_fkey FOREIGN KEY (session_id) REFERENCES {ns}.sessions (id) ON DELETE CASCADE
);

-- SSO / SAML. (`= NULL` in two checks is GoTrue's: it never holds, so those checks reduce to
-- the length test; kept so that both schemas hold the same rows.)
CREATE TABLE {ns}.sso_providers (
    id uuid NOT NULL,
    resource_id text,
    created_at timestamptz,
    updated_at timestamptz,
    disabled boolean,
    CONSTRAINT sso_providers_pkey PRIMARY KEY (id),
    CONSTRAINT "resource_id not empty" CHECK (resource_id = NULL::text OR char_length(resource_id) > 0)
);
CREATE UNIQUE INDEX sso_providers_resource_id_idx ON {ns}.sso_providers (lower(resource_id));
CREATE INDEX sso_providers_resource_id_pattern_idx ON {ns}.sso_providers (resource_id text_pattern_ops);

CREATE TABLE {ns}.sso_domains (
    id uuid NOT NULL,
    sso_provider_id uuid NOT NULL,
    domain text NOT NULL,
    created_at timestamptz,
    updated_at timestamptz,
    CONSTRAINT sso_domains_pkey PRIMARY KEY (id),
    CONSTRAINT sso_domains_sso_provider_id_fkey FOREIGN KEY (sso_provider_id)
        REFERENCES {ns}.sso_providers (id) ON DELETE CASCADE,
    CONSTRAINT "domain not empty" CHECK (char_length(domain) > 0)
);
CREATE INDEX sso_domains_sso_provider_id_idx ON {ns}.sso_domains (sso_provider_id);
CREATE UNIQUE INDEX sso_domains_domain_idx ON {ns}.sso_domains (lower(domain));

CREATE TABLE {ns}.saml_providers (
    id uuid NOT NULL,
    sso_provider_id uuid NOT NULL,
    entity_id text NOT NULL,
    metadata_xml text NOT NULL,
    metadata_url text,
    attribute_mapping jsonb,
    created_at timestamptz,
    updated_at timestamptz,
    name_id_format text,
    CONSTRAINT saml_providers_pkey PRIMARY KEY (id),
    CONSTRAINT saml_providers_entity_id_key UNIQUE (entity_id),
    CONSTRAINT saml_providers_sso_provider_id_fkey FOREIGN KEY (sso_provider_id)
        REFERENCES {ns}.sso_providers (id) ON DELETE CASCADE,
    CONSTRAINT "metadata_xml not empty" CHECK (char_length(metadata_xml) > 0),
    CONSTRAINT "metadata_url not empty" CHECK (metadata_url = NULL::text OR char_length(metadata_url) > 0),
    CONSTRAINT "entity_id not empty" CHECK (char_length(entity_id) > 0)
);
CREATE INDEX saml_providers_sso_provider_id_idx ON {ns}.saml_providers (sso_provider_id);

-- PKCE / OAuth / SSO flow state.
CREATE TABLE {ns}.flow_state (
    id uuid NOT NULL,
    user_id uuid,
    auth_code text,
    code_challenge_method {ns}.code_challenge_method,
    code_challenge text,
    provider_type text NOT NULL,
    provider_access_token text,
    provider_refresh_token text,
    created_at timestamptz,
    updated_at timestamptz,
    authentication_method text NOT NULL,
    auth_code_issued_at timestamptz,
    invite_token text,
    referrer text,
    oauth_client_state_id uuid,
    linking_target_id uuid,
    email_optional boolean NOT NULL DEFAULT false,
    CONSTRAINT flow_state_pkey PRIMARY KEY (id)
);
CREATE INDEX idx_auth_code ON {ns}.flow_state (auth_code);
CREATE INDEX idx_user_id_auth_method ON {ns}.flow_state (user_id, authentication_method);
CREATE INDEX flow_state_created_at_idx ON {ns}.flow_state (created_at DESC);

CREATE TABLE {ns}.saml_relay_states (
    id uuid NOT NULL,
    sso_provider_id uuid NOT NULL,
    request_id text NOT NULL,
    for_email text,
    redirect_to text,
    created_at timestamptz,
    updated_at timestamptz,
    flow_state_id uuid,
    CONSTRAINT saml_relay_states_pkey PRIMARY KEY (id),
    CONSTRAINT saml_relay_states_sso_provider_id_fkey FOREIGN KEY (sso_provider_id)
        REFERENCES {ns}.sso_providers (id) ON DELETE CASCADE,
    CONSTRAINT saml_relay_states_flow_state_id_fkey FOREIGN KEY (flow_state_id)
        REFERENCES {ns}.flow_state (id) ON DELETE CASCADE,
    CONSTRAINT "request_id not empty" CHECK (char_length(request_id) > 0)
);
CREATE INDEX saml_relay_states_sso_provider_id_idx ON {ns}.saml_relay_states (sso_provider_id);
CREATE INDEX saml_relay_states_for_email_idx ON {ns}.saml_relay_states (for_email);
CREATE INDEX saml_relay_states_created_at_idx ON {ns}.saml_relay_states (created_at DESC);

-- One-time tokens (confirmation, recovery, ...), looked up by hash.
CREATE TABLE {ns}.one_time_tokens (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    token_type {ns}.one_time_token_type NOT NULL,
    token_hash text NOT NULL,
    relates_to text NOT NULL,
    created_at timestamp NOT NULL DEFAULT now(),
    updated_at timestamp NOT NULL DEFAULT now(),
    CONSTRAINT one_time_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT one_time_tokens_user_id_fkey FOREIGN KEY (user_id) REFERENCES {ns}.users (id) ON DELETE CASCADE,
    CONSTRAINT one_time_tokens_token_hash_check CHECK (char_length(token_hash) > 0)
);
CREATE INDEX one_time_tokens_token_hash_hash_idx ON {ns}.one_time_tokens USING hash (token_hash);
CREATE INDEX one_time_tokens_relates_to_hash_idx ON {ns}.one_time_tokens USING hash (relates_to);
CREATE UNIQUE INDEX one_time_tokens_user_id_token_type_key ON {ns}.one_time_tokens (user_id, token_type);

-- OAuth 2.1 server: authorizations and consents.
CREATE TABLE {ns}.oauth_authorizations (
    id uuid NOT NULL,
    authorization_id text NOT NULL,
    client_id uuid NOT NULL,
    user_id uuid,
    redirect_uri text NOT NULL,
    scope text NOT NULL,
    state text,
    resource text,
    code_challenge text,
    code_challenge_method {ns}.code_challenge_method,
    response_type {ns}.oauth_response_type NOT NULL DEFAULT 'code',
    status {ns}.oauth_authorization_status NOT NULL DEFAULT 'pending',
    authorization_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT (now() + interval '3 minutes'),
    approved_at timestamptz,
    nonce text,
    CONSTRAINT oauth_authorizations_pkey PRIMARY KEY (id),
    CONSTRAINT oauth_authorizations_authorization_id_key UNIQUE (authorization_id),
    CONSTRAINT oauth_authorizations_authorization_code_key UNIQUE (authorization_code),
    CONSTRAINT oauth_authorizations_client_id_fkey FOREIGN KEY (client_id)
        REFERENCES {ns}.oauth_clients (id) ON DELETE CASCADE,
    CONSTRAINT oauth_authorizations_user_id_fkey FOREIGN KEY (user_id) REFERENCES {ns}.users (id) ON DELETE CASCADE,
    CONSTRAINT oauth_authorizations_redirect_uri_length CHECK (char_length(redirect_uri) <= 2048),
    CONSTRAINT oauth_authorizations_scope_length CHECK (char_length(scope) <= 4096),
    CONSTRAINT oauth_authorizations_state_length CHECK (char_length(state) <= 4096),
    CONSTRAINT oauth_authorizations_resource_length CHECK (char_length(resource) <= 2048),
    CONSTRAINT oauth_authorizations_code_challenge_length CHECK (char_length(code_challenge) <= 128),
    CONSTRAINT oauth_authorizations_authorization_code_length CHECK (char_length(authorization_code) <= 255),
    CONSTRAINT oauth_authorizations_expires_at_future CHECK (expires_at > created_at),
    CONSTRAINT oauth_authorizations_nonce_length CHECK (char_length(nonce) <= 255)
);
CREATE INDEX oauth_auth_pending_exp_idx ON {ns}.oauth_authorizations (expires_at) WHERE status = 'pending';

CREATE TABLE {ns}.oauth_consents (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    client_id uuid NOT NULL,
    scopes text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT oauth_consents_pkey PRIMARY KEY (id),
    CONSTRAINT oauth_consents_user_client_unique UNIQUE (user_id, client_id),
    CONSTRAINT oauth_consents_user_id_fkey FOREIGN KEY (user_id) REFERENCES {ns}.users (id) ON DELETE CASCADE,
    CONSTRAINT oauth_consents_client_id_fkey FOREIGN KEY (client_id)
        REFERENCES {ns}.oauth_clients (id) ON DELETE CASCADE,
    CONSTRAINT oauth_consents_scopes_length CHECK (char_length(scopes) <= 2048),
    CONSTRAINT oauth_consents_scopes_not_empty CHECK (char_length(trim(scopes)) > 0),
    CONSTRAINT oauth_consents_revoked_after_granted CHECK (revoked_at IS NULL OR revoked_at >= granted_at)
);
CREATE INDEX oauth_consents_active_user_client_idx ON {ns}.oauth_consents (user_id, client_id)
    WHERE revoked_at IS NULL;
CREATE INDEX oauth_consents_user_order_idx ON {ns}.oauth_consents (user_id, granted_at DESC);
CREATE INDEX oauth_consents_active_client_idx ON {ns}.oauth_consents (client_id) WHERE revoked_at IS NULL;

-- OAuth client side: state of third-party sign-ins.
CREATE TABLE {ns}.oauth_client_states (
    id uuid NOT NULL,
    provider_type text NOT NULL,
    code_verifier text,
    created_at timestamptz NOT NULL,
    CONSTRAINT oauth_client_states_pkey PRIMARY KEY (id)
);
CREATE INDEX idx_oauth_client_states_created_at ON {ns}.oauth_client_states (created_at);

-- Custom OAuth2 / OIDC providers configured at run time.
CREATE TABLE {ns}.custom_oauth_providers (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    provider_type text NOT NULL,
    identifier text NOT NULL,
    name text NOT NULL,
    client_id text NOT NULL,
    client_secret text NOT NULL,
    acceptable_client_ids text[] NOT NULL DEFAULT '{}',
    scopes text[] NOT NULL DEFAULT '{}',
    pkce_enabled boolean NOT NULL DEFAULT true,
    attribute_mapping jsonb NOT NULL DEFAULT '{}',
    authorization_params jsonb NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    email_optional boolean NOT NULL DEFAULT false,
    issuer text,
    discovery_url text,
    skip_nonce_check boolean NOT NULL DEFAULT false,
    cached_discovery jsonb,
    discovery_cached_at timestamptz,
    authorization_url text,
    token_url text,
    userinfo_url text,
    jwks_uri text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    custom_claims_allowlist text[] NOT NULL DEFAULT '{}',
    CONSTRAINT custom_oauth_providers_pkey PRIMARY KEY (id),
    CONSTRAINT custom_oauth_providers_identifier_key UNIQUE (identifier),
    CONSTRAINT custom_oauth_providers_provider_type_check CHECK (provider_type IN ('oauth2', 'oidc')),
    CONSTRAINT custom_oauth_providers_oidc_requires_issuer CHECK (provider_type <> 'oidc' OR issuer IS NOT NULL),
    CONSTRAINT custom_oauth_providers_oidc_issuer_https
        CHECK (provider_type <> 'oidc' OR issuer IS NULL OR issuer LIKE 'https://%'),
    CONSTRAINT custom_oauth_providers_oidc_discovery_url_https
        CHECK (provider_type <> 'oidc' OR discovery_url IS NULL OR discovery_url LIKE 'https://%'),
    CONSTRAINT custom_oauth_providers_oauth2_requires_endpoints CHECK (
        provider_type <> 'oauth2'
        OR (authorization_url IS NOT NULL AND token_url IS NOT NULL AND userinfo_url IS NOT NULL)),
    CONSTRAINT custom_oauth_providers_authorization_url_https
        CHECK (authorization_url IS NULL OR authorization_url LIKE 'https://%'),
    CONSTRAINT custom_oauth_providers_token_url_https CHECK (token_url IS NULL OR token_url LIKE 'https://%'),
    CONSTRAINT custom_oauth_providers_userinfo_url_https CHECK (userinfo_url IS NULL OR userinfo_url LIKE 'https://%'),
    CONSTRAINT custom_oauth_providers_jwks_uri_https CHECK (jwks_uri IS NULL OR jwks_uri LIKE 'https://%'),
    CONSTRAINT custom_oauth_providers_identifier_format CHECK (identifier ~ '^[a-z0-9][a-z0-9:-]{0,48}[a-z0-9]$'),
    CONSTRAINT custom_oauth_providers_name_length CHECK (char_length(name) >= 1 AND char_length(name) <= 100),
    CONSTRAINT custom_oauth_providers_issuer_length
        CHECK (issuer IS NULL OR (char_length(issuer) >= 1 AND char_length(issuer) <= 2048)),
    CONSTRAINT custom_oauth_providers_discovery_url_length
        CHECK (discovery_url IS NULL OR char_length(discovery_url) <= 2048),
    CONSTRAINT custom_oauth_providers_authorization_url_length
        CHECK (authorization_url IS NULL OR char_length(authorization_url) <= 2048),
    CONSTRAINT custom_oauth_providers_token_url_length CHECK (token_url IS NULL OR char_length(token_url) <= 2048),
    CONSTRAINT custom_oauth_providers_userinfo_url_length
        CHECK (userinfo_url IS NULL OR char_length(userinfo_url) <= 2048),
    CONSTRAINT custom_oauth_providers_jwks_uri_length CHECK (jwks_uri IS NULL OR char_length(jwks_uri) <= 2048),
    CONSTRAINT custom_oauth_providers_client_id_length
        CHECK (char_length(client_id) >= 1 AND char_length(client_id) <= 512)
);
CREATE INDEX custom_oauth_providers_identifier_idx ON {ns}.custom_oauth_providers (identifier);
CREATE INDEX custom_oauth_providers_provider_type_idx ON {ns}.custom_oauth_providers (provider_type);
CREATE INDEX custom_oauth_providers_enabled_idx ON {ns}.custom_oauth_providers (enabled);
CREATE INDEX custom_oauth_providers_created_at_idx ON {ns}.custom_oauth_providers (created_at);

-- Passkeys.
CREATE TABLE {ns}.webauthn_credentials (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    credential_id bytea NOT NULL,
    public_key bytea NOT NULL,
    attestation_type text NOT NULL DEFAULT '',
    aaguid uuid,
    sign_count bigint NOT NULL DEFAULT 0,
    transports jsonb NOT NULL DEFAULT '[]',
    backup_eligible boolean NOT NULL DEFAULT false,
    backed_up boolean NOT NULL DEFAULT false,
    friendly_name text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    CONSTRAINT webauthn_credentials_pkey PRIMARY KEY (id),
    CONSTRAINT webauthn_credentials_user_id_fkey FOREIGN KEY (user_id) REFERENCES {ns}.users (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX webauthn_credentials_credential_id_key ON {ns}.webauthn_credentials (credential_id);
CREATE INDEX webauthn_credentials_user_id_idx ON {ns}.webauthn_credentials (user_id);

CREATE TABLE {ns}.webauthn_challenges (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid,
    challenge_type text NOT NULL,
    session_data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CONSTRAINT webauthn_challenges_pkey PRIMARY KEY (id),
    CONSTRAINT webauthn_challenges_user_id_fkey FOREIGN KEY (user_id) REFERENCES {ns}.users (id) ON DELETE CASCADE,
    CONSTRAINT webauthn_challenges_challenge_type_check
        CHECK (challenge_type IN ('signup', 'registration', 'authentication'))
);
CREATE INDEX webauthn_challenges_user_id_idx ON {ns}.webauthn_challenges (user_id);
CREATE INDEX webauthn_challenges_expires_at_idx ON {ns}.webauthn_challenges (expires_at);

-- Helpers for row-level-security policies: the claims PostgREST puts in the request settings,
-- either as one JSON setting (`request.jwt.claims`) or, on older PostgREST, one setting per claim.
CREATE FUNCTION {ns}.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                    nullif(current_setting('request.jwt.claims', true), ''))::jsonb
$$;
CREATE FUNCTION {ns}.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')::uuid
$$;
CREATE FUNCTION {ns}.role() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')::text
$$;
CREATE FUNCTION {ns}.email() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim.email', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')::text
$$;
COMMENT ON FUNCTION {ns}.uid() IS 'Deprecated: use {ns}.jwt() ->> ''sub''.';
COMMENT ON FUNCTION {ns}.role() IS 'Deprecated: use {ns}.jwt() ->> ''role''.';
COMMENT ON FUNCTION {ns}.email() IS 'Deprecated: use {ns}.jwt() ->> ''email''.';

-- Row-level security is on for the tables GoTrue had when it turned it on (no policies: only
-- the owner and roles that bypass RLS see rows), and the `postgres` role, where it exists, may
-- read them and grant reading to others (Supabase's dashboard relies on it).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['schema_migrations', 'instances', 'users', 'audit_log_entries',
        'saml_relay_states', 'refresh_tokens', 'mfa_factors', 'sessions', 'sso_providers', 'sso_domains',
        'mfa_challenges', 'mfa_amr_claims', 'saml_providers', 'flow_state', 'identities', 'one_time_tokens']
    LOOP
        EXECUTE format('ALTER TABLE {ns}.%I ENABLE ROW LEVEL SECURITY', t);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'postgres') THEN
            EXECUTE format('GRANT SELECT ON {ns}.%I TO postgres WITH GRANT OPTION', t);
        END IF;
    END LOOP;
END $$;
