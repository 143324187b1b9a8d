// OAuth / OpenID Connect sign-in through auth-js against a real OpenID provider
// (oauth2-mock-server, see oidc-provider.mjs) and the OAuth server of run.sh
// (FERROTRUE_OAUTH_URL: generic OIDC provider `oidc` + Keycloak-style `keycloak`).
//
// There is no browser: each test follows the redirects itself with fetch(redirect: 'manual'),
// ferrotrue /authorize → provider /authorize (auto-approves) → ferrotrue /callback → the app,
// and stops at the app's URL (http://localhost:3000/...), where a browser app would read the
// session from the fragment (implicit) or exchange ?code= (PKCE).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { GoTrueClient } from '@supabase/auth-js'
import { API_VERSION, assertNoError, assertSession, decodeAndVerifyJwt, memoryStorage, randomEmail, randomPassword } from './lib.mjs'

const OAUTH_URL = (process.env.FERROTRUE_OAUTH_URL || '').replace(/\/+$/, '')
const OIDC_ISSUER = process.env.FERROTRUE_OIDC_ISSUER || ''
const CLIENT_ID = process.env.FERROTRUE_OIDC_CLIENT_ID || ''
const APP = 'http://localhost:3000'

if (!OAUTH_URL || !OIDC_ISSUER) {
  throw new Error('FERROTRUE_OAUTH_URL / FERROTRUE_OIDC_ISSUER are not set (run the suite through tests/compat/run.sh)')
}

function makeOAuthClient({ flowType = 'implicit' } = {}) {
  const storage = memoryStorage()
  const client = new GoTrueClient({
    url: OAUTH_URL,
    persistSession: true,
    storage,
    autoRefreshToken: false,
    detectSessionInUrl: false,
    flowType,
  })
  return { client, storage }
}

/**
 * Follows redirects from `url` until one points at the app; returns that Location. Each hop
 * must be a 302/303 (what a browser would follow).
 */
async function followToApp(url, { headers = {} } = {}) {
  let current = url
  const hops = []
  for (let i = 0; i < 10; i++) {
    const res = await fetch(current, { redirect: 'manual', headers: i === 0 ? headers : {} })
    const body = await res.text()
    assert.ok([302, 303].includes(res.status), `GET ${current}: HTTP ${res.status} ${body} (after ${hops.join(' → ')})`)
    const location = res.headers.get('location')
    assert.ok(location, `GET ${current}: no Location`)
    hops.push(`${res.status} ${location.split('?')[0]}`)
    if (location.startsWith(APP)) return { location, status: res.status, hops }
    current = new URL(location, current).toString()
  }
  throw new Error(`too many redirects: ${hops.join(' → ')}`)
}

function fragmentOf(location) {
  return new URLSearchParams(location.split('#')[1] || '')
}

function queryOf(location) {
  const q = location.split('#')[0].split('?')[1] || ''
  return new URLSearchParams(q)
}

