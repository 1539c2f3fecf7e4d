#!/usr/bin/env python3
"""OpenAI Inference Proxy - conversation analysis example (Python).

Creates a reusable analysis configuration, classifies the intent of a stored conversation, shows the
cache at work, then runs sentiment (inline configuration) and urgency (by response id) analyses.

    pip install httpx        (or Debian's python3-httpx)
    PROXY_JWT_TOKEN=... SAMPLE_REQUEST_ID=req_... python3 examples/analysis_client.py

Environment:
    PROXY_BASE_URL      the proxy (default http://localhost:8000)
    PROXY_JWT_TOKEN     a token from `openai-proxy jwt create --org-id <org-id>` (required)
    USER_ID             sent as X-User-ID (default user@example.com)
    SAMPLE_REQUEST_ID   a stored exchange (req_...) to analyse; when neither id is set the example makes one
    SAMPLE_RESPONSE_ID  its response id (resp_...); when unset, read from the stored exchange
    PROXY_MODEL         the model for the sample conversation (default gpt-4o-mini)
    ANALYSIS_MODEL      the model that analyses (default gpt-4o-mini)

Exits with code 1 on anything unexpected.
"""

import asyncio
import json
import os
import sys
from typing import Any, Dict, Optional, Tuple

import httpx

BASE_URL = os.environ.get("PROXY_BASE_URL") or "http://localhost:8000"
JWT_TOKEN = os.environ.get("PROXY_JWT_TOKEN") or ""
USER_ID = os.environ.get("USER_ID") or "user@example.com"
MODEL = os.environ.get("PROXY_MODEL") or "gpt-4o-mini"
ANALYSIS_MODEL = os.environ.get("ANALYSIS_MODEL") or "gpt-4o-mini"

INTENT_CONFIG = {
    "name": "Customer Support Intent Classifier",
    "analysis_type": "intent",
    "categories": [
        {"name": "technical_support", "description": "Problems using the product: errors, crashes, things not working"},
        {"name": "billing_inquiry", "description": "Invoices, charges, refunds, payment methods"},
        {"name": "feature_request", "description": "Asking for something the product does not do yet"},
        {"name": "account_management", "description": "Log-in, passwords, profile and account settings"},
        {"name": "general_inquiry", "description": "Anything else"},
    ],
    "instructions": "Classify what the customer needs from the support team.",
    "model": ANALYSIS_MODEL,
    "include_metadata": True,
}


class ProxyError(Exception):
    """A call the proxy refused, with its OpenAI-style error envelope."""

    def __init__(self, status: int, body: Any):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.type = error.get("type") or "unknown"
        self.code = error.get("code")
        super().__init__(error.get("message") or f"HTTP {status}")


class AnalysisClient:
    def __init__(self, base_url: str, jwt_token: str, user_id: str):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {jwt_token}", "X-User-ID": user_id, "Accept": "application/json"},
            timeout=120.0,
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, body: Any = None) -> Tuple[Any, httpx.Response]:
        response = await self.http.request(method, path, json=body)
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        if response.status_code >= 400:
            raise ProxyError(response.status_code, data)
        return data, response

    async def create_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        return (await self.request("POST", "/v1/analysis/configs", config))[0]

    async def find_config(self, name: str) -> Optional[Dict[str, Any]]:
        after = None
        while True:
            query = f"?limit=100&after={after}" if after else "?limit=100"
            page = (await self.request("GET", f"/v1/analysis/configs{query}"))[0]
            for config in page["data"]:
                if config["name"] == name:
                    return config
            if not page.get("has_more") or not page.get("last_id"):
                return None
            after = page["last_id"]

    async def analyze(self, body: Dict[str, Any]) -> Dict[str, Any]:
        return (await self.request("POST", "/v1/analysis", body))[0]

    async def get_request(self, request_id: str) -> Dict[str, Any]:
        return (await self.request("GET", f"/v1/requests/{request_id}"))[0]


BAR_WIDTH = 20


def percent(score: float) -> str:
    return f"{score * 100:.2f}%"


def print_result(title: str, result: Dict[str, Any]) -> None:
    print(title)
    print(f"📊 Analysis Type: {result['analysis_type']}")
    print(f"🎯 Primary Category: {result['primary_category']}")
    print(f"💯 Confidence: {percent(result['confidence'])}")
    print(f"💭 Reasoning: {result['reasoning']}")
    print()
    print("📈 All Categories:")
    categories = result["categories"]
    width = max([18] + [len(c["name"]) for c in categories])
    for i, category in enumerate(categories):
        bar = "█" * round(min(1.0, max(0.0, category["score"])) * BAR_WIDTH)
        print(f"   {category['name'].ljust(width)}  {bar.ljust(BAR_WIDTH)} {percent(category['score']).rjust(7)}")
        if i == 0 and category.get("reasoning"):
            print(f"   └─ {category['reasoning']}")
    if result.get("metadata"):
        print()
        print(f"📋 Metadata: {json.dumps(result['metadata'], indent=2, ensure_ascii=False)}")
    print()
    cost = result.get("cost")
    print(f"💰 Cost: {'unknown (no price for this model)' if cost is None else f'${cost:.6f}'}")
    print(f"🔄 Cached: {'Yes' if result['cached'] else 'No'}")
    print(f"🤖 Model: {result['model']}")


