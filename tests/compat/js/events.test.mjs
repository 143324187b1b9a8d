// Flow 11 (auth-js only): onAuthStateChange events and the persisted session.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { STORAGE_KEY, assertNoError, createEmailUser, makeClient } from './lib.mjs'

test('onAuthStateChange fires SIGNED_IN / TOKEN_REFRESHED / USER_UPDATED / SIGNED_OUT', async () => {
  const { email, password, user } = await createEmailUser()
  const { client, storage } = makeClient()

  const events = []
  const {
    data: { subscription },
  } = client.onAuthStateChange((event, session) => {
    events.push({ event, session })
  })

  // INITIAL_SESSION arrives asynchronously with no session yet.
  const { data: initial } = await client.getSession()
  assert.equal(initial.session, null)

  const signin = await client.signInWithPassword({ email, password })
  assertNoError(signin.error, 'signInWithPassword')
  const signedIn = events.filter((e) => e.event === 'SIGNED_IN')
  assert.equal(signedIn.length, 1, `events: ${events.map((e) => e.event)}`)
  assert.equal(signedIn[0].session.access_token, signin.data.session.access_token)
  assert.equal(signedIn[0].session.user.id, user.id)

  // getSession() returns what was stored.
  const { data: got, error: gotErr } = await client.getSession()
  assertNoError(gotErr, 'getSession')
  assert.equal(got.session.access_token, signin.data.session.access_token)
  assert.equal(got.session.refresh_token, signin.data.session.refresh_token)
  assert.equal(got.session.user.id, user.id)
  const stored = JSON.parse(storage.getItem(STORAGE_KEY))
  assert.equal(stored.refresh_token, signin.data.session.refresh_token)
  assert.equal(typeof stored.expires_at, 'number')

  const refreshed = await client.refreshSession()
  assertNoError(refreshed.error, 'refreshSession')
  const tr = events.filter((e) => e.event === 'TOKEN_REFRESHED')
  assert.equal(tr.length, 1)
  assert.equal(tr[0].session.refresh_token, refreshed.data.session.refresh_token)

  const upd = await client.updateUser({ data: { color: 'blue' } })
  assertNoError(upd.error, 'updateUser')
  const uu = events.filter((e) => e.event === 'USER_UPDATED')
  assert.equal(uu.length, 1)
  assert.equal(uu[0].session.user.user_metadata.color, 'blue')

  const out = await client.signOut()
  assertNoError(out.error, 'signOut')
  const so = events.filter((e) => e.event === 'SIGNED_OUT')
  assert.equal(so.length, 1, `events: ${events.map((e) => e.event)}`)
  assert.equal(so[0].session, null)
  assert.equal(storage.getItem(STORAGE_KEY), null)
  const { data: after } = await client.getSession()
  assert.equal(after.session, null)

  const order = events.map((e) => e.event).filter((e) => e !== 'INITIAL_SESSION')
  assert.deepEqual(order, ['SIGNED_IN', 'TOKEN_REFRESHED', 'USER_UPDATED', 'SIGNED_OUT'])
  subscription.unsubscribe()
})

test('setSession() adopts tokens obtained elsewhere and emits SIGNED_IN', async () => {
  const { session, user } = await createEmailUser()
  const { client } = makeClient()
  const events = []
  client.onAuthStateChange((event) => events.push(event))

  const { data, error } = await client.setSession({
    access_token: session.access_token,
    refresh_token: session.refresh_token,
  })
  assertNoError(error, 'setSession')
  assert.equal(data.user.id, user.id)
  assert.ok(events.includes('SIGNED_IN'), `events: ${events}`)
  const me = await client.getUser()
  assertNoError(me.error, 'getUser after setSession')
  assert.equal(me.data.user.email, user.email)
})
