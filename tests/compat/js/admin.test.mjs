// Admin API through auth-js's GoTrueAdminApi (SPEC §1.18, §1.19, §2.3, Appendix B admin bullets):
// createUser, listUsers pagination (nextPage / lastPage / total derived from the headers),
// getUserById, updateUserById, deleteUser (hard and soft), generateLink, inviteUserByEmail,
// mfa.listFactors, and signOut(jwt).
//
// The server at FERROTRUE_URL is shared with the other suites, so listing assertions only
// rely on what this file created (found by walking pages) and on the response's own headers.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac, randomUUID } from 'node:crypto'
import { GoTrueAdminApi } from '@supabase/auth-js'
import {
  JWT_SECRET,
  URL_BASE,
  assertApiError,
  assertNoError,
  assertSession,
  createEmailUser,
  makeClient,
  randomEmail,
  randomPassword,
  randomPhoneDigits,
  raw,
  rawRefresh,
} from './lib.mjs'

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
}

/** An HS256 JWT with the given claims, signed with FERROTRUE_JWT_SECRET (as Supabase API keys are). */
function signJwt(claims) {
  assert.ok(JWT_SECRET, 'FERROTRUE_JWT_SECRET not set')
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const payload = b64url(JSON.stringify(claims))
  const sig = b64url(createHmac('sha256', JWT_SECRET).update(`${header}.${payload}`).digest())
  return `${header}.${payload}.${sig}`
}

function serviceRoleJwt() {
  const now = Math.floor(Date.now() / 1000)
  return signJwt({ role: 'service_role', iss: 'supabase', iat: now, exp: now + 3600 })
}

function makeAdmin(token = serviceRoleJwt()) {
  return new GoTrueAdminApi({ url: URL_BASE, headers: { Authorization: `Bearer ${token}` } })
}

/** Asserts an auth-js AuthApiError with the given status and code. */
function assertAuthError(error, status, code, what) {
  assert.ok(error, `${what}: expected an error`)
  assert.equal(error.status, status, `${what}: status (${error.message})`)
  assert.equal(error.code, code, `${what}: code (${error.message})`)
}

async function createConfirmed(admin, extra = {}) {
  const email = randomEmail()
  const password = randomPassword()
  const { data, error } = await admin.createUser({ email, password, email_confirm: true, ...extra })
  assertNoError(error, 'createUser')
  return { email, password, user: data.user }
}

async function signIn(email, password) {
  const { client } = makeClient()
  return client.signInWithPassword({ email, password })
}

test('createUser: confirmed email user with metadata; getUserById; the password signs in', async () => {
  const admin = makeAdmin()
  const email = randomEmail()
  const password = randomPassword()
  const { data, error } = await admin.createUser({
    email,
    password,
    email_confirm: true,
    user_metadata: { full_name: 'Ada Admin' },
    app_metadata: { plan: 'pro' },
  })
  assertNoError(error, 'createUser')
  const user = data.user
  assert.equal(typeof user.id, 'string')
  assert.equal(user.email, email)
  assert.equal(user.aud, 'authenticated')
  assert.equal(user.role, 'authenticated')
  assert.equal(typeof user.email_confirmed_at, 'string')
  assert.equal(user.user_metadata.full_name, 'Ada Admin')
  assert.equal(user.app_metadata.plan, 'pro')
  assert.equal(user.app_metadata.provider, 'email')
  assert.deepEqual(user.app_metadata.providers, ['email'])
  assert.equal(user.identities.length, 1)
  assert.equal(user.identities[0].provider, 'email')

  const fetched = await admin.getUserById(user.id)
  assertNoError(fetched.error, 'getUserById')
  assert.equal(fetched.data.user.id, user.id)
  assert.equal(fetched.data.user.email, email)

  const signedIn = await signIn(email, password)
  assertNoError(signedIn.error, 'signInWithPassword as the created user')
  assertSession(signedIn.data.session, 'signInWithPassword')
  assert.equal(signedIn.data.user.id, user.id)
})

