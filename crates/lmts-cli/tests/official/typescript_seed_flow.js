// The seed document's flow with the published TypeScript SDK (@limitless-exchange/sdk),
// unmodified, against an lmts server: capabilities, derive, list, revoke, refusal.
const { Client, ScopeTrading } = require('@limitless-exchange/sdk');

async function main() {
  const baseURL = process.env.LMTS_BASE_URL;
  const identityToken = process.env.LMTS_IDENTITY_TOKEN;

  const client = new Client({ baseURL });
  const capabilities = await client.apiTokens.getCapabilities(identityToken);
  if (!capabilities.tokenManagementEnabled || capabilities.allowedScopes.join() !== 'trading') {
    throw new Error(`unexpected capabilities ${JSON.stringify(capabilities)}`);
  }
  const derived = await client.apiTokens.deriveToken(identityToken, {
    label: 'typescript-bot',
    scopes: [ScopeTrading],
  });
  if (derived.apiKey !== derived.tokenId || derived.scopes.join() !== 'trading') {
    throw new Error(`unexpected derive answer for ${derived.tokenId}`);
  }
  console.log('derived', derived.tokenId);

  const scopedClient = new Client({
    baseURL,
    hmacCredentials: { tokenId: derived.tokenId, secret: derived.secret },
  });
  const tokens = await scopedClient.apiTokens.listTokens();
  const mine = tokens.filter((token) => token.tokenId === derived.tokenId);
  if (mine.length !== 1 || mine[0].label !== 'typescript-bot') {
    throw new Error(`token not listed: ${JSON.stringify(tokens)}`);
  }
  console.log('listed', tokens.length);
  const message = await scopedClient.apiTokens.revokeToken(derived.tokenId);
  console.log('revoked:', message);
  try {
    await scopedClient.apiTokens.listTokens();
  } catch (error) {
    console.log('refused after revoke:', error.constructor.name);
    console.log('OK');
    return;
  }
  throw new Error('revoked credentials were NOT refused');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
