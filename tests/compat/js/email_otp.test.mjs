// Email flows (autoconfirm off, real SMTP): magic links / email OTP, password recovery,
// reauthentication.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AuthApiError } from '@supabase/auth-js'
import { assertNoError, assertSession, decodeAndVerifyJwt, randomEmail, randomPassword } from './lib.mjs'
import {
  SUBJECTS,
  assertAuthMail,
  assertNoMail,
  createConfirmedUser,
  makeEmailClient,
  waitForMail,
} from './mail.mjs'

test("signInWithOtp mails a magic link; its code verifies as type 'email' and 'magiclink'", async () => {
  const { email, user } = await createConfirmedUser()
  const { client, events } = makeEmailClient()

  const sent = await client.signInWithOtp({ email, options: { shouldCreateUser: false } })
  assertNoError(sent.error, 'signInWithOtp')
  assert.equal(sent.data.session, null)
  assert.equal(sent.data.user, null)
  const mail = await waitForMail(email, { subject: SUBJECTS.magicLink })
  const { code } = assertAuthMail(mail, { subject: SUBJECTS.magicLink, type: 'magiclink' })

  const v1 = await client.verifyOtp({ email, token: code, type: 'email' })
  assertNoError(v1.error, "verifyOtp(type 'email')")
  assertSession(v1.data.session, "verifyOtp(type 'email')")
  assert.equal(v1.data.user.id, user.id)
  assert.ok(events.some((e) => e.event === 'SIGNED_IN'))
  const amr = decodeAndVerifyJwt(v1.data.session.access_token).payload.amr
  assert.ok(amr.some((x) => x.method === 'otp'), `amr: ${JSON.stringify(amr)}`)

  const again = await client.signInWithOtp({ email })
  assertNoError(again.error, 'second signInWithOtp')
  const mail2 = await waitForMail(email, { subject: SUBJECTS.magicLink, after: 1 })
  const second = assertAuthMail(mail2, { subject: SUBJECTS.magicLink, type: 'magiclink' })
  const v2 = await makeEmailClient().client.verifyOtp({ email, token: second.code, type: 'magiclink' })
  assertNoError(v2.error, "verifyOtp(type 'magiclink')")
  assertSession(v2.data.session, "verifyOtp(type 'magiclink')")
  assert.equal(v2.data.user.id, user.id)
  assert.notEqual(
    decodeAndVerifyJwt(v2.data.session.access_token).payload.session_id,
    decodeAndVerifyJwt(v1.data.session.access_token).payload.session_id,
  )
})

test('signInWithOtp for a new address sends the signup confirmation; type email verifies it', async () => {
  const { client } = makeEmailClient()
  const email = randomEmail()
  const sent = await client.signInWithOtp({ email, options: { data: { plan: 'pro' } } })
  assertNoError(sent.error, 'signInWithOtp (new user)')
  const mail = await waitForMail(email)
  const { code } = assertAuthMail(mail, { subject: SUBJECTS.confirmation, type: 'signup' })
  const { data, error } = await client.verifyOtp({ email, token: code, type: 'email' })
  assertNoError(error, "verifyOtp(type 'email') for the signup code")
  assertSession(data.session)
  assert.equal(data.user.email, email)
  assert.ok(data.user.email_confirmed_at)
  assert.equal(data.user.user_metadata.plan, 'pro', 'options.data lands in user_metadata')
})

test('signInWithOtp with shouldCreateUser:false for an unknown address is otp_disabled (422)', async () => {
  const email = randomEmail()
  const { error } = await makeEmailClient().client.signInWithOtp({ email, options: { shouldCreateUser: false } })
  assert.ok(error instanceof AuthApiError, `expected AuthApiError, got ${error}`)
  assert.equal(error.status, 422)
  assert.equal(error.code, 'otp_disabled')
  await assertNoMail(email, { ms: 200 })
})

