// Helpers for the email-flow tests: the second ferrotrue instance (autoconfirm off, real
// SMTP) and the Maildir the aiosmtpd sink writes to.
//
// tests/compat/run.sh sets FERROTRUE_EMAIL_URL (the email-flow server, whose
// API_EXTERNAL_URL is that same URL) and FERROTRUE_MAILDIR.

import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { GoTrueAdminApi, GoTrueClient } from '@supabase/auth-js'
import { API_VERSION, JWT_SECRET, assertNoError, assertSession, memoryStorage, randomEmail, randomPassword } from './lib.mjs'

export const EMAIL_URL = (process.env.FERROTRUE_EMAIL_URL || '').replace(/\/+$/, '')
export const MAILDIR = process.env.FERROTRUE_MAILDIR || ''
if (!EMAIL_URL || !MAILDIR) {
  throw new Error('FERROTRUE_EMAIL_URL / FERROTRUE_MAILDIR are not set (run the suite through tests/compat/run.sh)')
}

/** GOTRUE_SITE_URL of the email-flow server. */
export const SITE_URL = 'http://localhost:3000'

export const SUBJECTS = {
  confirmation: 'Confirm Your Email',
  magicLink: 'Your Magic Link',
  recovery: 'Reset Your Password',
  invite: 'You have been invited',
  emailChange: 'Confirm Email Change',
  reauthentication: 'Confirm reauthentication',
}

/** A GoTrueClient for the email-flow server with an in-memory storage; records auth events. */
export function makeEmailClient({ flowType = 'implicit' } = {}) {
  const storage = memoryStorage()
  const client = new GoTrueClient({
    url: EMAIL_URL,
    persistSession: true,
    storage,
    autoRefreshToken: false,
    flowType,
  })
  const events = []
  client.onAuthStateChange((event, session) => {
    events.push({ event, session })
  })
  return { client, storage, events }
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
}

/** An HS256 service_role JWT as Supabase issues them (anon/service keys). */
export function serviceRoleJwt() {
  assert.ok(JWT_SECRET, 'FERROTRUE_JWT_SECRET not set')
  const now = Math.floor(Date.now() / 1000)
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const payload = b64url(JSON.stringify({ role: 'service_role', iss: 'supabase', iat: now, exp: now + 3600 }))
  const sig = b64url(createHmac('sha256', JWT_SECRET).update(`${header}.${payload}`).digest())
  return `${header}.${payload}.${sig}`
}

/** GoTrueAdminApi authorised with a service_role JWT, against the email-flow server. */
export function makeAdmin() {
  return new GoTrueAdminApi({ url: EMAIL_URL, headers: { Authorization: `Bearer ${serviceRoleJwt()}` } })
}

/**
 * GET an absolute URL without following redirects.
 * Returns {status, location, text}.
 */
export async function getNoFollow(url) {
  const res = await fetch(url, { method: 'GET', redirect: 'manual' })
  const text = await res.text()
  return { status: res.status, location: res.headers.get('location'), text }
}

/** Raw JSON call against the email-flow server. Returns {status, headers, text, body}. */
export async function rawEmail(method, path, { body, jwt } = {}) {
  const h = { 'X-Supabase-Api-Version': API_VERSION }
  if (jwt) h['Authorization'] = `Bearer ${jwt}`
  if (body !== undefined) h['Content-Type'] = 'application/json;charset=UTF-8'
  const res = await fetch(EMAIL_URL + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    redirect: 'manual',
  })
  const text = await res.text()
  let parsed = null
  try {
    parsed = text ? JSON.parse(text) : null
  } catch {
    parsed = null
  }
  return { status: res.status, headers: res.headers, text, body: parsed }
}

/** Splits a redirect Location into {base, query, fragment} (both as URLSearchParams). */
export function splitLocation(location) {
  assert.ok(location, 'redirect has no Location header')
  const hashAt = location.indexOf('#')
  const beforeHash = hashAt >= 0 ? location.slice(0, hashAt) : location
  const fragment = new URLSearchParams(hashAt >= 0 ? location.slice(hashAt + 1) : '')
  const qAt = beforeHash.indexOf('?')
  const base = qAt >= 0 ? beforeHash.slice(0, qAt) : beforeHash
  const query = new URLSearchParams(qAt >= 0 ? beforeHash.slice(qAt + 1) : '')
  return { base, query, fragment }
}

// ---- MIME parsing -------------------------------------------------------------

function splitHeaderBody(text) {
  const m = /\r?\n\r?\n/.exec(text)
  if (!m) return [text, '']
  return [text.slice(0, m.index), text.slice(m.index + m[0].length)]
}

