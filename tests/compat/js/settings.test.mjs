// Flow 10: GET /settings and GET /health.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { raw } from './lib.mjs'

test('GET /settings reflects the configuration', async () => {
  const res = await raw('GET', '/settings')
  assert.equal(res.status, 200, res.text)
  assert.match(res.headers.get('content-type') || '', /application\/json/)
  const s = res.body
  assert.ok(s && typeof s.external === 'object', `settings: ${res.text}`)
  assert.equal(s.external.email, true)
  assert.equal(s.external.phone, true, 'GOTRUE_EXTERNAL_PHONE_ENABLED=true')
  assert.equal(s.external.google, false, 'unconfigured providers are false')
  assert.equal(s.mailer_autoconfirm, true, 'GOTRUE_MAILER_AUTOCONFIRM=true')
  assert.equal(s.phone_autoconfirm, true, 'GOTRUE_SMS_AUTOCONFIRM=true')
  assert.equal(s.disable_signup, false)
})

test('GET /health identifies as GoTrue', async () => {
  const res = await raw('GET', '/health')
  assert.equal(res.status, 200, res.text)
  assert.match(res.headers.get('content-type') || '', /application\/json/)
  assert.equal(res.body.name, 'GoTrue')
  assert.equal(typeof res.body.version, 'string')
  assert.equal(typeof res.body.description, 'string')
})
