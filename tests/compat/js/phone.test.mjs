// Phone flows against the phone-flow server (SMS autoconfirm off, codes delivered through
// the send-SMS hook, e-mail autoconfirm on). The hook receiver (tests/compat/sms_hook.py)
// checks each request's Standard Webhooks signature and appends the payload
// {"user": {...}, "sms": {"otp", "phone"}} as one JSON line to FERROTRUE_SMS_LOG.
//
// tests/compat/run.sh sets FERROTRUE_PHONE_URL and FERROTRUE_SMS_LOG.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { AuthApiError, GoTrueClient } from '@supabase/auth-js'
import {
  assertNoError,
  assertSession,
  decodeAndVerifyJwt,
  memoryStorage,
  randomEmail,
  randomPassword,
  randomPhoneDigits,
} from './lib.mjs'

const PHONE_URL = (process.env.FERROTRUE_PHONE_URL || '').replace(/\/+$/, '')
const SMS_LOG = process.env.FERROTRUE_SMS_LOG || ''
if (!PHONE_URL || !SMS_LOG) {
  throw new Error('FERROTRUE_PHONE_URL / FERROTRUE_SMS_LOG are not set (run the suite through tests/compat/run.sh)')
}

/** A GoTrueClient for the phone-flow server; records its auth events. */
function makePhoneClient() {
  const client = new GoTrueClient({
    url: PHONE_URL,
    persistSession: true,
    storage: memoryStorage(),
    autoRefreshToken: false,
  })
  const events = []
  client.onAuthStateChange((event) => {
    events.push(event)
  })
  return { client, events }
}

/** Every hook payload so far that went to `digits`, oldest first. */
async function smsTo(digits) {
  const text = await readFile(SMS_LOG, 'utf8')
  return text
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line))
    .filter((p) => p && p.sms && p.sms.phone === digits)
}

/** Waits (up to `timeout` ms) until more than `after` SMS went to `digits`; returns the newest payload. */
async function waitForSms(digits, { after = 0, timeout = 5000 } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const got = await smsTo(digits)
    if (got.length > after) {
      const payload = got[got.length - 1]
      assert.match(payload.sms.otp, /^\d{6}$/, `hook payload otp: ${JSON.stringify(payload)}`)
      assert.ok(payload.user && typeof payload.user.id === 'string', `hook payload user: ${JSON.stringify(payload)}`)
      return payload
    }
    if (Date.now() > deadline) {
      throw new assert.AssertionError({
        message: `no SMS #${after + 1} to ${digits} within ${timeout} ms (got ${got.length})`,
      })
    }
    await sleep(50)
  }
}

async function assertSmsCount(digits, count, wait = 300) {
  await sleep(wait)
  const got = await smsTo(digits)
  assert.equal(got.length, count, `SMS to ${digits}: ${JSON.stringify(got)}`)
}

function assertApiErr(error, status, code, what) {
  assert.ok(error instanceof AuthApiError, `${what}: expected AuthApiError, got ${error}`)
  assert.equal(error.status, status, `${what}: status (${error.message})`)
  assert.equal(error.code, code, `${what}: code (${error.message})`)
}

/** A different 6-digit code than `code`. */
function wrongCode(code) {
  return String((Number(code) + 1) % 1_000_000).padStart(6, '0')
}

/** Signs up an unconfirmed phone user; returns {digits, phone, password, user, otp}. */
async function signUpPhone() {
  const digits = randomPhoneDigits()
  const phone = `+${digits}`
  const password = randomPassword()
  const { client } = makePhoneClient()
  const { data, error } = await client.signUp({ phone, password })
  assertNoError(error, 'signUp (phone)')
  assert.equal(data.session, null, 'an unconfirmed phone sign-up must not return a session')
  assert.ok(data.user, 'signUp (phone) returns the user')
  const sms = await waitForSms(digits)
  assert.equal(sms.user.id, data.user.id, 'hook payload user.id')
  return { digits, phone, password, user: data.user, otp: sms.sms.otp }
}