function decodeEncodedWords(value) {
  return value.replace(/=\?([^?]+)\?([bBqQ])\?([^?]*)\?=/g, (_, charset, enc, data) => {
    const buf =
      enc.toUpperCase() === 'B'
        ? Buffer.from(data, 'base64')
        : Buffer.from(
            data.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (__, h) => String.fromCharCode(parseInt(h, 16))),
            'latin1',
          )
    return new TextDecoder(charset.toLowerCase()).decode(buf)
  })
}

function parseHeaders(block) {
  const headers = new Map()
  const unfolded = block.replace(/\r?\n[ \t]+/g, ' ')
  for (const line of unfolded.split(/\r?\n/)) {
    const i = line.indexOf(':')
    if (i <= 0) continue
    const name = line.slice(0, i).trim().toLowerCase()
    const value = decodeEncodedWords(line.slice(i + 1).trim())
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value)
  }
  return headers
}

function headerParam(value, param) {
  const m = new RegExp(`;\\s*${param}="?([^";]+)"?`, 'i').exec(value || '')
  return m ? m[1] : null
}

function decodeTransfer(body, encoding, charset) {
  const enc = (encoding || '7bit').toLowerCase()
  let buf
  if (enc === 'base64') {
    buf = Buffer.from(body.replace(/\s+/g, ''), 'base64')
  } else if (enc === 'quoted-printable') {
    const soft = body.replace(/=\r?\n/g, '')
    const bytes = []
    for (let i = 0; i < soft.length; i++) {
      const c = soft[i]
      if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(soft.slice(i + 1, i + 3))) {
        bytes.push(parseInt(soft.slice(i + 1, i + 3), 16))
        i += 2
      } else {
        for (const b of Buffer.from(c, 'utf8')) bytes.push(b)
      }
    }
    buf = Buffer.from(bytes)
  } else {
    buf = Buffer.from(body, 'utf8')
  }
  return new TextDecoder((charset || 'utf-8').toLowerCase()).decode(buf)
}

/** Returns the decoded text/html part (or text/plain, or the first part) of a MIME entity. */
function bodyOf(headers, rawBody) {
  const ctype = headers.get('content-type') || 'text/plain'
  if (/^multipart\//i.test(ctype)) {
    const boundary = headerParam(ctype, 'boundary')
    assert.ok(boundary, `multipart without boundary: ${ctype}`)
    const parts = rawBody
      .split(`--${boundary}`)
      .slice(1)
      .filter((p) => !p.startsWith('--'))
      .map((p) => {
        const [hb, bb] = splitHeaderBody(p.replace(/^\r?\n/, ''))
        return { headers: parseHeaders(hb), body: bb }
      })
    const pick =
      parts.find((p) => /^text\/html/i.test(p.headers.get('content-type') || '')) ||
      parts.find((p) => /^text\/plain/i.test(p.headers.get('content-type') || '')) ||
      parts[0]
    assert.ok(pick, 'multipart message without parts')
    return bodyOf(pick.headers, pick.body)
  }
  return decodeTransfer(rawBody, headers.get('content-transfer-encoding'), headerParam(ctype, 'charset'))
}

function htmlUnescape(s) {
  return s
    .replace(/&amp;/g, '&')
    .replace(/&#43;/g, '+')
    .replace(/&#x2B;/gi, '+')
    .replace(/&#61;/g, '=')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
}

/** Parses one stored message: {file, headers, subject, from, to, rcptTo, html, link, code}. */
export function parseMail(text, file = '') {
  const [hb, rawBody] = splitHeaderBody(text)
  const headers = parseHeaders(hb)
  const html = bodyOf(headers, rawBody)
  const href = /href\s*=\s*"([^"]+)"/i.exec(html) || /href\s*=\s*'([^']+)'/i.exec(html)
  const code = /code[^0-9<]{0,40}?\b(\d{6,10})\b/i.exec(html)
  return {
    file,
    headers,
    subject: headers.get('subject') || '',
    from: headers.get('from') || '',
    to: headers.get('to') || '',
    rcptTo: headers.get('x-rcptto') || '',
    html,
    link: href ? htmlUnescape(href[1]) : null,
    code: code ? code[1] : null,
  }
}

const cache = new Map() // file name -> parsed mail

function orderKey(name, mtimeMs) {
  // Python's mailbox.Maildir names files "<sec>.M<usec>P<pid>Q<n>.<host>".
  const m = /^(\d+)\.M(\d+)P\d+Q(\d+)/.exec(name)
  return m ? [Number(m[1]) * 1e6 + Number(m[2]), Number(m[3])] : [mtimeMs * 1e3, 0]
}

function addressedTo(mail, address) {
  const a = address.toLowerCase()
  const inList = (v) =>
    v
      .toLowerCase()
      .split(',')
      .some((x) => x.trim() === a || x.includes(`<${a}>`))
  return inList(mail.to) || inList(mail.rcptTo)
}

/** All stored messages addressed to `address`, oldest first (optionally only one subject). */
export async function mailsTo(address, { subject } = {}) {
  const out = []
  for (const sub of ['new', 'cur']) {
    const dir = join(MAILDIR, sub)
    let names
    try {
      names = await readdir(dir)
    } catch {
      continue
    }
    for (const name of names) {
      const key = `${sub}/${name}`
      if (!cache.has(key)) {
        const path = join(dir, name)
        const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path)])
        const mail = parseMail(text, key)
        mail.order = orderKey(name, st.mtimeMs)
        cache.set(key, mail)
      }
      const mail = cache.get(key)
      if (addressedTo(mail, address) && (!subject || mail.subject === subject)) out.push(mail)
    }
  }
  out.sort((x, y) => x.order[0] - y.order[0] || x.order[1] - y.order[1])
  return out
}

