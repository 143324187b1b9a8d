// A real OpenID Connect provider for the compat suite: two oauth2-mock-server instances.
//
//   node oidc-provider.mjs <generic-port> <keycloak-port>
//
// * generic:  issuer http://127.0.0.1:<generic-port> (default endpoints: /authorize, /token,
//             /userinfo, /jwks, /.well-known/openid-configuration)
// * keycloak: issuer http://127.0.0.1:<keycloak-port>/realms/ferrotrue with Keycloak's paths
//             (/protocol/openid-connect/{auth,token,userinfo,certs}). Its discovery document
//             repeats the realm in each URL (the mock joins issuer and path); ferrotrue's
//             Keycloak provider uses the fixed paths, as GoTrue's does, so nothing reads it.
//
// oauth2-mock-server approves every /authorize at once and signs RS256 tokens with a fresh key.
// The hooks below give it users: the `login_hint` an app passes through ferrotrue's /authorize
// (auth-js `queryParams`) becomes the signed-in user's email, so each test signs in as someone
// new. The password grant (`username` = email) mints id_tokens for signInWithIdToken; a `nonce`
// in that request is copied into the id_token as given (apps pass the SHA-256 hex, as native
// Google/Apple SDKs do).

import { OAuth2Server } from 'oauth2-mock-server'

const [genericPort, keycloakPort] = process.argv.slice(2).map(Number)
if (!genericPort || !keycloakPort) {
  console.error('usage: node oidc-provider.mjs <generic-port> <keycloak-port>')
  process.exit(2)
}

/** A stable subject for an email address. */
function subjectOf(email) {
  return 'user-' + Buffer.from(email).toString('base64url')
}

function claimsFor(email) {
  const local = email.split('@')[0]
  return { sub: subjectOf(email), email, email_verified: true, name: `User ${local}`, preferred_username: local }
}

async function start(port, issuerPath, endpoints) {
  const server = new OAuth2Server(undefined, undefined, endpoints ? { endpoints } : undefined)
  await server.issuer.keys.generate('RS256')
  server.issuer.url = `http://127.0.0.1:${port}${issuerPath}`
  const byCode = new Map() // authorization code -> email
  const byAccessToken = new Map() // access token -> email
  const service = server.service

  service.on('beforeAuthorizeRedirect', (redirect, req) => {
    const code = redirect.url.searchParams.get('code')
    const hint = new URL(req.url, 'http://x').searchParams.get('login_hint')
    if (code) byCode.set(code, hint || 'johndoe@example.com')
  })
  service.on('beforeTokenSigning', (token, req) => {
    const body = req.body || {}
    const email = body.grant_type === 'password' ? body.username : byCode.get(body.code)
    if (email) Object.assign(token.payload, claimsFor(email))
    if (body.grant_type === 'password' && body.nonce) token.payload.nonce = body.nonce
  })
  service.on('beforeResponse', (response, req) => {
    const body = req.body || {}
    const email = body.grant_type === 'password' ? body.username : byCode.get(body.code)
    if (email && response.body && response.body.access_token) byAccessToken.set(response.body.access_token, email)
    if (body.code) byCode.delete(body.code)
  })
  service.on('beforeUserinfo', (response, req) => {
    const auth = req.headers.authorization || ''
    const email = byAccessToken.get(auth.replace(/^Bearer\s+/i, ''))
    if (email) {
      response.body = claimsFor(email)
    } else {
      response.statusCode = 401
      response.body = { error: 'invalid_token' }
    }
  })
  await server.start(port, '127.0.0.1')
  return server
}

const realm = '/realms/ferrotrue'
const servers = [
  await start(genericPort, '', undefined),
  await start(keycloakPort, realm, {
    wellKnownDocument: `${realm}/.well-known/openid-configuration`,
    authorize: `${realm}/protocol/openid-connect/auth`,
    token: `${realm}/protocol/openid-connect/token`,
    userinfo: `${realm}/protocol/openid-connect/userinfo`,
    jwks: `${realm}/protocol/openid-connect/certs`,
    revoke: `${realm}/protocol/openid-connect/revoke`,
    endSession: `${realm}/protocol/openid-connect/logout`,
    introspect: `${realm}/protocol/openid-connect/token/introspect`,
  }),
]
console.log(`oidc-provider: ${servers.map((s) => s.issuer.url).join(' ')}`)

const stop = async () => {
  await Promise.allSettled(servers.map((s) => s.stop()))
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
