// Flow 7: refresh-token rotation and reuse detection.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AuthApiError } from '@supabase/auth-js'
import {
  API_VERSION,
  assertApiError,
  assertNoError,
  assertSession,
  createEmailUser,
  decodeAndVerifyJwt,
  makeClient,
  raw,
  rawRefresh,
} from './lib.mjs'

test('refreshSession() rotates the refresh token and issues a new access token', async () => {
  const { email, password, user } = await createEmailUser()
  const { client } = makeClient()
  const signin = await client.signInWithPassword({ email, password })
  assertNoError(signin.error, 'signInWithPassword')
  const before = signin.data.session

  // JWT iat has a one-second resolution: make sure the new token differs.
  await new Promise((r) => setTimeout(r, 1100))
  const { data, error } = await client.refreshSession()
  assertNoError(error, 'refreshSession')
  assertSession(data.session, 'refreshSession')
  assert.equal(data.user.id, user.id)
  assert.notEqual(data.session.refresh_token, before.refresh_token)
  assert.notEqual(data.session.access_token, before.access_token)

  // Same session, new token.
  const a = decodeAndVerifyJwt(before.access_token).payload
  const b = decodeAndVerifyJwt(data.session.access_token).payload
  assert.equal(b.session_id, a.session_id)
  assert.equal(b.sub, user.id)

  // The client stored the rotated session.
  const stored = await client.getSession()
  assert.equal(stored.data.session.refresh_token, data.session.refresh_token)

  // The new access token works.
  const got = await client.getUser()
  assertNoError(got.error, 'getUser after refresh')
  assert.equal(got.data.user.id, user.id)
})

test('refresh-token reuse: parent of the active token returns it, older tokens revoke the family', async () => {
  const { email, password, user } = await createEmailUser()
  const { client } = makeClient()
  const signin = await client.signInWithPassword({ email, password })
  assertNoError(signin.error, 'signInWithPassword')
  const t1 = signin.data.session.refresh_token

  const r2 = await client.refreshSession()
  assertNoError(r2.error, 'first refresh')
  const t2 = r2.data.session.refresh_token
  const r3 = await client.refreshSession()
  assertNoError(r3.error, 'second refresh')
  const t3 = r3.data.session.refresh_token
  assert.equal(new Set([t1, t2, t3]).size, 3, 'each rotation must produce a new refresh token')

  // T2 is the parent of the active token T3: the server hands back T3 again.
  const again = await rawRefresh(t2)
  assert.equal(again.status, 200, `re-sending the parent of the active token: ${again.text}`)
  assert.equal(again.body.refresh_token, t3, 'must return the currently active refresh token')
  assert.equal(typeof again.body.access_token, 'string')
  assert.equal(again.body.user.id, user.id)

  // T1 is older: reuse attack -> 400 refresh_token_already_used (2024-01-01 error format).
  const reused = await rawRefresh(t1)
  assertApiError(reused, 400, 'refresh_token_already_used')

  // The whole family is revoked, including the active token T3.
  const afterRevoke = await rawRefresh(t3)
  assertApiError(afterRevoke, 400, 'refresh_token_already_used')

  // And the client sees the same through its own API.
  const viaClient = await makeClient().client.refreshSession({ refresh_token: t3 })
  assert.ok(viaClient.error, 'client refresh with a revoked token must fail')
  assert.ok(viaClient.error instanceof AuthApiError)
  assert.equal(viaClient.error.status, 400)
  assert.equal(viaClient.error.code, 'refresh_token_already_used')
})

test('refresh with an unknown token fails with refresh_token_not_found', async () => {
  const res = await rawRefresh('thisisnotarealtoken')
  assertApiError(res, 400, 'refresh_token_not_found')
})

test('legacy error format without X-Supabase-Api-Version header', async () => {
  // Without the header the server answers in the legacy shape
  // {code: <int>, error_code, msg}; auth-js then reads `error_code`.
  const res = await raw('POST', '/token?grant_type=refresh_token', {
    body: { refresh_token: 'thisisnotarealtoken' },
    apiVersion: null,
  })
  assert.equal(res.status, 400)
  assert.equal(res.body.code, 400)
  assert.equal(res.body.error_code, 'refresh_token_not_found')
  assert.equal(typeof res.body.msg, 'string')
  assert.notEqual(res.headers.get('x-supabase-api-version'), API_VERSION)
})
