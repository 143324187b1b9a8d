// MFA with WebAuthn factors through auth-js (SPEC §1.17): mfa.enroll / challenge / verify with
// `webauthn` parameters, as mfa.webauthn.register / authenticate drive them in a browser. There
// is no browser here: a tiny software security key (node:crypto, ES256, `none` attestation)
// answers the options auth-js deserialised, and hands auth-js a credential with `toJSON()`, as
// a WebAuthn Level 3 browser does. The server's relying party: localhost, http://localhost:3000.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import { GoTrueAdminApi } from '@supabase/auth-js'
import { JWT_SECRET, URL_BASE, assertNoError, decodeAndVerifyJwt, makeClient, randomEmail, randomPassword } from './lib.mjs'

const RP_ID = 'localhost'
const ORIGIN = 'http://localhost:3000'
const WEBAUTHN = { rpId: RP_ID, rpOrigins: [ORIGIN] }

const b64url = (buf) => Buffer.from(buf).toString('base64url')
const sha256 = (data) => createHash('sha256').update(data).digest()

/** Just enough CBOR for an attestation object: unsigned/negative ints, bytes, text, maps. */
function cbor(v) {
  const head = (major, n) => {
    if (n < 24) return Buffer.from([(major << 5) | n])
    if (n < 256) return Buffer.from([(major << 5) | 24, n])
    const b = Buffer.alloc(3)
    b[0] = (major << 5) | 25
    b.writeUInt16BE(n, 1)
    return b
  }
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v)
  if (typeof v === 'string') return Buffer.concat([head(3, Buffer.byteLength(v)), Buffer.from(v)])
  if (Buffer.isBuffer(v)) return Buffer.concat([head(2, v.length), v])
  if (v instanceof Map) return Buffer.concat([head(5, v.size), ...[...v].flatMap(([k, x]) => [cbor(k), cbor(x)])])
  throw new Error(`cbor: ${typeof v}`)
}

/** A software security key with one ES256 credential. */
class SoftKey {
  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    this.privateKey = privateKey
    this.jwk = publicKey.export({ format: 'jwk' })
    this.credId = randomBytes(32)
    this.counter = 0
  }

  clientData(type, publicKey, origin) {
    // auth-js hands over the challenge as an ArrayBuffer (it decoded the server's base64url).
    assert.ok(publicKey.challenge instanceof ArrayBuffer, 'auth-js deserialised the challenge')
    return Buffer.from(JSON.stringify({ type, challenge: b64url(publicKey.challenge), origin, crossOrigin: false }))
  }

  authData(flags, extra = Buffer.alloc(0)) {
    const counter = Buffer.alloc(4)
    counter.writeUInt32BE(++this.counter)
    return Buffer.concat([sha256(RP_ID), Buffer.from([flags]), counter, extra])
  }

  /** navigator.credentials.create() */
  create(publicKey, origin = ORIGIN) {
    const clientDataJSON = this.clientData('webauthn.create', publicKey, origin)
    const coseKey = cbor(
      new Map([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(this.jwk.x, 'base64url')],
        [-3, Buffer.from(this.jwk.y, 'base64url')],
      ]),
    )
    const idLen = Buffer.alloc(2)
    idLen.writeUInt16BE(this.credId.length)
    const authData = this.authData(0x41, Buffer.concat([Buffer.alloc(16), idLen, this.credId, coseKey]))
    const attestationObject = cbor(
      new Map([
        ['fmt', 'none'],
        ['attStmt', new Map()],
        ['authData', authData],
      ]),
    )
    const json = {
      id: b64url(this.credId),
      rawId: b64url(this.credId),
      type: 'public-key',
      response: { clientDataJSON: b64url(clientDataJSON), attestationObject: b64url(attestationObject), transports: ['usb'] },
      clientExtensionResults: {},
      authenticatorAttachment: 'cross-platform',
    }
    return { ...json, toJSON: () => json }
  }

  /** navigator.credentials.get() */
  get(publicKey, origin = ORIGIN) {
    const clientDataJSON = this.clientData('webauthn.get', publicKey, origin)
    const authenticatorData = this.authData(0x01)
    const signature = sign('sha256', Buffer.concat([authenticatorData, sha256(clientDataJSON)]), this.privateKey)
    const json = {
      id: b64url(this.credId),
      rawId: b64url(this.credId),
      type: 'public-key',
      response: {
        clientDataJSON: b64url(clientDataJSON),
        authenticatorData: b64url(authenticatorData),
        signature: b64url(signature),
      },
      clientExtensionResults: {},
    }
    return { ...json, toJSON: () => json }
  }
}

function makeAdmin() {
  const now = Math.floor(Date.now() / 1000)
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const payload = b64url(JSON.stringify({ role: 'service_role', iat: now, exp: now + 3600 }))
  const sig = b64url(createHmac('sha256', JWT_SECRET).update(`${header}.${payload}`).digest())
  return new GoTrueAdminApi({ url: URL_BASE, headers: { Authorization: `Bearer ${header}.${payload}.${sig}` } })
}

