// MFA with phone factors through auth-js (SPEC §1.17) against the phone-flow server
// (GOTRUE_MFA_PHONE_ENROLL_ENABLED / _VERIFY_ENABLED on, codes through the send-SMS hook whose
// receiver, tests/compat/sms_hook.py, appends each payload to FERROTRUE_SMS_LOG):
// mfa.enroll({factorType:'phone'}) / challenge / verify / listFactors().phone /
// getAuthenticatorAssuranceLevel / unenroll, and admin.mfa.listFactors / deleteFactor.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { AuthApiError, GoTrueAdminApi, GoTrueClient } from '@supabase/auth-js'
import { JWT_SECRET, assertNoError, decodeAndVerifyJwt, memoryStorage, randomEmail, randomPassword, randomPhoneDigits } from './lib.mjs'

const PHONE_URL = (process.env.FERROTRUE_PHONE_URL || '').replace(/\/+$/, '')
const SMS_LOG = process.env.FERROTRUE_SMS_LOG || ''
if (!PHONE_URL || !SMS_LOG) {
  throw new Error('FERROTRUE_PHONE_URL / FERROTRUE_SMS_LOG are not set (run the suite through tests/compat/run.sh)')
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
}

function makeAdmin() {
  const now = Math.floor(Date.now() / 1000)
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const payload = b64url(JSON.stringify({ role: 'service_role', iat: now, exp: now + 3600 }))
  const sig = b64url(createHmac('sha256', JWT_SECRET).update(`${header}.${payload}`).digest())
  return new GoTrueAdminApi({ url: PHONE_URL, headers: { Authorization: `Bearer ${header}.${payload}.${sig}` } })
}

/** A client of the phone-flow server signed up by email (autoconfirm on there). */
async function signedIn() {
  const client = new GoTrueClient({ url: PHONE_URL, persistSession: true, storage: memoryStorage(), autoRefreshToken: false })
  const events = []
  client.onAuthStateChange((event) => events.push(event))
  const { data, error } = await client.signUp({ email: randomEmail(), password: randomPassword() })
  assertNoError(error, 'signUp')
  assert.ok(data.session, 'autoconfirm gives a session')
  return { client, user: data.user, events }
}

/** MFA codes the hook received for `digits`, oldest first. */
async function mfaSmsTo(digits) {
  const text = await readFile(SMS_LOG, 'utf8')
  return text
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line))
    .filter((p) => p && p.sms && p.sms.phone === digits && p.sms.sms_type === 'mfa')
}

async function waitForCode(digits, after = 0) {
  const deadline = Date.now() + 5000
  for (;;) {
    const got = await mfaSmsTo(digits)
    if (got.length > after) return got[got.length - 1].sms.otp
    if (Date.now() > deadline) throw new assert.AssertionError({ message: `no MFA SMS #${after + 1} to ${digits}` })
    await sleep(50)
  }
}

function assertApiErr(error, status, code, what) {
  assert.ok(error instanceof AuthApiError, `${what}: expected AuthApiError, got ${error}`)
  assert.equal(error.status, status, `${what}: status (${error.message})`)
  assert.equal(error.code, code, `${what}: code (${error.message})`)
}

test('phone factor: enroll, challenge (SMS through the hook), verify: aal2 with mfa/phone; listFactors().phone', async () => {
  const { client, user, events } = await signedIn()
  const digits = randomPhoneDigits()
  const enrolled = await client.mfa.enroll({ factorType: 'phone', phone: `+${digits}`, friendlyName: 'mobile' })
  assertNoError(enrolled.error, 'mfa.enroll(phone)')
  assert.equal(enrolled.data.type, 'phone')
  assert.equal(enrolled.data.friendly_name, 'mobile')
  assert.equal(enrolled.data.phone, `+${digits}`, 'the number as sent')
  const factorId = enrolled.data.id

  let listed = await client.mfa.listFactors()
  assertNoError(listed.error, 'listFactors (unverified)')
  assert.equal(listed.data.phone.length, 0, 'unverified factors are not in the phone list')
  assert.equal(listed.data.all.length, 1)
  assert.equal(listed.data.all[0].phone, digits, 'stored without +')

  const ch = await client.mfa.challenge({ factorId, channel: 'sms' })
  assertNoError(ch.error, 'mfa.challenge(phone)')
  assert.equal(ch.data.type, 'phone')
  assert.ok(ch.data.expires_at > Date.now() / 1000)
  const code = await waitForCode(digits)
  assert.match(code, /^\d{6}$/)

  const wrong = await client.mfa.verify({ factorId, challengeId: ch.data.id, code: code === '000000' ? '111111' : '000000' })
  assertApiErr(wrong.error, 422, 'mfa_verification_failed', 'verify (wrong code)')
  const again = await client.mfa.challenge({ factorId })
  assertApiErr(again.error, 429, 'over_sms_send_rate_limit', 'challenge inside GOTRUE_MFA_PHONE_MAX_FREQUENCY')

  const v = await client.mfa.verify({ factorId, challengeId: ch.data.id, code })
  assertNoError(v.error, 'mfa.verify(phone)')
  assert.ok(events.includes('MFA_CHALLENGE_VERIFIED'), `events: ${events}`)
  const { payload } = decodeAndVerifyJwt(v.data.access_token)
  assert.equal(payload.sub, user.id)
  assert.equal(payload.aal, 'aal2')
  assert.ok(payload.amr.some((x) => x.method === 'mfa/phone'), `amr: ${JSON.stringify(payload.amr)}`)

  const aal = await client.mfa.getAuthenticatorAssuranceLevel()
  assertNoError(aal.error, 'getAuthenticatorAssuranceLevel')
  assert.equal(aal.data.currentLevel, 'aal2')
  assert.equal(aal.data.nextLevel, 'aal2')
  assert.ok(aal.data.currentAuthenticationMethods.some((m) => m.method === 'mfa/phone'))

  listed = await client.mfa.listFactors()
  assertNoError(listed.error, 'listFactors (verified)')
  assert.equal(listed.data.phone.length, 1)
  assert.equal(listed.data.phone[0].id, factorId)
  assert.equal(listed.data.phone[0].phone, digits)
  assert.equal(listed.data.totp.length, 0)

  // The verified number cannot be enrolled twice.
  const dup = await client.mfa.enroll({ factorType: 'phone', phone: `+${digits}` })
  assertApiErr(dup.error, 422, 'mfa_verified_factor_exists', 'enroll the same number again')

  const un = await client.mfa.unenroll({ factorId })
  assertNoError(un.error, 'mfa.unenroll')
  listed = await client.mfa.listFactors()
  assert.equal(listed.data.all.length, 0)
})

test('admin.mfa.listFactors shows phone factors; deleteFactor removes them', async () => {
  const { client, user } = await signedIn()
  const digits = randomPhoneDigits()
  const enrolled = await client.mfa.enroll({ factorType: 'phone', phone: digits })
  assertNoError(enrolled.error, 'mfa.enroll(phone)')
  const admin = makeAdmin()
  const listed = await admin.mfa.listFactors({ userId: user.id })
  assertNoError(listed.error, 'admin.mfa.listFactors')
  assert.equal(listed.data.factors.length, 1)
  assert.equal(listed.data.factors[0].factor_type, 'phone')
  assert.equal(listed.data.factors[0].phone, digits)
  const del = await admin.mfa.deleteFactor({ userId: user.id, id: enrolled.data.id })
  assertNoError(del.error, 'admin.mfa.deleteFactor')
  const after = await admin.mfa.listFactors({ userId: user.id })
  assert.equal(after.data.factors.length, 0)
})
