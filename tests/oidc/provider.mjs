// The OpenID Connect provider the tests sign in against: oidc-provider (certified), with its
// development interactions (login, consent) that the tests drive over HTTP.
//
// Environment: OIDC_PORT (loopback port), OIDC_CLIENTS (JSON list of client metadata),
// OIDC_ACCOUNTS (JSON object: login -> claims; other logins get <login>@acme.test, verified).
// Prints "listening <issuer>" once it accepts connections.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.OIDC_CLIENTS);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signing] },
  cookies: { keys: ['cloison-tests-only'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    const claims = accounts[id] || { email: `${id}@acme.test`, email_verified: true, name: id };
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
