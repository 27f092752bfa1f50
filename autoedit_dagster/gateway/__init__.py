"""The gateway (`autoedit gateway`): authentication, roles and a shared rate limit in front of dagster-webserver.

An ASGI app (starlette, served by uvicorn through `autoedit gateway --upstream URL`) that proxies
HTTP (streamed both ways with httpx) and the UI's GraphQL websocket (`/graphql`, with the
`websockets` client) to the webserver, which has no authentication of its own.

Who gets in
    Every request but `/healthz` carries a JWT (`tokens.py`): `Authorization: Bearer <token>`,
    or, for a browser, which cannot add headers to page loads, the `autoedit_token` cookie that
    `/login?token=...` (or the form at `/login`) sets: HttpOnly, SameSite=Lax, expiring with the
    token, Secure over https. `/logout` clears it. A missing, malformed, expired or wrongly signed
    token gets 401 with a JSON body naming the reason.

What each role may do
    `operator`: everything. `viewer`: GET/HEAD/OPTIONS of pages, assets and downloads, and
    GraphQL queries and subscriptions: a mutation is refused with 403, as is any other write
    (POST to the REST endpoints). A token with only the `metrics` scope reads `/metrics` and
    nothing else. Over the websocket, each `start`/`subscribe` message from a viewer is checked
    too. For every role a mutation sent with GET is refused (405): cookies travel with
    cross-site GET navigations, so GET must stay read-only.

The request checked is the request forwarded
    Only an allow-list of end-to-end headers travels upstream (`FORWARDED_HEADERS`), never
    anything named by `Connection`, and the gateway sets the framing itself. A GraphQL request is
    read whole and judged as the webserver will read it: a GET's query string (no body allowed),
    or a POST's body (`application/json` object or `application/graphql`; any other type, a JSON
    batch, or GraphQL parameters in the query string as well are 400). What is forwarded is
    rebuilt from what was judged: the canonical Content-Type and the judged fields re-encoded.
    Every document is checked off the event loop, in worker processes (at the gateway's own priority)
    (`graphql_check.py`; results cached by hash), within `GraphQLLimits` (bytes, tokens, depth,
    aliases, fields and repeated fields with fragments expanded, time): past any of them, 400, so
    one client's huge query can stall neither the gateway nor, through it, the webserver.

Cookie sessions
    A request authenticated by the cookie that is not GET/HEAD/OPTIONS (and `POST /login`, and a
    websocket handshake) must come from the gateway's own origin: an `Origin` equal to it, or,
    without `Origin`, `Sec-Fetch-Site: same-origin`; else 403. Bearer tokens are not affected
    (no browser attaches them by itself).

How often
    Per client (the token's `sub`, else the remote address) at most AUTOEDIT_RATE_LIMIT requests
    in any 60-second window (a sliding log in Redis, one Lua script per request, Redis' own clock),
    so every replica sharing the Redis shares the limit. Over it: 429 with `Retry-After` (seconds
    until the oldest counted request leaves the window). A websocket counts once, at its
    handshake. If Redis cannot be reached the request is let through (authentication still
    applies), logged and counted (`autoedit_gateway_ratelimit_backend_errors_total`), and Redis is
    retried 5 s later rather than on every request; `/healthz` reports it.

Media
    The gateway answers `POST /uploads` (operators: the body streamed into `uploads/`, returning
    the video id) and `GET /media/<video_id>/<profile>/<file>` (any role: a published render file,
    by range requests or a presigned S3 redirect) itself, from the store AUTOEDIT_STORAGE names
    (`media.py`); both are rate-limited, logged and counted like every route.

Also
    `/healthz` (no auth): 200 when the upstream's `/server_info` and Redis answer, else 503, with
    each check's state in the JSON body. `/metrics`: Prometheus text (`metrics.py`), for a token
    with the `metrics` scope (`autoedit token --scope metrics`, what Prometheus sends with
    `authorization: {credentials_file: ...}`) or any role; operator tokens only with
    AUTOEDIT_METRICS_AUTH=operator. An unreachable or failing upstream is answered with 502
    and a JSON body saying what failed. The `Authorization` header and the token cookie are not
    forwarded upstream. Access logs (`autoedit.gateway`, JSON per `logs.py`) never include query
    strings, so `/login?token=` does not leak into logs.

Modules: `settings` (the environment), `ratelimit`, `policy` (what a request may do, as plain
functions), `app` (the HTTP app), `media` (`/uploads`, `/media`), `websocket` (the UI's websocket
proxy), `graphql_check`, `tokens`, `metrics`, `logs` and `commands` (`autoedit gateway`,
`autoedit token`). Importing the package imports none of them: `logs` is named from dagster.yaml
and `graphql_check` is loaded by worker processes, so each module loads only its own dependencies.

Environment (read by `GatewaySettings.from_env`): AUTOEDIT_JWT_SECRET (at least 32 bytes, else
the gateway refuses to start), AUTOEDIT_JWT_PUBLIC_KEY, AUTOEDIT_REDIS_URL (default
redis://127.0.0.1:6379/0), AUTOEDIT_RATE_LIMIT (requests per minute, default 100, 0 disables),
AUTOEDIT_METRICS_AUTH (token|operator, default token), AUTOEDIT_TRUSTED_PROXIES (comma-separated
addresses or CIDR networks of the reverse proxies in front, e.g. nginx: only from these are
X-Forwarded-For, the client whose address is its rate-limit bucket, and X-Forwarded-Proto, which
makes the cookie Secure, believed; default none), AUTOEDIT_COOKIE_SECURE (1 forces the Secure
flag), AUTOEDIT_UPSTREAM_TIMEOUT (seconds, default 120), AUTOEDIT_MAX_UPLOAD_MB (`POST /uploads`, default
4096), DAGSTER_HOME (the instance `/metrics`
reads).
"""
