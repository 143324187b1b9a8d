// Email flows (autoconfirm off, real SMTP): sign-up confirmation by code and by link,
// resend, wrong codes.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AuthApiError } from '@supabase/auth-js'
import { STORAGE_KEY, assertNoError, assertSession, decodeAndVerifyJwt, randomEmail, randomPassword } from './lib.mjs'
import {
  EMAIL_URL,
  SITE_URL,
  SUBJECTS,
  assertAuthMail,
  assertNoMail,
  createConfirmedUser,
  getNoFollow,
  makeEmailClient,
  splitLocation,
  waitForMail,
} from './mail.mjs'

function assertOtpExpired(error, what) {
  assert.ok(error, `${what}: expected an error`)
  assert.ok(error instanceof AuthApiError, `${what}: ${error && error.name}`)
  assert.equal(error.status, 403, `${what}: status (${error.message})`)
  assert.equal(error.code, 'otp_expired', `${what}: code (${error.message})`)
}

test('signUp without autoconfirm returns the user only; the mailed code confirms it (verifyOtp signup)', async () => {
  const { client, storage, events } = makeEmailClient()
  const email = randomEmail()
  const password = randomPassword()

  const { data, error } = await client.signUp({ email, password })
  assertNoError(error, 'signUp')
  assert.equal(data.session, null, 'no session before the email is confirmed')
  assert.ok(data.user, 'signUp returns the user')
  assert.equal(data.user.email, email)
  assert.ok(!data.user.email_confirmed_at, 'email_confirmed_at must not be set yet')
  assert.ok(data.user.confirmation_sent_at, 'confirmation_sent_at must be set')
  assert.equal(data.user.identities.length, 1)
  assert.equal(storage.getItem(STORAGE_KEY), null, 'nothing is persisted without a session')
  assert.ok(!events.some((e) => e.event === 'SIGNED_IN'), 'no SIGNED_IN without a session')

  const mail = await waitForMail(email, { subject: SUBJECTS.confirmation })
  const { code } = assertAuthMail(mail, { subject: SUBJECTS.confirmation, type: 'signup' })

  // Password sign-in is refused until the address is confirmed.
  const early = await makeEmailClient().client.signInWithPassword({ email, password })
  assert.ok(early.error instanceof AuthApiError, 'sign-in before confirmation must fail')
  assert.equal(early.error.code, 'email_not_confirmed')
  assert.equal(early.error.status, 400)

  const verified = await client.verifyOtp({ email, token: code, type: 'signup' })
  assertNoError(verified.error, 'verifyOtp(signup)')
  assertSession(verified.data.session, 'verifyOtp(signup)')
  assert.equal(verified.data.user.id, data.user.id)
  assert.ok(verified.data.user.email_confirmed_at, 'email confirmed after verification')
  assert.ok(events.some((e) => e.event === 'SIGNED_IN'), 'verifyOtp emits SIGNED_IN')
  const stored = JSON.parse(storage.getItem(STORAGE_KEY))
  assert.equal(stored.access_token, verified.data.session.access_token)
  const { payload } = decodeAndVerifyJwt(verified.data.session.access_token)
  assert.equal(payload.sub, data.user.id)
  assert.ok(payload.amr.some((x) => x.method === 'otp'), `amr: ${JSON.stringify(payload.amr)}`)

  // Codes are single use.
  const again = await makeEmailClient().client.verifyOtp({ email, token: code, type: 'signup' })
  assertOtpExpired(again.error, 're-using the signup code')

  const signin = await makeEmailClient().client.signInWithPassword({ email, password })
  assertNoError(signin.error, 'signInWithPassword after confirmation')
  assert.equal(signin.data.user.id, data.user.id)
})

test('confirmation link: GET /verify answers 303 with the session in the fragment', async () => {
  const { client } = makeEmailClient()
  const email = randomEmail()
  const signup = await client.signUp({ email, password: randomPassword() })
  assertNoError(signup.error, 'signUp')
  assert.equal(signup.data.session, null)

  const mail = await waitForMail(email, { subject: SUBJECTS.confirmation })
  const { token } = assertAuthMail(mail, { subject: SUBJECTS.confirmation, type: 'signup' })
  assert.ok(!token.startsWith('pkce_'), 'implicit flow tokens carry no pkce_ prefix')

  const res = await getNoFollow(mail.link)
  assert.equal(res.status, 303, `GET verify link: ${res.status} ${res.text}`)
  const { base, query, fragment } = splitLocation(res.location)
  assert.equal(base, SITE_URL, `redirect target: ${res.location}`)
  assert.equal([...query.keys()].length, 0, `implicit flow puts nothing in the query: ${res.location}`)
  for (const k of ['access_token', 'refresh_token', 'expires_in', 'expires_at']) {
    assert.ok(fragment.get(k), `fragment lacks ${k}: ${res.location}`)
  }
  assert.equal(fragment.get('token_type'), 'bearer')
  assert.equal(fragment.get('type'), 'signup')
  assert.equal(fragment.get('sb'), '', 'the empty sb marker param must be present')
  assert.equal(Number(fragment.get('expires_at')), decodeAndVerifyJwt(fragment.get('access_token')).payload.exp)

  // The tokens work with the client.
  const me = await client.getUser(fragment.get('access_token'))
  assertNoError(me.error, 'getUser with the access token from the link')
  assert.equal(me.data.user.id, signup.data.user.id)
  assert.ok(me.data.user.email_confirmed_at, 'following the link confirms the email')
  const adopted = await client.setSession({
    access_token: fragment.get('access_token'),
    refresh_token: fragment.get('refresh_token'),
  })
  assertNoError(adopted.error, 'setSession with the tokens from the link')
  assert.equal(adopted.data.user.id, signup.data.user.id)
  const refreshed = await client.refreshSession()
  assertNoError(refreshed.error, 'refreshSession with the refresh token from the link')

  // The link is single use: the second visit redirects with an error in the fragment.
  const second = await getNoFollow(mail.link)
  assert.equal(second.status, 303, `second visit: ${second.status} ${second.text}`)
  const err = splitLocation(second.location)
  assert.equal(err.base, SITE_URL)
  assert.equal(err.fragment.get('error'), 'access_denied', second.location)
  assert.equal(err.fragment.get('error_code'), 'otp_expired', second.location)
  assert.ok(err.fragment.get('error_description'), second.location)
  assert.equal(err.fragment.get('access_token'), null)
})

