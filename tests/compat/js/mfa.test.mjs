// MFA with TOTP factors through auth-js (SPEC §1.17, §2.1, §4.1): mfa.enroll / challenge /
// verify / challengeAndVerify / listFactors / getAuthenticatorAssuranceLevel / unenroll, and
// admin.mfa.listFactors / deleteFactor. Codes are computed here (RFC 6238, HMAC-SHA1).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { GoTrueAdminApi } from '@supabase/auth-js'
import { JWT_SECRET, URL_BASE, assertNoError, decodeAndVerifyJwt, makeClient, randomEmail, randomPassword } from './lib.mjs'

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0
  let value = 0
  const out = []
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c)
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(out)
}

/** RFC 6238 TOTP (SHA1, 6 digits, 30 s) for the step `offset` steps from now. */
function totp(secret, offset = 0) {
  const counter = Math.floor(Date.now() / 1000 / 30) + offset
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac('sha1', base32Decode(secret)).update(msg).digest()
  const o = mac[mac.length - 1] & 0xf
  const n = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3]
  return String(n % 1_000_000).padStart(6, '0')
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
}

function makeAdmin() {
  const now = Math.floor(Date.now() / 1000)
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const payload = b64url(JSON.stringify({ role: 'service_role', iat: now, exp: now + 3600 }))
  const sig = b64url(createHmac('sha256', JWT_SECRET).update(`${header}.${payload}`).digest())
  return new GoTrueAdminApi({ url: URL_BASE, headers: { Authorization: `Bearer ${header}.${payload}.${sig}` } })
}

async function signedIn() {
  const { client } = makeClient()
  const { data, error } = await client.signUp({ email: randomEmail(), password: randomPassword() })
  assertNoError(error, 'signUp')
  return { client, user: data.user }
}

test('enroll, challenge, verify: aal2 session with amr totp; listFactors and AAL', async () => {
  const { client } = await signedIn()
  let aal = await client.mfa.getAuthenticatorAssuranceLevel()
  assertNoError(aal.error, 'aal before')
  assert.deepEqual([aal.data.currentLevel, aal.data.nextLevel], ['aal1', 'aal1'])

  const enrolled = await client.mfa.enroll({ factorType: 'totp', friendlyName: 'phone app' })
  assertNoError(enrolled.error, 'enroll')
  assert.equal(enrolled.data.type, 'totp')
  assert.equal(enrolled.data.friendly_name, 'phone app')
  assert.ok(enrolled.data.totp.qr_code.startsWith('data:image/svg+xml;utf-8,'), 'qr_code data URI')
  assert.ok(enrolled.data.totp.qr_code.includes('<svg'), 'qr_code is SVG')
  assert.match(enrolled.data.totp.uri, /^otpauth:\/\/totp\//)
  const factorId = enrolled.data.id
  const secret = enrolled.data.totp.secret

  const challenge = await client.mfa.challenge({ factorId })
  assertNoError(challenge.error, 'challenge')
  assert.equal(challenge.data.type, 'totp')
  const verified = await client.mfa.verify({ factorId, challengeId: challenge.data.id, code: totp(secret) })
  assertNoError(verified.error, 'verify')
  const { payload } = decodeAndVerifyJwt(verified.data.access_token)
  assert.equal(payload.aal, 'aal2')
  assert.equal(payload.amr[0].method, 'totp')

  aal = await client.mfa.getAuthenticatorAssuranceLevel()
  assert.deepEqual([aal.data.currentLevel, aal.data.nextLevel], ['aal2', 'aal2'])
  const factors = await client.mfa.listFactors()
  assertNoError(factors.error, 'listFactors')
  assert.equal(factors.data.totp.length, 1)
  assert.equal(factors.data.totp[0].status, 'verified')

  // A wrong code is an AuthApiError with GoTrue's code.
  const c2 = await client.mfa.challenge({ factorId })
  const wrong = await client.mfa.verify({ factorId, challengeId: c2.data.id, code: '000000x' })
  assert.equal(wrong.error?.code, 'mfa_verification_failed')

  // challengeAndVerify with the next step's code (this step's was used once already).
  const cv = await client.mfa.challengeAndVerify({ factorId, code: totp(secret, 1) })
  assertNoError(cv.error, 'challengeAndVerify')

  const un = await client.mfa.unenroll({ factorId })
  assertNoError(un.error, 'unenroll')
  assert.equal(un.data.id, factorId)
  const after = await client.mfa.listFactors()
  assert.equal(after.data.all.length, 0)
})

test('admin.mfa.listFactors and deleteFactor', async () => {
  const { client, user } = await signedIn()
  const enrolled = await client.mfa.enroll({ factorType: 'totp' })
  assertNoError(enrolled.error, 'enroll')
  const admin = makeAdmin()
  const list = await admin.mfa.listFactors({ userId: user.id })
  assertNoError(list.error, 'admin listFactors')
  assert.equal(list.data.factors.length, 1)
  assert.equal(list.data.factors[0].id, enrolled.data.id)
  const del = await admin.mfa.deleteFactor({ userId: user.id, id: enrolled.data.id })
  assertNoError(del.error, 'admin deleteFactor')
  // auth-js wraps this body once more (`_request` without `xform`): data = {data: Factor, error}.
  assert.equal(del.data.data.id, enrolled.data.id)
  const again = await admin.mfa.listFactors({ userId: user.id })
  assert.equal(again.data.factors.length, 0)
})
