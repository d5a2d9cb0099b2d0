"""A minimal client for OpenAI-compatible /v1/chat/completions endpoints (judges, teachers):
the URL may be the server's base, its /v1, or the full endpoint."""

import json
import os
import urllib.error
import urllib.request

from codemix.errors import CodemixError


def chat_endpoint(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def chat_completion(url: str, body: dict, api_key_env: str, timeout_s: float, what: str) -> str:
    """POST `body`, return the first choice's message text. A bearer token is sent when the
    environment variable `api_key_env` is set. Failures raise CodemixError starting with `what`."""
    headers = {"Content-Type": "application/json"}
    if os.environ.get(api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[api_key_env]}"
    endpoint = chat_endpoint(url)
    request = urllib.request.Request(endpoint, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            reply = json.load(response)["choices"][0]["message"]["content"]
    except (urllib.error.URLError, OSError, KeyError, IndexError, TypeError, json.JSONDecodeError) as err:
        raise CodemixError(f"{what} {endpoint} (model {body.get('model')!r}) failed: {err}") from err
    return reply if isinstance(reply, str) else ""