async function oauthRaw(method, path, { body, jwt } = {}) {
  const headers = { 'X-Supabase-Api-Version': API_VERSION }
  if (jwt) headers.Authorization = `Bearer ${jwt}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const res = await fetch(OAUTH_URL + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), redirect: 'manual' })
  const text = await res.text()
  let parsed = null
  try {
    parsed = JSON.parse(text)
  } catch {}
  return { status: res.status, headers: res.headers, text, body: parsed }
}

/** An id_token from the provider's token endpoint (password grant; `aud` = client id). */
async function providerIdToken(email, { clientId = CLIENT_ID, nonce } = {}) {
  const form = new URLSearchParams({ grant_type: 'password', username: email, client_id: clientId })
  if (nonce) form.set('nonce', nonce)
  const res = await fetch(`${OIDC_ISSUER}/token`, { method: 'POST', body: form })
  const body = await res.json()
  assert.equal(res.status, 200, JSON.stringify(body))
  assert.ok(body.id_token, JSON.stringify(body))
  return body.id_token
}

const sha256hex = (s) => createHash('sha256').update(s).digest('hex')

test('GET /settings lists the configured providers', async () => {
  const res = await oauthRaw('GET', '/settings')
  assert.equal(res.status, 200, res.text)
  assert.equal(res.body.external.oidc, true)
  assert.equal(res.body.external.keycloak, true)
  assert.equal(res.body.external.github, false)
})

test('signInWithOAuth (implicit): the session arrives in the fragment', async () => {
  const email = randomEmail()
  const { client } = makeOAuthClient()
  const { data, error } = await client.signInWithOAuth({
    provider: 'oidc',
    options: { redirectTo: `${APP}/welcome`, skipBrowserRedirect: true, queryParams: { login_hint: email } },
  })
  assertNoError(error, 'signInWithOAuth')
  assert.ok(data.url.startsWith(`${OAUTH_URL}/authorize?provider=oidc`), data.url)

  const { location, hops } = await followToApp(data.url)
  assert.ok(hops[0].includes(`${OIDC_ISSUER}/authorize`), `first hop goes to the provider: ${hops}`)
  assert.ok(location.startsWith(`${APP}/welcome#`), location)
  const f = fragmentOf(location)
  for (const k of ['access_token', 'refresh_token', 'expires_in', 'expires_at', 'provider_token', 'provider_refresh_token']) {
    assert.ok(f.get(k), `${k} in the fragment: ${location}`)
  }
  assert.equal(f.get('token_type'), 'bearer')
  const { payload } = decodeAndVerifyJwt(f.get('access_token'))
  assert.equal(payload.amr[0].method, 'oauth')

  const set = await client.setSession({ access_token: f.get('access_token'), refresh_token: f.get('refresh_token') })
  assertNoError(set.error, 'setSession from the fragment')
  const me = await client.getUser()
  assertNoError(me.error, 'getUser')
  assert.equal(me.data.user.email, email)
  assert.ok(me.data.user.email_confirmed_at, 'a verified provider email confirms the account')
  assert.equal(me.data.user.app_metadata.provider, 'oidc')
  assert.equal(me.data.user.identities.length, 1)
  assert.equal(me.data.user.identities[0].provider, 'oidc')
  assert.equal(me.data.user.identities[0].identity_data.iss, OIDC_ISSUER)

  // A second sign-in with the same provider account is the same user.
  const again = await makeOAuthClient().client.signInWithOAuth({
    provider: 'oidc',
    options: { redirectTo: `${APP}/welcome`, skipBrowserRedirect: true, queryParams: { login_hint: email } },
  })
  const second = await followToApp(again.data.url)
  const { payload: p2 } = decodeAndVerifyJwt(fragmentOf(second.location).get('access_token'))
  assert.equal(p2.sub, me.data.user.id)
})

test('signInWithOAuth (pkce): ?code= and exchangeCodeForSession with the provider tokens', async () => {
  const email = randomEmail()
  const { client, storage } = makeOAuthClient({ flowType: 'pkce' })
  const { data, error } = await client.signInWithOAuth({
    provider: 'oidc',
    options: { redirectTo: `${APP}/auth/callback`, skipBrowserRedirect: true, queryParams: { login_hint: email } },
  })
  assertNoError(error, 'signInWithOAuth (pkce)')
  assert.match(data.url, /code_challenge=/)
  assert.ok(storage.getItem('supabase.auth.token-code-verifier'), 'auth-js stored a verifier')

  const { location } = await followToApp(data.url)
  assert.ok(location.startsWith(`${APP}/auth/callback?code=`), location)
  assert.equal(fragmentOf(location).get('access_token'), null, 'no tokens in a PKCE redirect')
  const code = queryOf(location).get('code')

  const exchanged = await client.exchangeCodeForSession(code)
  assertNoError(exchanged.error, 'exchangeCodeForSession')
  assertSession(exchanged.data.session, 'exchangeCodeForSession')
  assert.ok(exchanged.data.session.provider_token, 'provider_token on the exchanged session')
  assert.ok(exchanged.data.session.provider_refresh_token, 'provider_refresh_token on the exchanged session')
  assert.equal(exchanged.data.user.email, email)
  const again = await oauthRaw('POST', '/token?grant_type=pkce', { body: { auth_code: code, code_verifier: 'x'.repeat(64) } })
  assert.equal(again.status, 404, again.text)
  assert.equal(again.body.code, 'flow_state_not_found')
})

test('Keycloak-style provider: profile from userinfo', async () => {
  const email = randomEmail()
  const { client } = makeOAuthClient()
  const { data } = await client.signInWithOAuth({
    provider: 'keycloak',
    options: { redirectTo: APP, skipBrowserRedirect: true, queryParams: { login_hint: email } },
  })
  const { location, hops } = await followToApp(data.url)
  assert.ok(hops[0].includes('/realms/ferrotrue/protocol/openid-connect/auth'), String(hops))
  const f = fragmentOf(location)
  assert.ok(f.get('access_token'), location)
  assertNoError((await client.setSession({ access_token: f.get('access_token'), refresh_token: f.get('refresh_token') })).error, 'setSession')
  const me = await client.getUser()
  assert.equal(me.data.user.email, email)
  assert.equal(me.data.user.identities[0].provider, 'keycloak')
})

