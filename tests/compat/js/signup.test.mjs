// Flows 1-4: sign-up with e-mail / phone, duplicate sign-up, weak password.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AuthApiError, AuthWeakPasswordError, isAuthWeakPasswordError } from '@supabase/auth-js'
import {
  STORAGE_KEY,
  assertNoError,
  assertSession,
  decodeAndVerifyJwt,
  makeClient,
  randomEmail,
  randomPassword,
  randomPhoneDigits,
} from './lib.mjs'

test('signUp with email+password returns a session (autoconfirm)', async () => {
  // Mixed case on purpose: the server must store and return it lower-cased.
  const lower = randomEmail()
  const email = lower.replace(/^u/, 'U').replace('@example.com', '@Example.COM')
  const password = randomPassword()
  const { client, storage } = makeClient()

  const { data, error } = await client.signUp({ email, password })
  assertNoError(error, 'signUp')
  assertSession(data.session, 'signUp')

  const user = data.user
  assert.equal(user.email, lower)
  assert.equal(data.session.user.id, user.id)
  assert.match(user.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
  assert.equal(user.aud, 'authenticated')
  assert.equal(user.role, 'authenticated')
  assert.ok(user.email_confirmed_at, 'email_confirmed_at must be set with MAILER_AUTOCONFIRM')
  assert.equal(user.app_metadata.provider, 'email')
  assert.deepEqual(user.app_metadata.providers, ['email'])
  assert.equal(typeof user.user_metadata, 'object')

  assert.ok(Array.isArray(user.identities), 'identities must be an array')
  assert.equal(user.identities.length, 1)
  const identity = user.identities[0]
  assert.equal(identity.provider, 'email')
  assert.equal(identity.user_id, user.id)
  assert.equal(identity.identity_data.email, lower)
  assert.equal(identity.identity_data.sub, user.id)
  assert.equal(typeof identity.identity_id, 'string')

  // The access token is an HS256 JWT for this user and this session.
  const { payload } = decodeAndVerifyJwt(data.session.access_token)
  assert.equal(payload.sub, user.id)
  assert.equal(payload.aud, 'authenticated')
  assert.equal(payload.role, 'authenticated')
  assert.equal(payload.email, lower)
  assert.equal(typeof payload.session_id, 'string')
  assert.equal(payload.exp, data.session.expires_at, 'expires_at must equal the JWT exp claim')

  // The client persisted the session in the provided storage.
  const stored = JSON.parse(storage.getItem(STORAGE_KEY))
  assert.equal(stored.access_token, data.session.access_token)
  assert.equal(stored.refresh_token, data.session.refresh_token)
})

test('signUp with phone+password returns a session; phone is stored without "+"', async () => {
  const digits = randomPhoneDigits()
  const password = randomPassword()
  const { client } = makeClient()

  const { data, error } = await client.signUp({ phone: `+${digits}`, password })
  assertNoError(error, 'signUp(phone)')
  assertSession(data.session, 'signUp(phone)')

  const user = data.user
  assert.equal(user.phone, digits)
  assert.ok(user.phone_confirmed_at, 'phone_confirmed_at must be set with SMS_AUTOCONFIRM')
  assert.equal(user.app_metadata.provider, 'phone')
  assert.ok(Array.isArray(user.identities))
  assert.equal(user.identities.length, 1)
  assert.equal(user.identities[0].provider, 'phone')
  assert.equal(user.identities[0].user_id, user.id)

  const { payload } = decodeAndVerifyJwt(data.session.access_token)
  assert.equal(payload.sub, user.id)
  assert.equal(payload.phone, digits)
})

test('signUp twice with the same email fails with user_already_exists (422)', async () => {
  const email = randomEmail()
  const password = randomPassword()
  const { client } = makeClient()
  const first = await client.signUp({ email, password })
  assertNoError(first.error, 'first signUp')

  const { client: other } = makeClient()
  const { data, error } = await other.signUp({ email, password: randomPassword() })
  assert.ok(error, 'second signUp must fail')
  assert.ok(error instanceof AuthApiError, `expected AuthApiError, got ${error.name}`)
  assert.equal(error.code, 'user_already_exists')
  assert.equal(error.status, 422)
  assert.equal(data.session, null)
  assert.equal(data.user, null)

  // Same e-mail with different case is the same account.
  const upper = await other.signUp({ email: email.toUpperCase(), password })
  assert.ok(upper.error, 'signUp with the upper-cased email must fail too')
  assert.equal(upper.error.code, 'user_already_exists')
})

test('signUp with a too-short password fails with AuthWeakPasswordError (length)', async () => {
  const email = randomEmail()
  const { client } = makeClient()

  const { data, error } = await client.signUp({ email, password: 'abc' })
  assert.ok(error, 'signUp with "abc" must fail')
  assert.ok(error instanceof AuthWeakPasswordError, `expected AuthWeakPasswordError, got ${error.name}`)
  assert.ok(isAuthWeakPasswordError(error))
  assert.equal(error.code, 'weak_password')
  assert.equal(error.status, 422)
  assert.ok(Array.isArray(error.reasons), 'reasons must be an array')
  assert.ok(error.reasons.includes('length'), `reasons: ${JSON.stringify(error.reasons)}`)
  assert.equal(data.session, null)

  // No user was created: the same e-mail can still sign up.
  const retry = await client.signUp({ email, password: randomPassword() })
  assertNoError(retry.error, 'signUp after weak-password rejection')
  assert.equal(retry.data.user.email, email)
})
