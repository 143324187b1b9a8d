// Flows 5-6: password sign-in (email and phone), getUser, updateUser.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AuthApiError } from '@supabase/auth-js'
import {
  assertNoError,
  assertSession,
  createEmailUser,
  decodeAndVerifyJwt,
  makeClient,
  randomEmail,
  randomPassword,
  randomPhoneDigits,
} from './lib.mjs'

test('signInWithPassword (email) returns a new session for the same user', async () => {
  const { email, password, user, session: signupSession } = await createEmailUser()
  const { client } = makeClient()

  const { data, error } = await client.signInWithPassword({ email, password })
  assertNoError(error, 'signInWithPassword')
  assertSession(data.session, 'signInWithPassword')
  assert.equal(data.user.id, user.id)
  assert.equal(data.user.email, email)
  assert.ok(data.user.last_sign_in_at, 'last_sign_in_at must be set after a sign-in')
  assert.notEqual(data.session.refresh_token, signupSession.refresh_token)

  // A new sign-in is a new session.
  const a = decodeAndVerifyJwt(signupSession.access_token).payload
  const b = decodeAndVerifyJwt(data.session.access_token).payload
  assert.notEqual(a.session_id, b.session_id)
  assert.ok(Array.isArray(b.amr) && b.amr.some((x) => x.method === 'password'), `amr: ${JSON.stringify(b.amr)}`)

  // Email matching is case-insensitive.
  const upper = await makeClient().client.signInWithPassword({ email: email.toUpperCase(), password })
  assertNoError(upper.error, 'signInWithPassword with upper-cased email')
  assert.equal(upper.data.user.id, user.id)
})

test('signInWithPassword with a wrong password fails with invalid_credentials (400)', async () => {
  const { email } = await createEmailUser()
  const { client } = makeClient()

  const { data, error } = await client.signInWithPassword({ email, password: 'definitely-wrong' })
  assert.ok(error, 'sign-in with a wrong password must fail')
  assert.ok(error instanceof AuthApiError, `expected AuthApiError, got ${error.name}`)
  assert.equal(error.code, 'invalid_credentials')
  assert.equal(error.status, 400)
  assert.equal(data.session, null)
  assert.equal(data.user, null)

  // Unknown user: the same answer (no enumeration).
  const unknown = await client.signInWithPassword({ email: randomEmail(), password: 'whatever123' })
  assert.ok(unknown.error)
  assert.equal(unknown.error.code, 'invalid_credentials')
  assert.equal(unknown.error.status, 400)
  assert.equal(unknown.error.message, error.message, 'unknown user and wrong password must look identical')
})

test('signInWithPassword (phone) returns a session', async () => {
  const digits = randomPhoneDigits()
  const password = randomPassword()
  const signup = await makeClient().client.signUp({ phone: `+${digits}`, password })
  assertNoError(signup.error, 'signUp(phone)')

  const { client } = makeClient()
  const { data, error } = await client.signInWithPassword({ phone: `+${digits}`, password })
  assertNoError(error, 'signInWithPassword(phone)')
  assertSession(data.session, 'signInWithPassword(phone)')
  assert.equal(data.user.id, signup.data.user.id)
  assert.equal(data.user.phone, digits)

  const wrong = await client.signInWithPassword({ phone: `+${digits}`, password: 'wrong-password' })
  assert.ok(wrong.error)
  assert.equal(wrong.error.code, 'invalid_credentials')
})

test('getUser and updateUser({data}) round-trip user_metadata', async () => {
  const { email, password, user } = await createEmailUser()
  const { client } = makeClient()
  assertNoError((await client.signInWithPassword({ email, password })).error, 'signInWithPassword')

  const got = await client.getUser()
  assertNoError(got.error, 'getUser')
  assert.equal(got.data.user.id, user.id)
  assert.equal(got.data.user.email, email)

  const upd = await client.updateUser({ data: { nickname: 'x' } })
  assertNoError(upd.error, 'updateUser(data)')
  assert.equal(upd.data.user.id, user.id)
  assert.equal(upd.data.user.user_metadata.nickname, 'x')

  // Persisted server-side, and merged (not replacing existing keys).
  const again = await client.getUser()
  assertNoError(again.error, 'getUser after update')
  assert.equal(again.data.user.user_metadata.nickname, 'x')
  assert.equal(again.data.user.user_metadata.email, email, 'existing user_metadata keys must be kept')

  // The client updated the stored session's user as well.
  const { data: s } = await client.getSession()
  assert.equal(s.session.user.user_metadata.nickname, 'x')
})

test('updateUser({password}) changes the password', async () => {
  const { email, password, user } = await createEmailUser()
  const { client } = makeClient()
  assertNoError((await client.signInWithPassword({ email, password })).error, 'signInWithPassword')

  const newPassword = randomPassword()
  const upd = await client.updateUser({ password: newPassword })
  assertNoError(upd.error, 'updateUser(password)')
  assert.equal(upd.data.user.id, user.id)

  const out = await client.signOut()
  assertNoError(out.error, 'signOut')

  const withNew = await client.signInWithPassword({ email, password: newPassword })
  assertNoError(withNew.error, 'signInWithPassword(new password)')
  assert.equal(withNew.data.user.id, user.id)

  const withOld = await makeClient().client.signInWithPassword({ email, password })
  assert.ok(withOld.error, 'the old password must no longer work')
  assert.equal(withOld.error.code, 'invalid_credentials')
  assert.equal(withOld.error.status, 400)
})
