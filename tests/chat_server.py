"""An OpenAI-compatible chat-completions endpoint on loopback: a real HTTP server over a real socket,
standing in for the remote models (a teacher that writes code, a judge) these machines cannot reach.
A test gives it `reply(body) -> str`; every request is recorded, and other paths get a 404."""

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = Callable[[dict], str]


@dataclass
class ChatServer:
    url: str  # base URL, ending in /v1
    requests: list[dict] = field(default_factory=list)  # path, body and Authorization header of each


@contextmanager
def chat_server(reply: Reply) -> Iterator[ChatServer]:
    served = ChatServer("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            served.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.end_headers()
                return
            payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply(body)}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload.encode())))
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