/** A signed-up user whose WebAuthn factor is registered: {client, email, password, factorId, key, userId}. */
async function registered() {
  const { client } = makeClient()
  const email = randomEmail()
  const password = randomPassword()
  const signUp = await client.signUp({ email, password })
  assertNoError(signUp.error, 'signUp')

  const enrolled = await client.mfa.webauthn.enroll({ friendlyName: 'security key' })
  assertNoError(enrolled.error, 'enroll')
  assert.equal(enrolled.data.type, 'webauthn')
  assert.equal(enrolled.data.friendly_name, 'security key')
  const factorId = enrolled.data.id

  const challenge = await client.mfa.challenge({ factorId, webauthn: WEBAUTHN })
  assertNoError(challenge.error, 'challenge')
  assert.equal(challenge.data.type, 'webauthn')
  assert.equal(challenge.data.webauthn.type, 'create')
  const publicKey = challenge.data.webauthn.credential_options.publicKey
  assert.equal(publicKey.rp.id, RP_ID)
  assert.equal(publicKey.user.name, email)
  assert.ok(publicKey.user.id instanceof ArrayBuffer, 'auth-js deserialised user.id')

  const key = new SoftKey()
  const verified = await client.mfa.webauthn.verify({
    factorId,
    challengeId: challenge.data.id,
    webauthn: { ...WEBAUTHN, type: 'create', credential_response: key.create(publicKey) },
  })
  assertNoError(verified.error, 'verify (create)')
  const { payload } = decodeAndVerifyJwt(verified.data.access_token)
  assert.equal(payload.aal, 'aal2')
  assert.equal(payload.amr[0].method, 'mfa/webauthn')
  return { client, email, password, factorId, key, userId: signUp.data.user.id }
}

test('register a security key: aal2 with amr mfa/webauthn; listFactors and AAL', async () => {
  const { client, factorId } = await registered()
  const aal = await client.mfa.getAuthenticatorAssuranceLevel()
  assertNoError(aal.error, 'aal')
  assert.deepEqual([aal.data.currentLevel, aal.data.nextLevel], ['aal2', 'aal2'])
  const factors = await client.mfa.listFactors()
  assertNoError(factors.error, 'listFactors')
  assert.deepEqual(
    factors.data.webauthn.map((f) => [f.id, f.status]),
    [[factorId, 'verified']],
  )
})

test('sign in again and authenticate with the key: request options, aal2', async () => {
  const { email, password, factorId, key } = await registered()
  const { client } = makeClient()
  assertNoError((await client.signInWithPassword({ email, password })).error, 'signInWithPassword')
  let aal = await client.mfa.getAuthenticatorAssuranceLevel()
  assert.deepEqual([aal.data.currentLevel, aal.data.nextLevel], ['aal1', 'aal2'])

  const challenge = await client.mfa.challenge({ factorId, webauthn: WEBAUTHN })
  assertNoError(challenge.error, 'challenge')
  assert.equal(challenge.data.webauthn.type, 'request')
  const publicKey = challenge.data.webauthn.credential_options.publicKey
  assert.equal(publicKey.rpId, RP_ID)
  assert.deepEqual(
    publicKey.allowCredentials.map((c) => Buffer.from(c.id).toString('hex')),
    [key.credId.toString('hex')],
  )
  const verified = await client.mfa.verify({
    factorId,
    challengeId: challenge.data.id,
    webauthn: { ...WEBAUTHN, type: 'request', credential_response: key.get(publicKey) },
  })
  assertNoError(verified.error, 'verify (request)')
  aal = await client.mfa.getAuthenticatorAssuranceLevel()
  assert.deepEqual([aal.data.currentLevel, aal.data.nextLevel], ['aal2', 'aal2'])
  assert.ok(aal.data.currentAuthenticationMethods.some((m) => m.method === 'mfa/webauthn'))
})

test('an assertion from another origin is refused, whatever rpOrigins says', async () => {
  const { client, factorId, key } = await registered()
  const evil = 'https://evil.example.net'
  const challenge = await client.mfa.challenge({ factorId, webauthn: { rpId: RP_ID, rpOrigins: [evil] } })
  assertNoError(challenge.error, 'challenge')
  const publicKey = challenge.data.webauthn.credential_options.publicKey
  const res = await client.mfa.verify({
    factorId,
    challengeId: challenge.data.id,
    webauthn: { rpId: RP_ID, rpOrigins: [evil], type: 'request', credential_response: key.get(publicKey, evil) },
  })
  assert.ok(res.error, 'verify must fail')
  assert.equal(res.error.status, 422)
  assert.equal(res.error.code, 'mfa_verification_failed')
})

test('admin.mfa.listFactors / deleteFactor see the WebAuthn factor', async () => {
  const { userId, factorId } = await registered()
  const admin = makeAdmin()
  const list = await admin.mfa.listFactors({ userId })
  assertNoError(list.error, 'admin listFactors')
  assert.deepEqual(
    list.data.factors.map((f) => [f.id, f.factor_type]),
    [[factorId, 'webauthn']],
  )
  const del = await admin.mfa.deleteFactor({ userId, id: factorId })
  assertNoError(del.error, 'admin deleteFactor')
  assert.equal((await admin.mfa.listFactors({ userId })).data.factors.length, 0)
})
