"""The published Python SDK's own HMAC signing (limitless-sdk's HttpClient with
hmac_credentials), unmodified, against `lmts gateway`: a signed order passes to the upstream,
a route its token's scopes do not cover is refused."""

import asyncio
import os
import sys

from limitless_sdk import HMACCredentials
from limitless_sdk.api.http_client import HttpClient


async def main() -> int:
    credentials = HMACCredentials(
        token_id=os.environ["LMTS_TOKEN_ID"], secret=os.environ["LMTS_SECRET"]
    )
    client = HttpClient(base_url=os.environ["LMTS_GATEWAY_URL"], hmac_credentials=credentials)
    try:
        order = {"market": "btc-usd", "side": "buy", "size": "0.5"}
        echoed = await client.post("/orders", order)
        assert echoed == order, echoed
        print("order passed")
        try:
            await client.post("/portfolio/withdraw", {"amount": "1"})
        except Exception as error:  # the SDK's authentication error for a 403
            print("withdraw refused:", type(error).__name__, error)
        else:
            print("withdraw was not refused")
            return 1
    finally:
        await client.close()
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