test('phone signUp sends a code through the hook; verifyOtp(sms) confirms; password sign-in works', async () => {
  const digits = randomPhoneDigits()
  const phone = `+${digits}`
  const password = randomPassword()
  const { client, events } = makePhoneClient()

  const { data, error } = await client.signUp({ phone, password, options: { data: { plan: 'sms' } } })
  assertNoError(error, 'signUp (phone)')
  assert.equal(data.session, null, 'no session before the phone is confirmed')
  assert.ok(data.user && typeof data.user.id === 'string')
  assert.equal(data.user.phone, digits, 'phone is returned without "+"')
  assert.ok(!data.user.phone_confirmed_at, `phone_confirmed_at: ${data.user.phone_confirmed_at}`)
  assert.ok(data.user.confirmation_sent_at, 'confirmation_sent_at is set')
  assert.equal(data.user.user_metadata.plan, 'sms')
  assert.deepEqual(events.filter((e) => e === 'SIGNED_IN'), [])

  const sms = await waitForSms(digits)
  assert.equal(sms.sms.phone, digits)
  assert.equal(sms.user.id, data.user.id)
  assert.equal(sms.user.phone, digits)
  await assertSmsCount(digits, 1, 0)

  // Unconfirmed: the password alone does not sign in.
  const early = await makePhoneClient().client.signInWithPassword({ phone, password })
  assertApiErr(early.error, 400, 'phone_not_confirmed', 'signInWithPassword before confirmation')
  assert.equal(early.data.session, null)

  const v = await client.verifyOtp({ phone, token: sms.sms.otp, type: 'sms' })
  assertNoError(v.error, "verifyOtp(type 'sms')")
  assertSession(v.data.session, "verifyOtp(type 'sms')")
  assert.equal(v.data.user.id, data.user.id)
  assert.equal(v.data.user.phone, digits)
  assert.ok(v.data.user.phone_confirmed_at, 'phone_confirmed_at is set after verification')
  assert.ok(events.includes('SIGNED_IN'), `events: ${events}`)
  const { payload } = decodeAndVerifyJwt(v.data.session.access_token)
  assert.equal(payload.sub, data.user.id)
  assert.equal(payload.phone, digits)
  assert.ok(payload.amr.some((x) => x.method === 'otp'), `amr: ${JSON.stringify(payload.amr)}`)

  const { data: got, error: getErr } = await client.getUser()
  assertNoError(getErr, 'getUser')
  assert.equal(got.user.phone, digits)
  assert.ok(got.user.phone_confirmed_at)

  const pw = await makePhoneClient().client.signInWithPassword({ phone, password })
  assertNoError(pw.error, 'signInWithPassword (phone)')
  assertSession(pw.data.session, 'signInWithPassword (phone)')
  assert.equal(pw.data.user.id, data.user.id)
  assert.equal(pw.data.user.phone, digits)

  const bad = await makePhoneClient().client.signInWithPassword({ phone, password: `${password}x` })
  assertApiErr(bad.error, 400, 'invalid_credentials', 'signInWithPassword (wrong password)')
})

test('signInWithOtp(phone) sends a sign-in code to a confirmed user; unknown number with shouldCreateUser:false is otp_disabled', async () => {
  const u = await signUpPhone()
  const confirmed = await makePhoneClient().client.verifyOtp({ phone: u.phone, token: u.otp, type: 'sms' })
  assertNoError(confirmed.error, 'verifyOtp (setup)')

  const { client } = makePhoneClient()
  const sent = await client.signInWithOtp({ phone: u.phone, options: { shouldCreateUser: false } })
  assertNoError(sent.error, 'signInWithOtp (phone)')
  assert.equal(sent.data.session, null)
  assert.equal(sent.data.user, null)
  const sms = await waitForSms(u.digits, { after: 1 })
  assert.equal(sms.user.id, u.user.id)

  const v = await client.verifyOtp({ phone: u.phone, token: sms.sms.otp, type: 'sms' })
  assertNoError(v.error, "verifyOtp(type 'sms') for the sign-in code")
  assertSession(v.data.session, 'verifyOtp (sign-in code)')
  assert.equal(v.data.user.id, u.user.id)
  assert.equal(v.data.user.phone, u.digits)
  assert.ok(v.data.user.phone_confirmed_at)
  const { data: s } = await client.getSession()
  assert.equal(s.session.access_token, v.data.session.access_token, 'the client stored the session')

  const unknown = randomPhoneDigits()
  const res = await makePhoneClient().client.signInWithOtp({ phone: `+${unknown}`, options: { shouldCreateUser: false } })
  assertApiErr(res.error, 422, 'otp_disabled', 'signInWithOtp (unknown number, shouldCreateUser:false)')
  await assertSmsCount(unknown, 0)
})

test('signInWithOtp(phone) for a new number signs up; the code confirms it', async () => {
  const digits = randomPhoneDigits()
  const { client } = makePhoneClient()
  const sent = await client.signInWithOtp({ phone: `+${digits}` })
  assertNoError(sent.error, 'signInWithOtp (new number)')
  const sms = await waitForSms(digits)
  assert.equal(sms.user.phone, digits)
  const v = await client.verifyOtp({ phone: `+${digits}`, token: sms.sms.otp, type: 'sms' })
  assertNoError(v.error, 'verifyOtp (new number)')
  assertSession(v.data.session)
  assert.equal(v.data.user.id, sms.user.id)
  assert.equal(v.data.user.phone, digits)
  assert.ok(v.data.user.phone_confirmed_at)
})

