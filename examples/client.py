#!/usr/bin/env python3
"""OpenAI Inference Proxy - Python client example.

Shows what an application talking to the proxy does: authenticate with a JWT and an X-User-ID, send a
Responses API call (streaming and not), rate the answers by request id and by response id, and keep the
session the proxy assigned. The ProxyClient class also has helpers for personas and stored responses.

    pip install httpx        (or Debian's python3-httpx)
    PROXY_JWT_TOKEN=... USER_ID=user@example.com python3 examples/client.py

Environment:
    PROXY_BASE_URL   the proxy (default http://localhost:8000)
    PROXY_JWT_TOKEN  a token from `openai-proxy jwt create --org-id <org-id>` (required)
    USER_ID          the end user the calls act for, sent as X-User-ID (default user@example.com)
    PROXY_MODEL      the model to ask (default gpt-4o-mini)

Exits with code 1 on anything unexpected.
"""

import asyncio
import json
import os
import sys
from typing import Any, AsyncIterator, Dict, Optional, Tuple

import httpx

BASE_URL = os.environ.get("PROXY_BASE_URL") or "http://localhost:8000"
JWT_TOKEN = os.environ.get("PROXY_JWT_TOKEN") or ""
USER_ID = os.environ.get("USER_ID") or "user@example.com"
MODEL = os.environ.get("PROXY_MODEL") or "gpt-4o-mini"


class ProxyError(Exception):
    """A call the proxy refused, with its OpenAI-style error envelope."""

    def __init__(self, status: int, body: Any):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.type = error.get("type") or "unknown"
        self.code = error.get("code")
        self.param = error.get("param")
        super().__init__(error.get("message") or f"HTTP {status}")

    def hint(self) -> str:
        """What to do about it, for the errors a new user meets first."""
        if self.status == 401:
            return "Is PROXY_JWT_TOKEN a valid, unexpired token of an enabled organization?"
        if self.status == 403 and self.code == "no_api_key":
            return f"Neither {USER_ID} nor the organization has an upstream key: add one with `openai-proxy key create`."
        if self.status == 403 and self.code == "user_mismatch":
            return "The token is pinned to another user: send that X-User-ID."
        if self.status == 422:
            return "Send the end user's id in X-User-ID."
        if self.status == 400:
            return "The request was refused as invalid; `param` names the field."
        return ""


class ProxyClient:
    """A small client of the proxy: the JWT as bearer token, the end user in X-User-ID, the session remembered."""

    def __init__(self, base_url: str, jwt_token: str, user_id: str, session_id: Optional[str] = None):
        self.base_url = base_url.rstrip("/")
        self.session_id = session_id
        self.headers = {"Authorization": f"Bearer {jwt_token}", "X-User-ID": user_id}
        # the proxy retries the upstream itself; a generous timeout covers a slow model
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=120.0)

    async def close(self) -> None:
        await self.http.aclose()

    def _session_headers(self) -> Dict[str, str]:
        return {"X-Session-ID": self.session_id} if self.session_id else {}

    def _remember(self, response: httpx.Response) -> str:
        """Keeps the session the proxy assigned, so later calls join the same conversation; returns the request id."""
        session = response.headers.get("x-session-id")
        if session:
            self.session_id = session
        return response.headers.get("x-request-id", "")

    @staticmethod
    def _raise_for_error(response: httpx.Response, body: Any) -> None:
        if response.status_code >= 400:
            raise ProxyError(response.status_code, body)

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, path, json=body)
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        self._raise_for_error(response, data)
        return data

    async def create_response(
        self, prompt: str, model: str = MODEL, persona_id: Optional[str] = None, **params: Any
    ) -> Tuple[Dict[str, Any], str, str]:
        """POST /v1/responses, non-streaming: (the response object, request id, response id)."""
        body: Dict[str, Any] = {"model": model, "input": prompt, **params}
        if persona_id:
            body["persona_id"] = persona_id
        response = await self.http.post("/v1/responses", json=body, headers=self._session_headers())
        data = response.json() if response.content else None
        self._raise_for_error(response, data)
        request_id = self._remember(response)
        return data, request_id, data.get("id", "")

    async def stream_response(
        self, prompt: str, model: str = MODEL, persona_id: Optional[str] = None, **params: Any
    ) -> AsyncIterator[Tuple[str, Any]]:
        """POST /v1/responses with stream: true; yields ("meta", request id), then ("text", delta) as they
        arrive, then ("completed", the final response object)."""
        body: Dict[str, Any] = {"model": model, "input": prompt, "stream": True, **params}
        if persona_id:
            body["persona_id"] = persona_id
        async with self.http.stream("POST", "/v1/responses", json=body, headers=self._session_headers()) as response:
            if response.status_code >= 400:
                await response.aread()
                try:
                    error_body = response.json()
                except ValueError:
                    error_body = None
                raise ProxyError(response.status_code, error_body)
            yield "meta", self._remember(response)
            async for event, data in _server_sent_events(response):
                if data == "[DONE]":
                    break
                payload = json.loads(data)
                kind = payload.get("type") or event
                if kind == "response.output_text.delta":
                    yield "text", payload.get("delta", "")
                elif kind == "response.completed":
                    yield "completed", payload.get("response", {})
                elif kind in ("error", "response.failed"):
                    raise ProxyError(502, {"error": payload.get("error") or payload.get("response", {}).get("error") or payload})

    async def rate_by_request_id(self, request_id: str, rating: int, comment: Optional[str] = None) -> Dict[str, Any]:
        return await self._json("POST", f"/v1/requests/{request_id}/rating", {"rating": rating, "comment": comment})

    async def rate_by_response_id(self, response_id: str, rating: int, comment: Optional[str] = None) -> Dict[str, Any]:
        return await self._json("POST", f"/v1/responses/{response_id}/rating", {"rating": rating, "comment": comment})

    async def get_response(self, response_id: str) -> Dict[str, Any]:
        """The stored final response object (also for streamed calls)."""
        return await self._json("GET", f"/v1/responses/{response_id}")

    async def get_request(self, request_id: str) -> Dict[str, Any]:
        """The stored exchange: status, usage, cost, latency, bodies."""
        return await self._json("GET", f"/v1/requests/{request_id}")

    async def create_persona(self, name: str, content: str, description: Optional[str] = None) -> Dict[str, Any]:
        return await self._json("POST", "/v1/personas", {"name": name, "content": content, "description": description})

    async def list_personas(self) -> Dict[str, Any]:
        return await self._json("GET", "/v1/personas?limit=100")

    async def get_persona_analytics(self, persona_id: str) -> Dict[str, Any]:
        return await self._json("GET", f"/v1/analytics/personas/{persona_id}")