test('linkIdentity and unlinkIdentity', async () => {
  const email = randomEmail()
  const { client } = makeOAuthClient()
  const signup = await client.signUp({ email, password: randomPassword() })
  assertNoError(signup.error, 'signUp')

  const providerAccount = randomEmail()
  const linked = await client.linkIdentity({
    provider: 'oidc',
    options: { redirectTo: `${APP}/linked`, queryParams: { login_hint: providerAccount } },
  })
  assertNoError(linked.error, 'linkIdentity')
  assert.ok(linked.data.url.startsWith(`${OIDC_ISSUER}/authorize?`), `the provider URL itself: ${linked.data.url}`)
  const { location } = await followToApp(linked.data.url)
  assert.ok(location.startsWith(`${APP}/linked#access_token=`), location)
  const { payload } = decodeAndVerifyJwt(fragmentOf(location).get('access_token'))
  assert.equal(payload.sub, signup.data.user.id, 'the session is the linking user')

  const ids = await client.getUserIdentities()
  assertNoError(ids.error, 'getUserIdentities')
  assert.deepEqual(ids.data.identities.map((i) => i.provider).sort(), ['email', 'oidc'])
  const me = await client.getUser()
  assert.equal(me.data.user.email, email, 'linking keeps the account email')

  const oidc = ids.data.identities.find((i) => i.provider === 'oidc')
  const unlinked = await client.unlinkIdentity(oidc)
  assertNoError(unlinked.error, 'unlinkIdentity')
  const after = await client.getUserIdentities()
  assert.deepEqual(after.data.identities.map((i) => i.provider), ['email'])

  const last = await client.unlinkIdentity(after.data.identities[0])
  assert.ok(last.error, 'the last identity cannot go')
  assert.equal(last.error.status, 422)
  assert.equal(last.error.code, 'single_identity_not_deletable')
})

test('signInWithIdToken with an id_token from the provider', async () => {
  const email = randomEmail()
  const nonce = randomBytes(16).toString('hex')
  const token = await providerIdToken(email, { nonce: sha256hex(nonce) })
  const { client } = makeOAuthClient()
  const { data, error } = await client.signInWithIdToken({ provider: 'oidc', token, nonce })
  assertNoError(error, 'signInWithIdToken')
  assertSession(data.session, 'signInWithIdToken')
  assert.equal(data.user.email, email)
  assert.equal(data.user.identities[0].provider, 'oidc')

  const wrongNonce = await makeOAuthClient().client.signInWithIdToken({ provider: 'oidc', token, nonce: 'not-it' })
  assert.ok(wrongNonce.error, 'a wrong nonce is refused')
  assert.equal(wrongNonce.error.status, 400)
  assert.equal(wrongNonce.error.message, 'Nonces mismatch')

  const foreign = await providerIdToken(randomEmail(), { clientId: 'some-other-app' })
  const res = await makeOAuthClient().client.signInWithIdToken({ provider: 'oidc', token: foreign })
  assert.ok(res.error, 'another audience is refused')
  assert.equal(res.error.status, 400)
  assert.equal(res.error.message, 'Unacceptable audience in id_token: [some-other-app]')

  const tampered = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA')
  const bad = await oauthRaw('POST', '/token?grant_type=id_token', { body: { provider: 'oidc', id_token: tampered, nonce } })
  assert.equal(bad.status, 400, bad.text)
  assert.deepEqual(bad.body, { error: 'invalid request', error_description: 'Bad ID token' })
})

test('linkIdentity with an id_token upgrades an anonymous user', async () => {
  const { client } = makeOAuthClient()
  const anon = await client.signInAnonymously()
  assertNoError(anon.error, 'signInAnonymously')
  const email = randomEmail()
  const token = await providerIdToken(email)
  const linked = await client.linkIdentity({ provider: 'oidc', token })
  assertNoError(linked.error, 'linkIdentity (id_token)')
  assert.equal(linked.data.user.id, anon.data.user.id)
  assert.equal(linked.data.user.email, email)
  assert.equal(linked.data.user.is_anonymous, false)
})

test('an unknown provider is a 400 on /authorize', async () => {
  const { client } = makeOAuthClient()
  const { data } = await client.signInWithOAuth({ provider: 'myspace', options: { skipBrowserRedirect: true } })
  const res = await fetch(data.url, { redirect: 'manual', headers: { 'X-Supabase-Api-Version': API_VERSION } })
  const body = await res.json()
  assert.equal(res.status, 400)
  assert.equal(body.code, 'validation_failed')
  assert.equal(body.message, 'Unsupported provider: Provider myspace could not be found')
})