test('createUser: phone user, duplicates and missing address are API errors', async () => {
  const admin = makeAdmin()
  const phone = randomPhoneDigits()
  const { data, error } = await admin.createUser({
    phone: `+${phone}`,
    password: randomPassword(),
    phone_confirm: true,
  })
  assertNoError(error, 'createUser phone')
  assert.equal(data.user.phone, phone)
  assert.equal(typeof data.user.phone_confirmed_at, 'string')
  assert.equal(data.user.app_metadata.provider, 'phone')

  const dupPhone = await admin.createUser({ phone })
  assertAuthError(dupPhone.error, 422, 'phone_exists', 'duplicate phone')
  assert.equal(dupPhone.data.user, null)

  const { email } = await createConfirmed(admin)
  const dupEmail = await admin.createUser({ email: email.toUpperCase() })
  assertAuthError(dupEmail.error, 422, 'email_exists', 'duplicate email')

  const nothing = await admin.createUser({ password: randomPassword() })
  assertAuthError(nothing.error, 400, 'validation_failed', 'no email or phone')

  const weak = await admin.createUser({ email: randomEmail(), password: 'abc' })
  assertAuthError(weak.error, 422, 'weak_password', 'weak password')

  const missing = await admin.getUserById(randomUUID())
  assertAuthError(missing.error, 404, 'user_not_found', 'getUserById unknown')
  assert.equal(missing.data.user, null)
})

test('listUsers: several pages; nextPage / lastPage / total from the headers; newest first', async () => {
  const admin = makeAdmin()
  const mine = []
  for (let i = 0; i < 6; i++) {
    const { user } = await createConfirmed(admin)
    mine.push(user.id)
  }

  const first = await admin.listUsers({ page: 1, perPage: 2 })
  assertNoError(first.error, 'listUsers page 1')
  assert.equal(first.data.aud, 'authenticated')
  assert.equal(first.data.users.length, 2)
  assert.equal(typeof first.data.total, 'number')
  assert.ok(first.data.total >= mine.length, `total ${first.data.total}`)
  assert.equal(first.data.nextPage, 2)
  // auth-js takes the single character after the first '=' of each Link entry (a known client
  // bug for pages >= 10): what it reports is the first digit of the real last page.
  const realLast = Math.ceil(first.data.total / 2)
  assert.equal(first.data.lastPage, Number(String(realLast)[0]), `lastPage for total ${first.data.total}`)

  // The headers auth-js parsed, checked raw: `page` is the first query key.
  const res = await raw('GET', '/admin/users?page=1&per_page=2', { jwt: serviceRoleJwt() })
  assert.equal(res.status, 200)
  const link = res.headers.get('link')
  assert.match(link, /^<[^>]*\?page=2&per_page=2>; rel="next", <[^>]*\?page=\d+&per_page=2>; rel="last"$/)
  assert.ok(Number(res.headers.get('x-total-count')) >= mine.length)

  // Walk pages until every user made here was seen: they are the newest, so they come first
  // (concurrent suites can only push them later, never make a walk skip one).
  const seen = []
  for (let page = 1; page <= 200 && !mine.every((id) => seen.includes(id)); page++) {
    const { data, error } = await admin.listUsers({ page, perPage: 2 })
    assertNoError(error, `listUsers page ${page}`)
    assert.ok(data.users.length > 0, `page ${page} is empty before all users were seen`)
    for (const u of data.users) if (!seen.includes(u.id)) seen.push(u.id)
  }
  const order = seen.filter((id) => mine.includes(id))
  assert.deepEqual(order, [...mine].reverse(), 'newest first')

  // Defaults (auth-js sends page=&per_page=) and a page past the end.
  const all = await admin.listUsers()
  assertNoError(all.error, 'listUsers()')
  assert.ok(all.data.users.length >= Math.min(50, mine.length))
  assert.ok(all.data.users.length <= 50)
  const beyond = await admin.listUsers({ page: 100000, perPage: 50 })
  assertNoError(beyond.error, 'listUsers beyond the end')
  assert.deepEqual(beyond.data.users, [])
  assert.equal(beyond.data.nextPage, null, 'no next page past the end')
})

