// Asymmetric signing keys: a server with an ES256 GOTRUE_JWT_KEYS (FERROTRUE_KEYS_URL, from
// `ferrotrue keys generate`). auth-js getClaims() verifies such tokens itself, with WebCrypto and
// the key published at /.well-known/jwks.json, instead of asking GET /user.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { GoTrueClient } from '@supabase/auth-js'
import { assertNoError, assertSession, memoryStorage, randomEmail, randomPassword } from './lib.mjs'

const KEYS_URL = (process.env.FERROTRUE_KEYS_URL || '').replace(/\/+$/, '')
const skip = KEYS_URL ? false : 'FERROTRUE_KEYS_URL is not set'

/** A client on the keys server that records the path of every request it makes. */
function keysClient() {
  const paths = []
  const client = new GoTrueClient({
    url: KEYS_URL,
    persistSession: true,
    autoRefreshToken: false,
    detectSessionInUrl: false,
    storage: memoryStorage(),
    fetch: (input, init) => {
      paths.push(new URL(typeof input === 'string' ? input : input.url).pathname)
      return fetch(input, init)
    },
  })
  return { client, paths }
}

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
}

test('getClaims verifies an ES256 access token against the JWKS, without GET /user', { skip }, async () => {
  const { client, paths } = keysClient()
  const { data, error } = await client.signUp({ email: randomEmail(), password: randomPassword() })
  assertNoError(error, 'signUp')
  assertSession(data.session, 'signUp')
  const [rawHeader] = data.session.access_token.split('.')
  const header = b64urlJson(rawHeader)
  assert.equal(header.alg, 'ES256')
  assert.ok(header.kid, 'the token names its key')

  const res = await client.getClaims()
  assertNoError(res.error, 'getClaims')
  assert.equal(res.data.header.kid, header.kid)
  assert.equal(res.data.claims.sub, data.user.id)
  assert.equal(res.data.claims.role, 'authenticated')
  assert.ok(paths.includes('/.well-known/jwks.json'), `requests: ${paths}`)
  assert.ok(!paths.includes('/user'), `getClaims must not need GET /user: ${paths}`)

  // The server itself accepts the token, and refresh keeps the algorithm.
  const user = await client.getUser()
  assertNoError(user.error, 'getUser')
  assert.equal(user.data.user.id, data.user.id)
  const refreshed = await client.refreshSession()
  assertNoError(refreshed.error, 'refreshSession')
  assert.equal(b64urlJson(refreshed.data.session.access_token.split('.')[0]).alg, 'ES256')
  const again = await client.getClaims()
  assertNoError(again.error, 'getClaims after refresh')
})

test('getClaims refuses a token whose payload was changed', { skip }, async () => {
  const { client } = keysClient()
  const { data, error } = await client.signUp({ email: randomEmail(), password: randomPassword() })
  assertNoError(error, 'signUp')
  const [h, p, s] = data.session.access_token.split('.')
  const payload = b64urlJson(p)
  payload.role = 'service_role'
  const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`
  const res = await client.getClaims(forged)
  assert.ok(res.error, 'a forged token must not verify')
  assert.equal(res.data, null)
  // And the server refuses it too.
  const user = await client.getUser(forged)
  assert.ok(user.error)
  assert.equal(user.error.status, 403)
  assert.equal(user.error.code, 'bad_jwt')
})

test('the JWKS and OpenID configuration publish only the public key', { skip }, async () => {
  const jwksResp = await fetch(`${KEYS_URL}/.well-known/jwks.json`)
  assert.equal(jwksResp.status, 200)
  assert.equal(jwksResp.headers.get('cache-control'), 'public, max-age=600')
  const { keys } = await jwksResp.json()
  assert.equal(keys.length, 1)
  const [key] = keys
  assert.equal(key.kty, 'EC')
  assert.equal(key.crv, 'P-256')
  assert.equal(key.alg, 'ES256')
  assert.equal(key.use, 'sig')
  assert.deepEqual(key.key_ops, ['verify'])
  assert.equal(key.d, undefined, 'no private member')

  const doc = await (await fetch(`${KEYS_URL}/.well-known/openid-configuration`)).json()
  assert.equal(doc.issuer, KEYS_URL)
  assert.equal(doc.jwks_uri, `${KEYS_URL}/.well-known/jwks.json`)
  assert.ok(doc.id_token_signing_alg_values_supported.includes('ES256'))
})
