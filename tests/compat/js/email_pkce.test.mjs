// Email flows with flowType 'pkce': the link redirects with ?code=, and
// exchangeCodeForSession() (same client, verifier from its storage) returns the session.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { STORAGE_KEY, assertNoError, assertSession, randomEmail, randomPassword } from './lib.mjs'
import {
  SUBJECTS,
  assertAuthMail,
  createConfirmedUser,
  getNoFollow,
  makeEmailClient,
  rawEmail,
  splitLocation,
  waitForMail,
} from './mail.mjs'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const VERIFIER_KEY = `${STORAGE_KEY}-code-verifier`

/** The verifier auth-js stored (it JSON-encodes storage values). */
function storedVerifier(storage) {
  const raw = storage.getItem(VERIFIER_KEY)
  return raw === null ? null : JSON.parse(raw)
}

/** Follows a PKCE mail link by hand; returns the auth code from `<expectedBase>?code=`. */
async function codeFromLink(link, expectedBase) {
  const res = await getNoFollow(link)
  assert.equal(res.status, 303, `GET ${link}: ${res.status} ${res.text}`)
  const { base, query, fragment } = splitLocation(res.location)
  assert.equal(base, expectedBase, `redirect target: ${res.location}`)
  const code = query.get('code')
  assert.match(code || '', UUID, `the PKCE redirect carries ?code=<uuid>: ${res.location}`)
  assert.equal(fragment.get('access_token'), null, `no tokens in a PKCE redirect: ${res.location}`)
  return code
}

test('PKCE magic link: pkce_ token, 303 to redirect_to?code=, exchangeCodeForSession', async () => {
  const { email, user } = await createConfirmedUser()
  const { client, storage, events } = makeEmailClient({ flowType: 'pkce' })

  const sent = await client.signInWithOtp({ email, options: { emailRedirectTo: 'http://localhost:3000/welcome' } })
  assertNoError(sent.error, 'signInWithOtp (pkce)')
  const verifier = storedVerifier(storage)
  assert.match(verifier || '', /^[0-9a-f]{112}$/, 'auth-js stored a 112-hex-char code verifier')

  const mail = await waitForMail(email, { subject: SUBJECTS.magicLink })
  const { token } = assertAuthMail(mail, {
    subject: SUBJECTS.magicLink,
    type: 'magiclink',
    redirectTo: 'http://localhost:3000/welcome',
  })
  assert.ok(token.startsWith('pkce_'), `PKCE link token must start with pkce_: ${token}`)

  const code = await codeFromLink(mail.link, 'http://localhost:3000/welcome')
  const { data, error } = await client.exchangeCodeForSession(code)
  assertNoError(error, 'exchangeCodeForSession')
  assertSession(data.session, 'exchangeCodeForSession')
  assert.equal(data.user.id, user.id)
  assert.equal(data.redirectType, null)
  assert.equal(storage.getItem(VERIFIER_KEY), null, 'the verifier is consumed')
  assert.ok(events.some((e) => e.event === 'SIGNED_IN'))
  const me = await client.getUser()
  assertNoError(me.error, 'getUser in the exchanged session')
  assert.equal(me.data.user.id, user.id)

  // The auth code is single use.
  const reuse = await rawEmail('POST', '/token?grant_type=pkce', { body: { auth_code: code, code_verifier: verifier } })
  assert.equal(reuse.status, 404, reuse.text)
  assert.equal(reuse.body.code, 'flow_state_not_found', reuse.text)
})

test('PKCE recovery: exchange gives a session with redirectType PASSWORD_RECOVERY', async () => {
  const { email, user } = await createConfirmedUser()
  const { client, storage } = makeEmailClient({ flowType: 'pkce' })

  const sent = await client.resetPasswordForEmail(email, { redirectTo: 'http://localhost:3000/reset' })
  assertNoError(sent.error, 'resetPasswordForEmail (pkce)')
  assert.match(storedVerifier(storage) || '', /^[0-9a-f]{112}\/PASSWORD_RECOVERY$/)

  const mail = await waitForMail(email, { subject: SUBJECTS.recovery })
  const { token } = assertAuthMail(mail, {
    subject: SUBJECTS.recovery,
    type: 'recovery',
    redirectTo: 'http://localhost:3000/reset',
  })
  assert.ok(token.startsWith('pkce_'), `PKCE link token must start with pkce_: ${token}`)

  const code = await codeFromLink(mail.link, 'http://localhost:3000/reset')
  const { data, error } = await client.exchangeCodeForSession(code)
  assertNoError(error, 'exchangeCodeForSession (recovery)')
  assertSession(data.session)
  assert.equal(data.user.id, user.id)
  assert.equal(data.redirectType, 'PASSWORD_RECOVERY')

  const newPassword = randomPassword()
  assertNoError((await client.updateUser({ password: newPassword })).error, 'updateUser after PKCE recovery')
  const signin = await makeEmailClient().client.signInWithPassword({ email, password: newPassword })
  assertNoError(signin.error, 'signInWithPassword with the new password')
})

test('PKCE signUp: confirmation link redirects with ?code=; the exchange signs the user in', async () => {
  const { client } = makeEmailClient({ flowType: 'pkce' })
  const email = randomEmail()
  const signup = await client.signUp({ email, password: randomPassword() })
  assertNoError(signup.error, 'signUp (pkce)')
  assert.equal(signup.data.session, null)

  const mail = await waitForMail(email, { subject: SUBJECTS.confirmation })
  const { token } = assertAuthMail(mail, { subject: SUBJECTS.confirmation, type: 'signup' })
  assert.ok(token.startsWith('pkce_'), `PKCE link token must start with pkce_: ${token}`)

  const code = await codeFromLink(mail.link, 'http://localhost:3000')
  const { data, error } = await client.exchangeCodeForSession(code)
  assertNoError(error, 'exchangeCodeForSession (signup)')
  assertSession(data.session)
  assert.equal(data.user.id, signup.data.user.id)
  assert.ok(data.user.email_confirmed_at, 'the link confirmed the email')
})

test('PKCE exchange with a wrong verifier is bad_code_verifier', async () => {
  const { email } = await createConfirmedUser()
  const { client } = makeEmailClient({ flowType: 'pkce' })
  assertNoError((await client.signInWithOtp({ email })).error, 'signInWithOtp (pkce)')
  const mail = await waitForMail(email, { subject: SUBJECTS.magicLink })
  const code = await codeFromLink(mail.link, 'http://localhost:3000')
  const bad = await rawEmail('POST', '/token?grant_type=pkce', {
    body: { auth_code: code, code_verifier: 'x'.repeat(64) },
  })
  assert.equal(bad.status, 400, bad.text)
  assert.equal(bad.body.code, 'bad_code_verifier', bad.text)
  // The right verifier still works afterwards.
  const { data, error } = await client.exchangeCodeForSession(code)
  assertNoError(error, 'exchangeCodeForSession after a bad attempt')
  assertSession(data.session)
})
