// A UAA-like token endpoint built on oidc-provider (a spec-compliant OAuth 2.0 server we did not write):
// client_credentials with HTTP Basic client authentication at /oauth/token, JWT access tokens carrying
// pks.clusters.admin. Configured by environment: PORT, KEY, CERT, CLIENT_ID, CLIENT_SECRET.
// Prints one JSON line {"ready":true,"port":N} once listening. oidc-provider: https://github.com/panva/node-oidc-provider;
// how the tests use it: docs/development.md (Tests).
import fs from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const scope = 'pks.clusters.admin';

const provider = new Provider(`https://127.0.0.1:${port}`, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope,
  }],
  scopes: [scope],
  routes: { token: '/oauth/token' },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:repave:tkgi',
      getResourceServerInfo: () => ({ scope, audience: 'tkgi', accessTokenFormat: 'jwt', accessTokenTTL: 300 }),
    },
  },
});

https
  .createServer({ key: fs.readFileSync(process.env.KEY), cert: fs.readFileSync(process.env.CERT) }, provider.callback())
  .listen(port, '127.0.0.1', () => console.log(JSON.stringify({ ready: true, port })));