test('updateUserById: metadata merge, ban_duration bans and "none" unbans', async () => {
  const admin = makeAdmin()
  const { email, password, user } = await createConfirmed(admin, { user_metadata: { a: 1, keep: true } })
  const { client } = makeClient()
  const before = await client.signInWithPassword({ email, password })
  assertNoError(before.error, 'sign in before the ban')

  const merged = await admin.updateUserById(user.id, {
    user_metadata: { a: null, b: 2 },
    app_metadata: { tier: 'gold' },
  })
  assertNoError(merged.error, 'updateUserById metadata')
  // email_confirm: true merged email_verified (GoTrue's Confirm); a: null deleted a.
  assert.deepEqual(merged.data.user.user_metadata, { keep: true, b: 2, email_verified: true })
  assert.equal(merged.data.user.app_metadata.tier, 'gold')
  assert.equal(merged.data.user.app_metadata.provider, 'email')

  const banned = await admin.updateUserById(user.id, { ban_duration: '24h' })
  assertNoError(banned.error, 'ban')
  const until = Date.parse(banned.data.user.banned_until)
  assert.ok(until > Date.now() + 23 * 3600 * 1000, `banned_until ${banned.data.user.banned_until}`)
  const refused = await signIn(email, password)
  assertAuthError(refused.error, 400, 'user_banned', 'sign in while banned')
  const refresh = await rawRefresh(before.data.session.refresh_token)
  assertApiError(refresh, 400, 'user_banned')

  const unbanned = await admin.updateUserById(user.id, { ban_duration: 'none' })
  assertNoError(unbanned.error, 'unban')
  assert.ok(!unbanned.data.user.banned_until, `banned_until after unban: ${unbanned.data.user.banned_until}`)
  const again = await signIn(email, password)
  assertNoError(again.error, 'sign in after unban')

  const bad = await admin.updateUserById(user.id, { ban_duration: 'forever' })
  assertAuthError(bad.error, 400, 'validation_failed', 'bad ban_duration')

  const newPassword = randomPassword()
  const changed = await admin.updateUserById(user.id, { password: newPassword })
  assertNoError(changed.error, 'password change')
  const oldSession = await rawRefresh(again.data.session.refresh_token)
  assertApiError(oldSession, 400, 'refresh_token_not_found')
  assertNoError((await signIn(email, newPassword)).error, 'sign in with the new password')
})

test('deleteUser: hard delete removes the user; soft delete leaves a tombstone', async () => {
  const admin = makeAdmin()
  const { email, password, user } = await createConfirmed(admin)
  const session = (await signIn(email, password)).data.session
  const { error } = await admin.deleteUser(user.id)
  assertNoError(error, 'deleteUser')
  const gone = await admin.getUserById(user.id)
  assertAuthError(gone.error, 404, 'user_not_found', 'getUserById after delete')
  assertApiError(await rawRefresh(session.refresh_token), 400, 'refresh_token_not_found')
  assert.equal((await raw('GET', '/user', { jwt: session.access_token })).status, 403)
  const again = await admin.deleteUser(user.id)
  assertAuthError(again.error, 404, 'user_not_found', 'second deleteUser')

  const soft = await createConfirmed(admin)
  const softSession = (await signIn(soft.email, soft.password)).data.session
  const softDel = await admin.deleteUser(soft.user.id, true)
  assertNoError(softDel.error, 'deleteUser soft')
  const tomb = await admin.getUserById(soft.user.id)
  assertNoError(tomb.error, 'getUserById of a soft-deleted user')
  assert.equal(typeof tomb.data.user.deleted_at, 'string')
  assert.notEqual(tomb.data.user.email, soft.email)
  const afterSoft = await signIn(soft.email, soft.password)
  assertAuthError(afterSoft.error, 400, 'invalid_credentials', 'sign in after soft delete')
  assertApiError(await rawRefresh(softSession.refresh_token), 400, 'refresh_token_not_found')
})