/**
 * Waits (up to `timeout` ms) until more than `after` messages (of `subject`, if given) are
 * addressed to `address`; returns the newest.
 */
export async function waitForMail(address, { subject, after = 0, timeout = 5000 } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const mails = await mailsTo(address, { subject })
    if (mails.length > after) return mails[mails.length - 1]
    if (Date.now() > deadline) {
      const all = await mailsTo(address)
      assert.fail(
        `no ${subject ? `"${subject}" ` : ''}mail #${after + 1} to ${address} within ${timeout} ms ` +
          `(mails to that address: ${JSON.stringify(all.map((m) => m.subject))})`,
      )
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Asserts that, after `ms` milliseconds, no more than `count` messages went to `address`. */
export async function assertNoMail(address, { count = 0, ms = 500 } = {}) {
  await new Promise((r) => setTimeout(r, ms))
  const mails = await mailsTo(address)
  assert.equal(
    mails.length,
    count,
    `unexpected mail to ${address}: ${JSON.stringify(mails.map((m) => m.subject))}`,
  )
}

/**
 * Asserts the mail is one of ours: subject, From, a verify link on API_EXTERNAL_URL with the
 * given type, and a 6-digit code. Returns {url, token, type, redirectTo, code}.
 */
export function assertAuthMail(mail, { subject, type, redirectTo = SITE_URL }) {
  assert.equal(mail.subject, subject, 'mail subject')
  assert.match(mail.from, /auth@example\.com/, 'From is GOTRUE_SMTP_ADMIN_EMAIL')
  assert.match(mail.code || '', /^\d{6}$/, `no 6-digit code in the mail: ${mail.html}`)
  assert.ok(mail.html.includes(`Or enter this code: ${mail.code}`), `code text: ${mail.html}`)
  assert.ok(mail.link, `no href in the mail: ${mail.html}`)
  assert.ok(
    mail.link.startsWith(`${EMAIL_URL}/verify?`),
    `link must point at API_EXTERNAL_URL/verify: ${mail.link}`,
  )
  const url = new URL(mail.link)
  const token = url.searchParams.get('token')
  assert.match(token || '', /^(pkce_)?[0-9a-f]{56}$/, `token is a (pkce_-prefixed) hex SHA-224: ${mail.link}`)
  assert.equal(url.searchParams.get('type'), type, `link type: ${mail.link}`)
  assert.equal(url.searchParams.get('redirect_to'), redirectTo, `link redirect_to: ${mail.link}`)
  return { url, token, type, redirectTo, code: mail.code }
}

// ---- users ---------------------------------------------------------------------

/**
 * Signs up on the email-flow server and confirms with the mailed code through `client`
 * (a fresh implicit client if omitted). Returns {email, password, user, session, client, events}.
 */
export async function createConfirmedUser(made = makeEmailClient()) {
  const { client } = made
  const email = randomEmail()
  const password = randomPassword()
  const signup = await client.signUp({ email, password })
  assertNoError(signup.error, 'signUp (setup)')
  assert.equal(signup.data.session, null, 'signUp without autoconfirm must not return a session')
  const mail = await waitForMail(email, { subject: SUBJECTS.confirmation })
  const verified = await client.verifyOtp({ email, token: mail.code, type: 'signup' })
  assertNoError(verified.error, 'verifyOtp signup (setup)')
  assertSession(verified.data.session, 'verifyOtp signup (setup)')
  return { email, password, user: verified.data.user, session: verified.data.session, ...made }
}
