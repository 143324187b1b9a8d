// Email flows (autoconfirm off, real SMTP): secure email change (two confirmations) and
// admin invites.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AuthApiError, GoTrueAdminApi } from '@supabase/auth-js'
import { assertNoError, assertSession, randomEmail } from './lib.mjs'
import {
  EMAIL_URL,
  SITE_URL,
  SUBJECTS,
  assertAuthMail,
  createConfirmedUser,
  getNoFollow,
  makeAdmin,
  makeEmailClient,
  splitLocation,
  waitForMail,
} from './mail.mjs'

test('updateUser({email}) with secure email change needs both codes; then the email changes', async () => {
  const { email: oldEmail, password, user, client, events } = await createConfirmedUser()
  const newEmail = randomEmail()

  const upd = await client.updateUser({ email: newEmail })
  assertNoError(upd.error, 'updateUser({email})')
  assert.equal(upd.data.user.id, user.id)
  assert.equal(upd.data.user.email, oldEmail, 'the email does not change before confirmation')
  assert.equal(upd.data.user.new_email, newEmail, 'new_email holds the pending address')
  assert.ok(upd.data.user.email_change_sent_at, 'email_change_sent_at is set')

  // One mail to each address, both email_change links.
  const toOld = await waitForMail(oldEmail, { subject: SUBJECTS.emailChange })
  const toNew = await waitForMail(newEmail, { subject: SUBJECTS.emailChange })
  const current = assertAuthMail(toOld, { subject: SUBJECTS.emailChange, type: 'email_change' })
  const next = assertAuthMail(toNew, { subject: SUBJECTS.emailChange, type: 'email_change' })
  assert.notEqual(current.token, next.token, 'the two addresses get different tokens')

  // First half: accepted, no session. auth-js 2.99.3 hands back the JSON body as `user`.
  const first = await client.verifyOtp({ email: oldEmail, token: current.code, type: 'email_change' })
  assertNoError(first.error, 'verifyOtp(email_change) with the code sent to the current address')
  assert.equal(first.data.session, null, 'the first confirmation must not return a session')
  assert.equal(first.data.user.code, '200', `body: ${JSON.stringify(first.data.user)}`)
  assert.equal(
    first.data.user.msg,
    'Confirmation link accepted. Please proceed to confirm link sent to the other email',
  )
  const mid = await client.getUser()
  assertNoError(mid.error, 'getUser between the two confirmations')
  assert.equal(mid.data.user.email, oldEmail, 'still the old address after one confirmation')
  assert.equal(mid.data.user.new_email, newEmail)

  // Second half: the change is applied and a session is issued.
  const second = await client.verifyOtp({ email: newEmail, token: next.code, type: 'email_change' })
  assertNoError(second.error, 'verifyOtp(email_change) with the code sent to the new address')
  assertSession(second.data.session, 'second email_change confirmation')
  assert.equal(second.data.user.id, user.id)
  assert.equal(second.data.user.email, newEmail)
  assert.ok(!second.data.user.new_email, `new_email must be cleared: ${second.data.user.new_email}`)
  assert.ok(events.some((e) => e.event === 'SIGNED_IN' && e.session.user.email === newEmail))
  const identity = second.data.user.identities.find((i) => i.provider === 'email')
  assert.equal(identity.identity_data.email, newEmail, 'the email identity follows the change')

  const me = await client.getUser()
  assertNoError(me.error, 'getUser after the change')
  assert.equal(me.data.user.email, newEmail)

  const withNew = await makeEmailClient().client.signInWithPassword({ email: newEmail, password })
  assertNoError(withNew.error, 'signInWithPassword with the new address')
  const withOld = await makeEmailClient().client.signInWithPassword({ email: oldEmail, password })
  assert.ok(withOld.error instanceof AuthApiError)
  assert.equal(withOld.error.code, 'invalid_credentials')
})

test('email change link: the first GET redirects with the "Confirmation link accepted" message', async () => {
  const { email: oldEmail, client } = await createConfirmedUser()
  const newEmail = randomEmail()
  assertNoError((await client.updateUser({ email: newEmail })).error, 'updateUser({email})')
  const toOld = await waitForMail(oldEmail, { subject: SUBJECTS.emailChange })
  const toNew = await waitForMail(newEmail, { subject: SUBJECTS.emailChange })

  const first = await getNoFollow(toNew.link)
  assert.equal(first.status, 303, `${first.status} ${first.text}`)
  const a = splitLocation(first.location)
  assert.equal(a.base, SITE_URL)
  assert.equal(
    a.fragment.get('message'),
    'Confirmation link accepted. Please proceed to confirm link sent to the other email',
    first.location,
  )
  assert.equal(a.fragment.get('access_token'), null)

  const second = await getNoFollow(toOld.link)
  assert.equal(second.status, 303, `${second.status} ${second.text}`)
  const b = splitLocation(second.location)
  assert.equal(b.fragment.get('type'), 'email_change', second.location)
  const me = await makeEmailClient().client.getUser(b.fragment.get('access_token'))
  assertNoError(me.error, 'getUser with the token from the second link')
  assert.equal(me.data.user.email, newEmail)
})

test('admin inviteUserByEmail → "You have been invited" → verifyOtp(invite) gives a session', async () => {
  const admin = makeAdmin()
  const email = randomEmail()
  const { data, error } = await admin.inviteUserByEmail(email, { data: { team: 'blue' } })
  assertNoError(error, 'inviteUserByEmail')
  assert.equal(data.user.email, email)
  assert.ok(data.user.invited_at, 'invited_at is set')
  assert.ok(!data.user.email_confirmed_at)

  const mail = await waitForMail(email, { subject: SUBJECTS.invite })
  const { code } = assertAuthMail(mail, { subject: SUBJECTS.invite, type: 'invite' })

  const { client, events } = makeEmailClient()
  const v = await client.verifyOtp({ email, token: code, type: 'invite' })
  assertNoError(v.error, 'verifyOtp(invite)')
  assertSession(v.data.session, 'verifyOtp(invite)')
  assert.equal(v.data.user.id, data.user.id)
  assert.ok(v.data.user.email_confirmed_at, 'accepting the invite confirms the email')
  assert.equal(v.data.user.user_metadata.team, 'blue')
  assert.ok(events.some((e) => e.event === 'SIGNED_IN'))

  // Inviting a registered (confirmed) address again is email_exists.
  const dup = await admin.inviteUserByEmail(email)
  assert.ok(dup.error instanceof AuthApiError, `expected AuthApiError, got ${dup.error}`)
  assert.equal(dup.error.status, 422)
  assert.equal(dup.error.code, 'email_exists')
})

test('inviteUserByEmail without a service_role token is rejected', async () => {
  const { session } = await createConfirmedUser()
  const notAdmin = new GoTrueAdminApi({ url: EMAIL_URL, headers: { Authorization: `Bearer ${session.access_token}` } })
  const email = randomEmail()
  const { error } = await notAdmin.inviteUserByEmail(email)
  assert.ok(error instanceof AuthApiError, `expected AuthApiError, got ${error}`)
  assert.equal(error.status, 403)
  assert.equal(error.code, 'not_admin')
})