async def make_sample_conversation(client: AnalysisClient) -> Tuple[str, str]:
    """A support conversation to analyse, made through the proxy (what your application does anyway)."""
    data, response = await client.request(
        "POST",
        "/v1/responses",
        {
            "model": MODEL,
            "instructions": "You are the support assistant of a photo-sharing app.",
            "input": "The app crashes every time I try to upload a photo, and now it shows \"Error 0x80070005\" on start. "
            "I have a client presentation in two hours and all my pictures are in there. Please help!",
            "max_output_tokens": 300,
        },
    )
    return response.headers.get("x-request-id", ""), data["id"]


async def run(client: AnalysisClient) -> None:
    print("🚀 OpenAI Inference Proxy - Analysis Feature Demo")
    print(f"📍 Server: {BASE_URL}")
    print()

    request_id = os.environ.get("SAMPLE_REQUEST_ID") or ""
    response_id = os.environ.get("SAMPLE_RESPONSE_ID") or ""
    if not request_id and not response_id:
        print("0️⃣ No SAMPLE_REQUEST_ID given: making a sample support conversation through the proxy...")
        request_id, response_id = await make_sample_conversation(client)
        print(f"✅ Request ID: {request_id}")
        print(f"✅ Response ID: {response_id}")
        print()
    elif request_id and not response_id:
        response_id = (await client.get_request(request_id)).get("response_id") or ""
    # the analyses address the conversation by request id, except the last one (by response id)
    by_request = {"request_id": request_id} if request_id else {"response_id": response_id}

    print("1️⃣ Creating Intent Classification Configuration...")
    config = await client.find_config(INTENT_CONFIG["name"])
    if config:
        print(f"✅ Reusing existing config: {config['name']} (ID: {config['id']})")
    else:
        try:
            config = await client.create_config(INTENT_CONFIG)
        except ProxyError as err:
            # made meanwhile by another run
            config = await client.find_config(INTENT_CONFIG["name"]) if err.status == 409 else None
            if not config:
                raise
        print(f"✅ Created config: {config['name']} (ID: {config['id']})")
    print()

    print("2️⃣ Analyzing conversation with saved config...")
    intent = await client.analyze({**by_request, "config_id": config["id"]})
    print_result("Intent Analysis Results", intent)
    print()

    print("3️⃣ Running same analysis again (should be cached)...")
    again = await client.analyze({**by_request, "config_id": config["id"]})
    print(f"✅ Result was cached: {again['cached']}")
    if not again["cached"]:
        raise RuntimeError("the second identical analysis was not served from the cache")
    print()

    print("4️⃣ Analyzing sentiment with inline configuration...")
    sentiment = await client.analyze(
        {**by_request, "config": {"analysis_type": "sentiment", "model": ANALYSIS_MODEL, "include_metadata": False}}
    )
    print_result("Sentiment Analysis Results", sentiment)
    print()

    print("5️⃣ Analyzing urgency using response ID...")
    if response_id:
        urgency = await client.analyze(
            {
                "response_id": response_id,
                "config": {
                    "analysis_type": "urgency",
                    "instructions": "Deadlines and blocked work raise the urgency.",
                    "model": ANALYSIS_MODEL,
                },
            }
        )
        print_result("Urgency Analysis Results", urgency)
    else:
        print("ℹ️  The exchange has no response id (it failed upstream); skipped.")
    print()

    print("✅ All analyses completed successfully!")


async def main() -> int:
    if not JWT_TOKEN:
        print("PROXY_JWT_TOKEN is not set. Create a token with:", file=sys.stderr)
        print("  npm run -s cli -- jwt create --org-id <org-id>", file=sys.stderr)
        return 2
    client = AnalysisClient(BASE_URL, JWT_TOKEN, USER_ID)
    try:
        await run(client)
        return 0
    except ProxyError as err:
        code = f" ({err.code})" if err.code else ""
        print(f"\n❌ API error {err.status} {err.type}{code}: {err}", file=sys.stderr)
        if err.status == 404:
            print("   Does SAMPLE_REQUEST_ID / SAMPLE_RESPONSE_ID belong to this organization?", file=sys.stderr)
        return 1
    except httpx.TransportError as err:
        print(f"\n❌ Could not reach the proxy at {BASE_URL}: {err!r}. Is it running?", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - an example reports anything unexpected in one line
        print(f"\n❌ Unexpected failure: {err}", file=sys.stderr)
        return 1
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