test('resetPasswordForEmail → recovery mail → verifyOtp(recovery) emits PASSWORD_RECOVERY → updateUser password', async () => {
  const { email, password, user } = await createConfirmedUser()
  const { client, events } = makeEmailClient()

  const sent = await client.resetPasswordForEmail(email, { redirectTo: 'http://localhost:3000/reset' })
  assertNoError(sent.error, 'resetPasswordForEmail')
  const mail = await waitForMail(email, { subject: SUBJECTS.recovery })
  const { code, token } = assertAuthMail(mail, {
    subject: SUBJECTS.recovery,
    type: 'recovery',
    redirectTo: 'http://localhost:3000/reset',
  })
  assert.ok(!token.startsWith('pkce_'))

  const { data, error } = await client.verifyOtp({ email, token: code, type: 'recovery' })
  assertNoError(error, 'verifyOtp(recovery)')
  assertSession(data.session, 'verifyOtp(recovery)')
  assert.equal(data.user.id, user.id)
  const rec = events.filter((e) => e.event === 'PASSWORD_RECOVERY')
  assert.equal(rec.length, 1, `events: ${events.map((e) => e.event)}`)
  assert.equal(rec[0].session.access_token, data.session.access_token)

  // A fresh session needs no reauthentication nonce even with
  // GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION=true.
  const newPassword = randomPassword()
  const upd = await client.updateUser({ password: newPassword })
  assertNoError(upd.error, 'updateUser({password}) in the recovery session')
  assert.equal(upd.data.user.id, user.id)

  const withNew = await makeEmailClient().client.signInWithPassword({ email, password: newPassword })
  assertNoError(withNew.error, 'signInWithPassword with the new password')
  const withOld = await makeEmailClient().client.signInWithPassword({ email, password })
  assert.ok(withOld.error instanceof AuthApiError)
  assert.equal(withOld.error.code, 'invalid_credentials')
})

test('the link in the mail carries redirect_to unescaped, as GoTrue writes it (SPEC §6.3)', async () => {
  const { email } = await createConfirmedUser()
  const { client } = makeEmailClient()
  assertNoError(
    (await client.resetPasswordForEmail(email, { redirectTo: 'http://localhost:3000/reset' })).error,
    'resetPasswordForEmail',
  )
  const mail = await waitForMail(email, { subject: SUBJECTS.recovery })
  // GoTrue's getPath(): "token=%s&type=%s&redirect_to=%s" with redirect_to query-escaped only
  // when it contains '&', '=' or '#'.
  assert.ok(
    mail.link.endsWith('&type=recovery&redirect_to=http://localhost:3000/reset'),
    `link: ${mail.link}`,
  )
})

test('resetPasswordForEmail for an unknown address: no error, no mail', async () => {
  const email = randomEmail()
  const { data, error } = await makeEmailClient().client.resetPasswordForEmail(email)
  assertNoError(error, 'resetPasswordForEmail (unknown address)')
  assert.deepEqual(data, {})
  await assertNoMail(email)
})

test('reauthenticate() mails a "Confirm reauthentication" code; updateUser accepts it as nonce', async () => {
  const made = makeEmailClient()
  const { email, client } = await createConfirmedUser(made)

  const { data, error } = await client.reauthenticate()
  assertNoError(error, 'reauthenticate')
  assert.equal(data.session, null)
  const mail = await waitForMail(email, { subject: SUBJECTS.reauthentication })
  assert.match(mail.from, /auth@example\.com/)
  assert.match(mail.code || '', /^\d{6}$/, `no 6-digit code in: ${mail.html}`)

  const newPassword = randomPassword()
  const upd = await client.updateUser({ password: newPassword, nonce: mail.code })
  assertNoError(upd.error, 'updateUser({password, nonce})')
  const signin = await makeEmailClient().client.signInWithPassword({ email, password: newPassword })
  assertNoError(signin.error, 'signInWithPassword with the new password')
})

test('reauthenticate() without a session fails client-side with AuthSessionMissingError', async () => {
  const { client } = makeEmailClient()
  const { error } = await client.reauthenticate()
  assert.ok(error, 'reauthenticate without a session must fail')
  assert.equal(error.name, 'AuthSessionMissingError')
})
