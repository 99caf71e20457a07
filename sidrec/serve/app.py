"""The FastAPI app: POST /recommend, GET /items, GET /health, the page at GET /, and
OpenAPI at /docs. Every bad input is a 4xx whose message names the field; input is
only ever parsed as JSON and looked up in the catalogue, never evaluated.

    app = create_app(service)            # service: a loaded `Service` (see __main__)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Annotated, Callable

from fastapi import FastAPI, HTTPException, Query as QueryParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from .batcher import MicroBatcher, QueueFull
from .catalogue import Catalogue, UnknownItem
from .engine import Query
from .latency import LatencyHistogram

# A history of ids and titles fits in far less; anything bigger is refused unread.
MAX_BODY_BYTES = 64 * 1024
MAX_K = 100
MAX_SEARCH_RESULTS = 50
Title = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=500)]


@dataclass
class Service:
    """Everything the endpoints read, loaded once at start."""
    catalogue: Catalogue
    batcher: MicroBatcher      # Query -> engine.Ranked, gathered into decoder batches
    max_history: int           # most recent items a prompt holds (older ones are cut)
    info: dict = field(default_factory=dict)   # model, dataset, commit, provenance, device ...
    decoding: Callable[[], dict] | None = None  # the engine's totals (batches, rows, seconds ...)
    # Per POST /recommend, from the app receiving it to its last body byte sent (RecommendTimer)
    recommend_latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    history: list[StrictInt | Title] = Field(
        description="items liked, oldest first: item ids or exact titles (GET /items searches titles)",
        examples=[[0, "Star Wars (1977)"]])
    k: StrictInt = Field(10, description=f"items to return, 1..{MAX_K} (and at most the catalogue's size)")
    exclude_history: StrictBool = Field(True, description="leave the history's own items out of the answer")


class ItemOut(BaseModel):
    id: int
    title: str
    sid: list[str]


class Recommendation(ItemOut):
    rank: int
    score: float = Field(description="log-probability of the item's SID under the model")
    closest_in_history: ItemOut | None = Field(
        None, description="the history item sharing the longest SID prefix with this one (why it may be here)")
    shared_levels: int = Field(0, description="SID levels shared with closest_in_history")


class RecommendResponse(BaseModel):
    model: str
    history: list[ItemOut] = Field(description="the history the model saw, oldest first (after any cut)")
    history_cut: int = Field(description="oldest items dropped to fit the model's history limit")
    k: int
    items: list[Recommendation]
    notes: list[str]


class Problem(Exception):
    """A 4xx reply naming the field at fault."""

    def __init__(self, status: int, field_name: str, message: str):
        self.status, self.field, self.message = status, field_name, message


def _problem_response(status: int, problems: list[tuple[str, str]]) -> JSONResponse:
    detail = [{"field": f, "message": m} for f, m in problems]
    return JSONResponse({"error": "; ".join(f"{f}: {m}" for f, m in problems), "detail": detail},
                        status_code=status)


def _field_name(loc) -> str:
    """('body', 'history', 2, 'str') -> 'history[2]'; union member tags are dropped."""
    parts = [p for p in loc if p not in ("body", "query")]
    if parts and parts[-1] in ("int", "str", "constrained-str"):
        parts = parts[:-1]
    name = ""
    for p in parts:
        name += f"[{p}]" if isinstance(p, int) else (f".{p}" if name else str(p))
    return name or "body"


def _validation_problems(exc: RequestValidationError) -> tuple[int, list[tuple[str, str]]]:
    problems: dict[str, str] = {}
    status = 422
    for error in exc.errors():
        kind, name = error.get("type", ""), _field_name(error.get("loc", ()))
        if kind == "json_invalid":
            status, name, message = 400, "body", f"not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
        elif kind == "missing" and name == "body":
            message = "a JSON object is required, e.g. {\"history\": [1, 2], \"k\": 10}"
        elif kind == "model_attributes_type" and isinstance(error.get("input"), (bytes, str)):
            message = "not read as JSON: send a JSON object with content-type: application/json"
        elif kind == "model_attributes_type":
            message = "must be a JSON object, e.g. {\"history\": [1, 2], \"k\": 10}"
        elif kind == "extra_forbidden":
            message = "unknown field (expected history, k, exclude_history)"
        elif name.startswith("history["):
            message = "must be an item id (integer) or an exact title (string of 1..500 characters)"
        else:
            message = error.get("msg", "invalid")
        problems.setdefault(name, message)  # a union reports each member: keep the first message
    return status, list(problems.items())


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether announced by
    Content-Length or streamed (chunked), before the app buffers them."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the route's body read: FastAPI turns it into the reply.
                    raise HTTPException(413, f"body: larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send):
        response = _problem_response(413, [("body", f"larger than {self.max_bytes} bytes")])
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


class RecommendTimer:
    """Counts each POST /recommend's time inside the app, from the request reaching it to
    the response's last byte handed back (body read, validation, queue, decoder, JSON),
    in `histogram`: against the client's own latency, what is left is outside the app."""

    def __init__(self, app, histogram: LatencyHistogram):
        self.app, self.histogram = app, histogram

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != "/recommend":
            return await self.app(scope, receive, send)
        started = time.perf_counter()

        async def timed_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.histogram.add(time.perf_counter() - started)

        await self.app(scope, receive, timed_send)


