"""A local HTTP server that speaks the OpenAI chat-completions protocol, for testing the openai judge.

Replies come from a queue of scripts (one per request); each script turns the request JSON into
(status, body). With an empty queue it answers like a well-behaved model: a valid rubric reply.
Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from schemas.rubric import DIMENSIONS

Script = Callable[[dict], tuple[int, dict | str]]


def completion(
    content: str | None, *, refusal: str | None = None, finish_reason: str = "stop", model: str = "fake-model"
) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 321, "completion_tokens": 54, "total_tokens": 375},
    }


def rubric_json(score: int = 3, **over) -> str:
    reply = {d: {"score": score, "rationale": f"{d} looks fine"} for d in DIMENSIONS}
    reply.update(over)
    return json.dumps(reply)


def reply(content: str) -> Script:
    return lambda req: (200, completion(content))


def status(code: int, message: str = "server error") -> Script:
    return lambda req: (code, {"error": {"message": message, "type": "server_error", "code": None}})


def slow(seconds: float) -> Script:
    def script(req):
        time.sleep(seconds)
        return 200, completion(rubric_json())

    return script


class FakeOpenAI:
    def __init__(self):
        self.requests: list[dict] = []
        self.scripts: list[Script] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with outer._lock:
                    outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("authorization")})
                    script = outer.scripts.pop(0) if outer.scripts else reply(rubric_json())
                if not self.path.endswith("/chat/completions"):
                    code, payload = 404, {"error": {"message": "not found"}}
                else:
                    code, payload = script(body)
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