test('generateLink: signup / magiclink properties and user; the link, code and hash verify', async () => {
  const admin = makeAdmin()
  const email = randomEmail()
  const password = randomPassword()
  const redirectTo = 'http://localhost:3000/welcome'
  const { data, error } = await admin.generateLink({
    type: 'signup',
    email,
    password,
    options: { data: { full_name: 'Linked' }, redirectTo },
  })
  assertNoError(error, 'generateLink signup')
  const p = data.properties
  assert.equal(p.verification_type, 'signup')
  assert.equal(p.redirect_to, redirectTo)
  assert.match(p.email_otp, /^\d{6}$/)
  assert.match(p.hashed_token, /^[0-9a-f]{56}$/)
  assert.ok(p.action_link.startsWith(`${URL_BASE}/verify?`), p.action_link)
  assert.ok(p.action_link.includes(`token=${p.hashed_token}`), p.action_link)
  assert.ok(p.action_link.includes('type=signup'), p.action_link)
  assert.equal(data.user.email, email)
  assert.equal(data.user.user_metadata.full_name, 'Linked')
  assert.ok(!data.user.email_confirmed_at, 'not confirmed until the link is used')
  assert.equal(data.user.action_link, undefined, 'the link properties are split off the user')

  // The action link: 303 to the redirect with a session in the fragment.
  const res = await fetch(p.action_link, { redirect: 'manual' })
  assert.equal(res.status, 303)
  const location = res.headers.get('location')
  assert.ok(location.startsWith(`${redirectTo}#access_token=`), location)
  assertNoError((await signIn(email, password)).error, 'sign in after the signup link')

  // The OTP through verifyOtp (email + token).
  const otpUser = randomEmail()
  const otpLink = await admin.generateLink({ type: 'signup', email: otpUser, password: randomPassword() })
  assertNoError(otpLink.error, 'generateLink signup (otp)')
  const { client } = makeClient()
  const verified = await client.verifyOtp({ email: otpUser, token: otpLink.data.properties.email_otp, type: 'signup' })
  assertNoError(verified.error, 'verifyOtp with email_otp')
  assertSession(verified.data.session, 'verifyOtp with email_otp')
  assert.equal(verified.data.user.id, otpLink.data.user.id)

  // Magic link for an existing user; its hashed token through verifyOtp (token_hash).
  const existing = await createConfirmed(admin)
  const magic = await admin.generateLink({ type: 'magiclink', email: existing.email })
  assertNoError(magic.error, 'generateLink magiclink')
  assert.equal(magic.data.properties.verification_type, 'magiclink')
  assert.equal(magic.data.user.id, existing.user.id)
  const byHash = await makeClient().client.verifyOtp({
    token_hash: magic.data.properties.hashed_token,
    type: 'magiclink',
  })
  assertNoError(byHash.error, 'verifyOtp with token_hash')
  assert.equal(byHash.data.user.id, existing.user.id)

  // Magic link for an unknown address becomes a sign-up; recovery for one is 404.
  const unknown = await admin.generateLink({ type: 'magiclink', email: randomEmail() })
  assertNoError(unknown.error, 'generateLink magiclink (unknown)')
  assert.equal(unknown.data.properties.verification_type, 'signup')
  const recovery = await admin.generateLink({ type: 'recovery', email: randomEmail() })
  assertAuthError(recovery.error, 404, 'user_not_found', 'recovery for an unknown address')
  assert.equal(recovery.data.properties, null)

  // Recovery for the existing user verifies with its code.
  const rec = await admin.generateLink({ type: 'recovery', email: existing.email })
  assertNoError(rec.error, 'generateLink recovery')
  assert.equal(rec.data.properties.verification_type, 'recovery')
  const recovered = await makeClient().client.verifyOtp({
    email: existing.email,
    token: rec.data.properties.email_otp,
    type: 'recovery',
  })
  assertNoError(recovered.error, 'verifyOtp recovery')

  // Signup for a confirmed address is refused.
  const taken = await admin.generateLink({ type: 'signup', email: existing.email, password: randomPassword() })
  assertAuthError(taken.error, 422, 'email_exists', 'signup link for a confirmed user')
})