def _page() -> str:
    return files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(service: Service) -> FastAPI:
    catalogue = service.catalogue
    max_k = min(MAX_K, len(catalogue))
    app = FastAPI(title="sidrec", version="0.1.0",
                  description="Generative recommendation with semantic IDs: a trained model's top-k items "
                              "for a history of items. The page at / tries it in a browser.")
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RecommendTimer, histogram=service.recommend_latency)   # outermost: times BodyLimit too
    page = _page()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        status, problems = _validation_problems(exc)
        return _problem_response(status, problems)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return _problem_response(exc.status, [(exc.field, exc.message)])

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        field_name, _, message = str(exc.detail).partition(": ")
        problems = [(field_name, message)] if message else [("request", str(exc.detail))]
        return _problem_response(exc.status_code, problems)

    def item_out(item_id: int) -> ItemOut:
        item = catalogue.item(item_id)
        return ItemOut(id=item.id, title=item.title, sid=item.sid)

    def closest(item_id: int, history: list[int]) -> tuple[int | None, int]:
        """The history item whose SID shares the longest prefix with `item_id`'s (the
        most recent on a tie) and how many levels it shares."""
        sid, best, best_levels = catalogue.sids[item_id], None, 0
        for h in reversed(history):
            levels = 0
            for a, b in zip(sid, catalogue.sids[h]):
                if a != b:
                    break
                levels += 1
            if levels > best_levels:
                best, best_levels = h, levels
        return best, best_levels

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    @app.get("/health")
    async def health():
        """Which model serves, from which run and code, how batching has gone and where
        the decoder's time went."""
        return {"status": "ok", **service.info, "n_items": len(catalogue), "max_history": service.max_history,
                "batching": service.batcher.stats(),
                "recommend_latency_counts": service.recommend_latency.counts(),
                "decoding": service.decoding() if service.decoding else None}

    @app.get("/items", response_model=list[ItemOut])
    async def items(q: Annotated[str, QueryParam(min_length=1, max_length=200, description="part of a title")],
                    limit: Annotated[int, QueryParam(ge=1, le=MAX_SEARCH_RESULTS)] = 10):
        """Items whose title contains q (case-insensitive), best matches first."""
        return [ItemOut(id=i.id, title=i.title, sid=i.sid) for i in catalogue.search(q, limit)]

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest):
        """The model's top-k catalogue items after this history, best first."""
        if not body.history:
            raise Problem(422, "history", "empty: give at least one item id or exact title")
        if not 1 <= body.k <= max_k:
            raise Problem(422, "k", f"{body.k} is out of range: 1..{max_k}")
        try:
            ids = catalogue.resolve(body.history)
        except UnknownItem as error:
            raise Problem(422, f"history[{error.index}]", str(error)) from None
        notes = []
        cut = max(0, len(ids) - service.max_history)
        if cut:
            ids = ids[cut:]
            notes.append(f"history cut to its {service.max_history} most recent items (the model's limit): "
                         f"the {cut} oldest were dropped")
        query = Query(tuple(ids), body.k, body.exclude_history)
        try:
            ranked = await service.batcher(query)
        except QueueFull:
            raise Problem(503, "request", "the server is busy; try again shortly") from None
        if len(ranked.items) < body.k:
            notes.append(f"only {len(ranked.items)} items are left once the history is excluded")
        out = []
        for rank, (item_id, score) in enumerate(zip(ranked.items, ranked.scores), 1):
            near, levels = closest(item_id, ids)
            out.append(Recommendation(**item_out(item_id).model_dump(), rank=rank, score=score,
                                      closest_in_history=None if near is None else item_out(near),
                                      shared_levels=levels))
        return RecommendResponse(model=service.info.get("model", ""), history=[item_out(i) for i in ids],
                                 history_cut=cut, k=body.k, items=out, notes=notes)

    return app