test('GET /verify without token or type is a plain 400 JSON error, not a redirect', async () => {
  const res = await getNoFollow(`${EMAIL_URL}/verify?type=signup`)
  assert.equal(res.status, 400, `${res.status} ${res.location} ${res.text}`)
  assert.equal(res.location, null)
  const body = JSON.parse(res.text)
  assert.ok(body.code === 'validation_failed' || body.error_code === 'validation_failed', res.text)
})

test('resend({type: signup}) mails a new code; the old one stops working', async () => {
  const { client } = makeEmailClient()
  const email = randomEmail()
  const signup = await client.signUp({ email, password: randomPassword() })
  assertNoError(signup.error, 'signUp')
  const first = await waitForMail(email, { subject: SUBJECTS.confirmation })
  assertAuthMail(first, { subject: SUBJECTS.confirmation, type: 'signup' })

  const resent = await client.resend({ type: 'signup', email })
  assertNoError(resent.error, 'resend(signup)')
  assert.equal(resent.data.session, null)
  const second = await waitForMail(email, { subject: SUBJECTS.confirmation, after: 1 })
  const { token } = assertAuthMail(second, { subject: SUBJECTS.confirmation, type: 'signup' })
  assert.notEqual(second.file, first.file)
  assert.notEqual(token, new URL(first.link).searchParams.get('token'), 'a resend issues a new token')

  if (first.code !== second.code) {
    const old = await makeEmailClient().client.verifyOtp({ email, token: first.code, type: 'signup' })
    assertOtpExpired(old.error, 'verifyOtp with the superseded code')
  }
  const ok = await client.verifyOtp({ email, token: second.code, type: 'signup' })
  assertNoError(ok.error, 'verifyOtp with the resent code')
  assertSession(ok.data.session, 'verifyOtp with the resent code')

  // Already confirmed: resend succeeds silently and sends nothing.
  const noop = await client.resend({ type: 'signup', email })
  assertNoError(noop.error, 'resend(signup) for a confirmed user')
  await assertNoMail(email, { count: 2, ms: 300 })
})

test('verifyOtp with a wrong code is otp_expired (403)', async () => {
  const { client } = makeEmailClient()
  const email = randomEmail()
  assertNoError((await client.signUp({ email, password: randomPassword() })).error, 'signUp')
  const mail = await waitForMail(email, { subject: SUBJECTS.confirmation })
  const wrong = mail.code === '000000' ? '111111' : '000000'

  const { data, error } = await client.verifyOtp({ email, token: wrong, type: 'signup' })
  assertOtpExpired(error, 'verifyOtp with a wrong code')
  assert.equal(error.message, 'Token has expired or is invalid')
  assert.equal(data.session, null)
  assert.equal(data.user, null)

  const emailType = await client.verifyOtp({ email, token: wrong, type: 'email' })
  assertOtpExpired(emailType.error, "verifyOtp type 'email' with a wrong code")

  const unknown = await client.verifyOtp({ email: randomEmail(), token: '123456', type: 'email' })
  assertOtpExpired(unknown.error, 'verifyOtp for an unknown address')

  const hash = await client.verifyOtp({ token_hash: 'f'.repeat(56), type: 'signup' })
  assertOtpExpired(hash.error, 'verifyOtp with an unknown token_hash')

  // The wrong attempts did not burn the real code.
  const ok = await client.verifyOtp({ email, token: mail.code, type: 'signup' })
  assertNoError(ok.error, 'verifyOtp with the right code after wrong attempts')
  assertSession(ok.data.session)
})

test('verifyOtp with the token_hash from the link confirms like the link itself', async () => {
  const { client } = makeEmailClient()
  const email = randomEmail()
  assertNoError((await client.signUp({ email, password: randomPassword() })).error, 'signUp')
  const mail = await waitForMail(email, { subject: SUBJECTS.confirmation })
  const { token } = assertAuthMail(mail, { subject: SUBJECTS.confirmation, type: 'signup' })
  const { data, error } = await client.verifyOtp({ token_hash: token, type: 'signup' })
  assertNoError(error, 'verifyOtp(token_hash)')
  assertSession(data.session, 'verifyOtp(token_hash)')
  assert.equal(data.user.email, email)
  assert.ok(data.user.email_confirmed_at)
})

test('a confirmed user can be created and signs in with the password', async () => {
  const { email, password, user } = await createConfirmedUser()
  const { data, error } = await makeEmailClient().client.signInWithPassword({ email, password })
  assertNoError(error, 'signInWithPassword')
  assert.equal(data.user.id, user.id)
})
