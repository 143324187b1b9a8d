// Shared helpers for the auth-js compat suite.
//
// The server under test is given by FERROTRUE_URL (e.g. http://127.0.0.1:9999) and
// its HS256 secret by FERROTRUE_JWT_SECRET; tests/compat/run.sh sets both.

import assert from 'node:assert/strict'
import { createHmac, randomBytes, randomInt } from 'node:crypto'
import { GoTrueClient } from '@supabase/auth-js'

export const URL_BASE = (process.env.FERROTRUE_URL || '').replace(/\/+$/, '')
export const JWT_SECRET = process.env.FERROTRUE_JWT_SECRET || ''

if (!URL_BASE) {
  throw new Error('FERROTRUE_URL is not set (run the suite through tests/compat/run.sh)')
}

/** The storage key auth-js uses by default. */
export const STORAGE_KEY = 'supabase.auth.token'

export const API_VERSION = '2024-01-01'

/** A fresh, unique, lower-case e-mail address. */
export function randomEmail() {
  return `u${randomBytes(8).toString('hex')}@example.com`
}

/** Digits of a fresh phone number (no '+'): "1555" followed by 7 random digits. */
export function randomPhoneDigits() {
  return '1555' + String(randomInt(0, 10_000_000)).padStart(7, '0')
}

/** A password that satisfies GoTrue's default policy (min length 6). */
export function randomPassword() {
  return `Pw-${randomBytes(6).toString('hex')}`
}

/** Minimal synchronous Storage (getItem/setItem/removeItem) backed by a Map. */
export function memoryStorage() {
  const map = new Map()
  return {
    map,
    getItem: (key) => (map.has(key) ? map.get(key) : null),
    setItem: (key, value) => {
      map.set(key, String(value))
    },
    removeItem: (key) => {
      map.delete(key)
    },
  }
}

/**
 * A GoTrueClient as an app would build it: default headers, persisted session in
 * an in-memory storage, no background refresh timer.
 */
export function makeClient() {
  const storage = memoryStorage()
  const client = new GoTrueClient({
    url: URL_BASE,
    persistSession: true,
    storage,
    autoRefreshToken: false,
  })
  return { client, storage }
}

/**
 * Raw HTTP call against the server (no client library). Sends the
 * X-Supabase-Api-Version header like the official clients do unless
 * `apiVersion: null` is passed. Returns {status, headers, text, body}.
 */
export async function raw(method, path, { body, jwt, apiVersion = API_VERSION, headers = {} } = {}) {
  const h = { ...headers }
  if (apiVersion) h['X-Supabase-Api-Version'] = apiVersion
  if (jwt) h['Authorization'] = `Bearer ${jwt}`
  if (body !== undefined) h['Content-Type'] = 'application/json;charset=UTF-8'
  const res = await fetch(URL_BASE + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    redirect: 'manual',
  })
  const text = await res.text()
  let parsed = null
  if (text.length) {
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = null
    }
  }
  return { status: res.status, headers: res.headers, text, body: parsed }
}

/** POST /token?grant_type=refresh_token with a raw refresh token. */
export function rawRefresh(refreshToken) {
  return raw('POST', '/token?grant_type=refresh_token', { body: { refresh_token: refreshToken } })
}

/**
 * Asserts a raw response is a 2024-01-01 style error: the given status, a JSON
 * body {code, message} and the API version header echoed back.
 */
export function assertApiError(res, status, code) {
  assert.equal(res.status, status, `expected HTTP ${status}, got ${res.status}: ${res.text}`)
  assert.ok(res.body && typeof res.body === 'object', `error body is not JSON: ${res.text}`)
  assert.equal(res.body.code, code, `expected code ${code}, body: ${res.text}`)
  assert.equal(typeof res.body.message, 'string', `error body lacks a string message: ${res.text}`)
  assert.ok(res.body.message.length > 0, 'error message is empty')
  assert.equal(
    res.headers.get('x-supabase-api-version'),
    API_VERSION,
    'error response must echo X-Supabase-Api-Version',
  )
}

/** Fails with the client error (if any) as the message. */
export function assertNoError(error, what) {
  assert.equal(
    error,
    null,
    `${what} failed: ${error && `${error.name} status=${error.status} code=${error.code} ${error.message}`}`,
  )
}

/** Asserts a session object as auth-js returns it. */
export function assertSession(session, what = 'session') {
  assert.ok(session, `${what}: no session returned`)
  assert.equal(typeof session.access_token, 'string', `${what}: access_token`)
  assert.ok(session.access_token.split('.').length === 3, `${what}: access_token is not a JWT`)
  assert.equal(typeof session.refresh_token, 'string', `${what}: refresh_token`)
  assert.ok(session.refresh_token.length >= 12, `${what}: refresh_token too short`)
  assert.equal(session.token_type, 'bearer', `${what}: token_type`)
  assert.equal(typeof session.expires_in, 'number', `${what}: expires_in`)
  assert.ok(session.expires_in > 0, `${what}: expires_in > 0`)
  assert.equal(typeof session.expires_at, 'number', `${what}: expires_at`)
  assert.ok(session.user && typeof session.user.id === 'string', `${what}: user.id`)
}

function b64urlDecode(s) {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
}

/** Decodes a JWT and verifies its HS256 signature with FERROTRUE_JWT_SECRET. */
export function decodeAndVerifyJwt(token) {
  const [h, p, s] = token.split('.')
  const header = JSON.parse(b64urlDecode(h).toString('utf8'))
  const payload = JSON.parse(b64urlDecode(p).toString('utf8'))
  assert.equal(header.alg, 'HS256', 'access token alg')
  assert.ok(JWT_SECRET, 'FERROTRUE_JWT_SECRET not set')
  const expected = createHmac('sha256', JWT_SECRET).update(`${h}.${p}`).digest()
  assert.ok(expected.equals(b64urlDecode(s)), 'access token signature does not verify with the configured secret')
  return { header, payload }
}

/** Signs up a fresh e-mail user through a throwaway client; returns its data. */
export async function createEmailUser() {
  const email = randomEmail()
  const password = randomPassword()
  const { client } = makeClient()
  const { data, error } = await client.signUp({ email, password })
  assertNoError(error, 'signUp (setup)')
  assertSession(data.session, 'signUp (setup)')
  return { email, password, user: data.user, session: data.session }
}