test("updateUser({phone}) on an e-mail user sends a code to the new number; verifyOtp(phone_change) applies it", async () => {
  const { client } = makePhoneClient()
  const email = randomEmail()
  const signUp = await client.signUp({ email, password: randomPassword() })
  assertNoError(signUp.error, 'signUp (email, autoconfirmed)')
  assertSession(signUp.data.session, 'signUp (email)')
  const userId = signUp.data.user.id
  assert.ok(!signUp.data.user.phone, `email user has no phone: ${signUp.data.user.phone}`)

  const digits = randomPhoneDigits()
  const phone = `+${digits}`
  const upd = await client.updateUser({ phone })
  assertNoError(upd.error, 'updateUser({phone})')
  assert.equal(upd.data.user.id, userId)
  assert.equal(upd.data.user.new_phone, digits, 'new_phone holds the pending number (without "+")')
  assert.ok(!upd.data.user.phone, `phone is unchanged until confirmed: ${upd.data.user.phone}`)
  assert.ok(!upd.data.user.phone_confirmed_at)

  const sms = await waitForSms(digits)
  assert.equal(sms.sms.phone, digits)
  assert.equal(sms.user.id, userId)

  // The sign-up type does not accept a phone-change code.
  const wrongType = await makePhoneClient().client.verifyOtp({ phone, token: sms.sms.otp, type: 'sms' })
  assertApiErr(wrongType.error, 403, 'otp_expired', "verifyOtp(type 'sms') with a phone_change code")

  const v = await client.verifyOtp({ phone, token: sms.sms.otp, type: 'phone_change' })
  assertNoError(v.error, "verifyOtp(type 'phone_change')")
  assertSession(v.data.session, 'verifyOtp (phone_change)')
  assert.equal(v.data.user.id, userId)

  const { data: got, error } = await client.getUser()
  assertNoError(error, 'getUser after the phone change')
  assert.equal(got.user.id, userId)
  assert.equal(got.user.phone, digits)
  assert.equal(got.user.email, email)
  assert.ok(got.user.phone_confirmed_at, 'phone_confirmed_at is set')
  assert.ok(!got.user.new_phone, `new_phone is cleared: ${got.user.new_phone}`)
  // GoTrue adds a phone identity when a phone change is confirmed on a user without one.
  const phoneIdentity = (got.user.identities || []).find((i) => i.provider === 'phone')
  assert.ok(phoneIdentity, `phone identity: ${JSON.stringify(got.user.identities)}`)
  assert.equal(phoneIdentity.identity_data.phone, digits)
  assert.ok((got.user.identities || []).some((i) => i.provider === 'email'), 'the email identity stays')
})

test('a wrong code is otp_expired (403) and leaves the right one usable; a used code is spent; an invalid phone is validation_failed', async () => {
  const u = await signUpPhone()
  const { client } = makePhoneClient()

  const wrong = await client.verifyOtp({ phone: u.phone, token: wrongCode(u.otp), type: 'sms' })
  assertApiErr(wrong.error, 403, 'otp_expired', 'verifyOtp (wrong code)')
  assert.equal(wrong.data.session, null)

  const ok = await client.verifyOtp({ phone: u.phone, token: u.otp, type: 'sms' })
  assertNoError(ok.error, 'verifyOtp (right code after a wrong one)')
  assertSession(ok.data.session)

  const again = await makePhoneClient().client.verifyOtp({ phone: u.phone, token: u.otp, type: 'sms' })
  assertApiErr(again.error, 403, 'otp_expired', 'verifyOtp (code reused)')

  const invalid = await makePhoneClient().client.signInWithOtp({ phone: '12ab' })
  assertApiErr(invalid.error, 400, 'validation_failed', 'signInWithOtp (invalid phone)')
})

test("resend({type:'sms'}) sends a fresh code to an unconfirmed number; only the newest code verifies", async () => {
  const u = await signUpPhone()
  const { client } = makePhoneClient()

  const r = await client.resend({ type: 'sms', phone: u.phone })
  assertNoError(r.error, "resend({type:'sms'})")
  assert.equal(r.data.session, null)
  const sms = await waitForSms(u.digits, { after: 1 })
  assert.equal(sms.user.id, u.user.id)

  if (sms.sms.otp !== u.otp) {
    const old = await client.verifyOtp({ phone: u.phone, token: u.otp, type: 'sms' })
    assertApiErr(old.error, 403, 'otp_expired', 'verifyOtp with the replaced code')
  }
  const v = await client.verifyOtp({ phone: u.phone, token: sms.sms.otp, type: 'sms' })
  assertNoError(v.error, 'verifyOtp with the resent code')
  assertSession(v.data.session)
  assert.equal(v.data.user.id, u.user.id)
  assert.ok(v.data.user.phone_confirmed_at)

  // Confirmed now: resend is a silent no-op.
  const r2 = await client.resend({ type: 'sms', phone: u.phone })
  assertNoError(r2.error, 'resend for a confirmed number')
  await assertSmsCount(u.digits, 2)
})
