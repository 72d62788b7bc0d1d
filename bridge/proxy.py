"""The HTTP proxy to devices (seed 003's proxy tokens) and the public key that signs the tokens.

    GET|POST|… /proxy/{jwt}/{path}   → carried to the device over `nxg/{S}/http/req`, its
                                       `nxg/{S}/http/res` answered back (the core's ProxyService)
    GET /.well-known/jwks.json       → {"keys":[{kty:"OKP",crv:"Ed25519",x,kid,alg:"EdDSA",use:"sig"}]}

The token is the credential: no other is asked for. An invalid or expired token is 302 to the
token's `redirect` when it has one (and its signature is ours), else 401. The device's status and
headers come back as sent, minus hop-by-hop headers; no answer within `proxy_timeout_s` is 504, a
body over `proxy_max_body_bytes` 413, a malformed answer 502. Bodies: `{"error"}`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.openapi import responds
from bridge.state import state_of
from bridge.v1.actions.tokens import DEFAULT_PORT, check_proxy_token
from nxg_mqtt.errors import NxgError

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


@responds(200, 302, 401, 404, 413, 502, 504)
async def proxy(request: Request) -> Response:
    state = state_of(request)
    token = str(request.path_params["token"])
    claims, redirect = await check_proxy_token(state.core.tokens, token)
    if claims is None:
        if redirect is not None:
            return RedirectResponse(redirect, status_code=302)
        return JSONResponse({"error": "invalid or expired proxy token"}, status_code=401)
    path = "/" + str(request.path_params.get("path", ""))
    if request.url.query:
        path += "?" + request.url.query
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    body = await request.body()
    try:
        answer = await state.core.proxy.request(
            str(claims["deviceId"]), request.method, path, int(claims.get("port", DEFAULT_PORT)), headers, body
        )
    except NxgError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
    return Response(answer.body, status_code=answer.status, headers=out_headers)


@responds(200)
async def jwks(request: Request) -> Response:
    return JSONResponse(state_of(request).core.tokens.jwks())


def routes() -> list[BaseRoute]:
    return [
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/proxy/{token}", proxy, methods=METHODS),
        Route("/proxy/{token}/{path:path}", proxy, methods=METHODS),
    ]
