// Flows 8-9: signOut with scopes global / others / local.
//
// Note: auth-js's signOut() swallows 401/403/404 from /logout, so every test
// checks the server-side effect through raw HTTP as well.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AuthApiError, isAuthSessionMissingError } from '@supabase/auth-js'
import {
  STORAGE_KEY,
  assertApiError,
  assertNoError,
  createEmailUser,
  makeClient,
  raw,
  rawRefresh,
} from './lib.mjs'

async function signedIn(email, password) {
  const c = makeClient()
  const { data, error } = await c.client.signInWithPassword({ email, password })
  assertNoError(error, 'signInWithPassword')
  return { ...c, session: data.session }
}

/** The access token of a signed-out session is rejected everywhere. */
async function assertAccessTokenDead(accessToken) {
  const res = await raw('GET', '/user', { jwt: accessToken })
  assertApiError(res, 403, 'session_not_found')

  // auth-js maps 403 session_not_found to AuthSessionMissingError (it drops the code).
  const { data, error } = await makeClient().client.getUser(accessToken)
  assert.ok(error, 'getUser with a signed-out access token must fail')
  assert.ok(isAuthSessionMissingError(error), `expected AuthSessionMissingError, got ${error.name} ${error.message}`)
  assert.equal(data.user, null)
}

test('POST /logout answers 204 with an empty body', async () => {
  const { session } = await createEmailUser()
  const res = await raw('POST', '/logout?scope=local', { jwt: session.access_token })
  assert.equal(res.status, 204, `logout: ${res.status} ${res.text}`)
  assert.equal(res.text, '')
  await assertAccessTokenDead(session.access_token)

  const noAuth = await raw('POST', '/logout')
  assertApiError(noAuth, 401, 'no_authorization')
})

test('signOut() (global) revokes the access and refresh tokens', async () => {
  const { email, password } = await createEmailUser()
  const { client, storage, session } = await signedIn(email, password)
  const events = []
  client.onAuthStateChange((event) => {
    events.push(event)
  })

  const { error } = await client.signOut()
  assertNoError(error, 'signOut')
  assert.ok(events.includes('SIGNED_OUT'), `events: ${events}`)
  assert.equal(storage.getItem(STORAGE_KEY), null, 'session must be removed from storage')
  const { data } = await client.getSession()
  assert.equal(data.session, null)

  await assertAccessTokenDead(session.access_token)

  const refresh = await rawRefresh(session.refresh_token)
  assertApiError(refresh, 400, 'refresh_token_not_found')

  const viaClient = await makeClient().client.refreshSession({ refresh_token: session.refresh_token })
  assert.ok(viaClient.error instanceof AuthApiError)
  assert.equal(viaClient.error.status, 400)
})

test('signOut() global also ends the other sessions of the user', async () => {
  const { email, password, session: signupSession } = await createEmailUser()
  const a = await signedIn(email, password)
  const b = await signedIn(email, password)

  assertNoError((await a.client.signOut()).error, 'signOut (global)')

  await assertAccessTokenDead(b.session.access_token)
  await assertAccessTokenDead(signupSession.access_token)
  assertApiError(await rawRefresh(b.session.refresh_token), 400, 'refresh_token_not_found')
})

test("signOut({scope: 'others'}) keeps the current session and ends the others", async () => {
  const { email, password, user } = await createEmailUser()
  const other = await signedIn(email, password)
  const current = await signedIn(email, password)

  const { error } = await current.client.signOut({ scope: 'others' })
  assertNoError(error, "signOut('others')")

  // Current session still works and is still stored.
  const me = await current.client.getUser()
  assertNoError(me.error, 'getUser on the current session')
  assert.equal(me.data.user.id, user.id)
  const { data: s } = await current.client.getSession()
  assert.equal(s.session.access_token, current.session.access_token)
  const refreshed = await current.client.refreshSession()
  assertNoError(refreshed.error, 'refreshSession on the current session')

  // The other session is gone.
  await assertAccessTokenDead(other.session.access_token)
  const otherRefresh = await other.client.refreshSession()
  assert.ok(otherRefresh.error, "the other session's refresh must fail")
  assert.ok(otherRefresh.error instanceof AuthApiError, `got ${otherRefresh.error.name}`)
  assert.equal(otherRefresh.error.status, 400)
  assert.equal(otherRefresh.error.code, 'refresh_token_not_found')
})

test("signOut({scope: 'local'}) ends only the current session", async () => {
  const { email, password, user } = await createEmailUser()
  const keep = await signedIn(email, password)
  const leave = await signedIn(email, password)

  const { error } = await leave.client.signOut({ scope: 'local' })
  assertNoError(error, "signOut('local')")
  assert.equal(leave.storage.getItem(STORAGE_KEY), null)
  const { data } = await leave.client.getSession()
  assert.equal(data.session, null)

  await assertAccessTokenDead(leave.session.access_token)
  assertApiError(await rawRefresh(leave.session.refresh_token), 400, 'refresh_token_not_found')

  // The other session is untouched.
  const me = await keep.client.getUser()
  assertNoError(me.error, 'getUser on the kept session')
  assert.equal(me.data.user.id, user.id)
  const refreshed = await keep.client.refreshSession()
  assertNoError(refreshed.error, 'refreshSession on the kept session')
})