test('generateLink: email change types answer with the requested verification_type', async () => {
  // GoTrue echoes the requested type (email_change_current / email_change_new); only the
  // link's type= is email_change.
  const admin = makeAdmin()
  const existing = await createConfirmed(admin)
  for (const type of ['email_change_current', 'email_change_new']) {
    const newEmail = randomEmail()
    const { data, error } = await admin.generateLink({ type, email: existing.email, newEmail })
    assertNoError(error, `generateLink ${type}`)
    assert.equal(data.user.new_email, newEmail, `${type}: new_email`)
    assert.ok(data.properties.action_link.includes('type=email_change'), data.properties.action_link)
    assert.equal(data.properties.verification_type, type, `${type}: verification_type`)
  }
})

test('inviteUserByEmail: succeeds without SMTP and returns the invited user', async () => {
  const admin = makeAdmin()
  const email = randomEmail()
  const { data, error } = await admin.inviteUserByEmail(email, { data: { team: 'blue' } })
  assertNoError(error, 'inviteUserByEmail')
  assert.equal(data.user.email, email)
  assert.equal(typeof data.user.invited_at, 'string')
  assert.equal(data.user.user_metadata.team, 'blue')
  assert.ok(!data.user.email_confirmed_at, 'an invited user is not confirmed yet')
  const fetched = await admin.getUserById(data.user.id)
  assertNoError(fetched.error, 'getUserById of the invited user')
  assert.equal(fetched.data.user.email, email)

  const { email: confirmed } = await createConfirmed(admin)
  const refused = await admin.inviteUserByEmail(confirmed)
  assertAuthError(refused.error, 422, 'email_exists', 'invite of a confirmed user')
})

test('mfa.listFactors: no factors; unknown user is 404', async () => {
  const admin = makeAdmin()
  const { user } = await createConfirmed(admin)
  const { data, error } = await admin.mfa.listFactors({ userId: user.id })
  assertNoError(error, 'mfa.listFactors')
  assert.deepEqual(data.factors, [])
  const unknown = await admin.mfa.listFactors({ userId: randomUUID() })
  assertAuthError(unknown.error, 404, 'user_not_found', 'listFactors of an unknown user')
  const del = await admin.mfa.deleteFactor({ userId: user.id, id: randomUUID() })
  assertAuthError(del.error, 404, 'mfa_factor_not_found', 'deleteFactor of an unknown factor')
})

test('signOut(jwt) ends the user session; its refresh token stops working', async () => {
  const admin = makeAdmin()
  const { session } = await createEmailUser()
  const { error } = await admin.signOut(session.access_token)
  assertNoError(error, 'admin.signOut')
  assertApiError(await rawRefresh(session.refresh_token), 400, 'refresh_token_not_found')
  assertApiError(await raw('GET', '/user', { jwt: session.access_token }), 403, 'session_not_found')
})

test('admin calls need an admin token', async () => {
  const none = new GoTrueAdminApi({ url: URL_BASE, headers: {} })
  const r1 = await none.listUsers()
  assertAuthError(r1.error, 401, 'no_authorization', 'listUsers without a token')

  const { session } = await createEmailUser()
  const asUser = makeAdmin(session.access_token)
  assertAuthError((await asUser.listUsers()).error, 403, 'not_admin', 'listUsers with a user token')
  const anon = makeAdmin(signJwt({ role: 'anon', iss: 'supabase' }))
  assertAuthError((await anon.createUser({ email: randomEmail() })).error, 403, 'not_admin', 'createUser as anon')
  const now = Math.floor(Date.now() / 1000)
  const expired = makeAdmin(signJwt({ role: 'service_role', iat: now - 7200, exp: now - 3600 }))
  assertAuthError((await expired.listUsers()).error, 403, 'bad_jwt', 'listUsers with an expired token')
})
