"""The seed document's flow with the published Python SDK (limitless-sdk), unmodified,
against an lmts server: capabilities, derive, list, revoke, and the refusal afterwards."""

import asyncio
import os
import sys

from limitless_sdk import (
    Client,
    DeriveApiTokenInput,
    HMACCredentials,
    ScopeTrading,
)


async def main() -> int:
    base_url = os.environ["LMTS_BASE_URL"]
    identity_token = os.environ["LMTS_IDENTITY_TOKEN"]

    async with Client(base_url=base_url) as client:
        capabilities = await client.api_tokens.get_capabilities(identity_token)
        assert capabilities.token_management_enabled, capabilities
        assert capabilities.allowed_scopes == ["trading"], capabilities
        derived = await client.api_tokens.derive_token(
            identity_token,
            DeriveApiTokenInput(label="python-bot", scopes=[ScopeTrading]),
        )
        assert derived.api_key == derived.token_id, derived
        assert derived.scopes == ["trading"], derived
        print("derived", derived.token_id)

    credentials = HMACCredentials(token_id=derived.token_id, secret=derived.secret)
    async with Client(base_url=base_url, hmac_credentials=credentials) as scoped:
        tokens = await scoped.api_tokens.list_tokens()
        mine = [t for t in tokens if t.token_id == derived.token_id]
        assert len(mine) == 1 and mine[0].label == "python-bot", tokens
        print("listed", len(tokens))
        message = await scoped.api_tokens.revoke_token(derived.token_id)
        print("revoked:", message)
        try:
            await scoped.api_tokens.list_tokens()
        except Exception as error:  # the SDK's authentication error
            print("refused after revoke:", type(error).__name__)
        else:
            print("revoked credentials were NOT refused")
            return 1
    print("OK")
    return 0


sys.exit(asyncio.run(main()))