async def _server_sent_events(response: httpx.Response) -> AsyncIterator[Tuple[Optional[str], str]]:
    """(event, data) pairs of an event stream: data lines joined, comments and other fields skipped."""
    event: Optional[str] = None
    data: list = []
    async for line in response.aiter_lines():
        line = line.rstrip("\r\n")
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def output_text(response: Dict[str, Any]) -> str:
    """The text of a Responses API object (what the SDKs call output_text)."""
    parts = []
    for item in response.get("output") or []:
        for content in item.get("content") or []:
            if content.get("type") == "output_text":
                parts.append(content.get("text", ""))
    return "".join(parts)


async def main() -> int:
    if not JWT_TOKEN:
        print("PROXY_JWT_TOKEN is not set. Create a token with:", file=sys.stderr)
        print("  npm run -s cli -- jwt create --org-id <org-id>", file=sys.stderr)
        return 2

    client = ProxyClient(BASE_URL, JWT_TOKEN, USER_ID)
    try:
        print("=== OpenAI Proxy Client Example ===")
        print()

        print("1. Non-streaming request:")
        response, request_id, response_id = await client.create_response(
            "What is the capital of France? Answer in one sentence.", max_output_tokens=100
        )
        print(f"Response: {output_text(response)}")
        print(f"Request ID: {request_id}")
        print(f"Response ID: {response_id}")
        print(f"Tokens used: {(response.get('usage') or {}).get('total_tokens', 'unknown')}")
        print()

        print("2. Streaming request:")
        print("Response: ", end="", flush=True)
        stream_request_id, completed = "", None
        async for kind, value in client.stream_response("Count from 1 to 5, then cheer.", max_output_tokens=100):
            if kind == "meta":
                stream_request_id = value
            elif kind == "text":
                print(value, end="", flush=True)
            elif kind == "completed":
                completed = value
        print()
        if not completed:
            print("\n❌ The stream ended without a response.completed event", file=sys.stderr)
            return 1
        print(f"Request ID: {stream_request_id}")
        print(f"Response ID: {completed.get('id', '')}")
        print()

        print("3. Rating response by request ID:")
        rating = await client.rate_by_request_id(request_id, 5, "Correct and concise")
        print("Rating submitted successfully")
        print(f"Rated at: {rating['rated_at']}")
        print()

        print("4. Rating response by response ID:")
        rating = await client.rate_by_response_id(completed["id"], 4)
        print("Rating submitted successfully")
        print(f"Rated at: {rating['rated_at']}")
        print()

        print(f"Session ID: {client.session_id}")
        print()
        print("=== Example Complete ===")
        return 0
    except ProxyError as err:
        print(f"\n❌ Unexpected API error: {err.status} {err.type}: {err}", file=sys.stderr)
        if err.hint():
            print(f"   {err.hint()}", file=sys.stderr)
        return 1
    except httpx.TransportError as err:
        print(f"\n❌ Could not reach the proxy at {BASE_URL}: {err!r}. Is it running?", file=sys.stderr)
        return 1
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
