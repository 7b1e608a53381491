"""`lpdgen serve`: an HTTP service that merges concurrent requests into one batch per forward pass.

Why a batching server: LPD's cost per image falls several-fold from batch 1 to batch 64, but people send
requests one at a time. The server keeps a queue; requests that arrive within ``max_wait_ms`` of the
oldest waiting one, with the same resolved sampling settings (a batch shares steps, guidance, order ...),
are generated in one pipeline call of up to ``max_batch`` images. Requests with other settings wait for
their own batch.

Why results do not depend on who shared the batch: every image is generated from its own seed
(``pipe(..., seeds=...)``, see :mod:`lpdgen.rng`), which fixes its order and sampling noise; the codes of
an image are the same in any batch. Pixels are another matter: the tokenizer's convolutions take a
different kernel for one image than for many, which moves about one pixel in 65,000 by one grey level. So
the batch's codes are decoded request by request, exactly as ``LPDPipeline`` decodes that request alone:
a request's images are bit for bit ``pipe(classes, seeds=seeds, **settings)``, whoever else was there.

The pieces: :func:`parse_request` (the library's one-line messages for bad input), :func:`take_batch`
(which waiting requests go together; pure), :class:`ImageService` (the queue, one worker thread for the
model, the metrics), :func:`create_app` (the FastAPI routes) and :func:`run_server` (uvicorn, with a
graceful stop that exits 0). FastAPI and uvicorn are imported only by the last two (``lpdgen[serve]``).
"""

import asyncio
import base64
import contextlib
import dataclasses
import io
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .utils import get_logger

if TYPE_CHECKING:
    from .pipeline import LPDPipeline
    from .settings import SamplingConfig

log = get_logger(__name__)

INSTALL_HINT = "lpdgen serve needs fastapi and uvicorn: pip install 'lpdgen[serve]'"
OUTPUT_FORMATS = ("png", "npy")
DEFAULT_MAX_BATCH = 64  # images per forward pass: where the embedded model's throughput levels off on CPU
DEFAULT_MAX_WAIT_MS = 20.0  # how long the oldest request may wait for company: small next to one batch
DEFAULT_MAX_QUEUE = 256  # requests waiting for the model; more are refused (429), not piled up
SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes 63-bit seeds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# ---- requests ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRequest:
    """One validated request: image i shows class ``class_ids[i]`` from seed ``seeds[i]``."""

    class_ids: tuple[int, ...]
    seeds: tuple[int, ...]
    settings: "SamplingConfig"  # resolved: the model's defaults with the request's overrides
    output_format: str = "png"

    @property
    def num_images(self) -> int:
        return len(self.class_ids)

    @property
    def batch_key(self) -> tuple:
        """Requests with equal keys can share a batch (one pipeline call takes one set of settings)."""
        return tuple(sorted(dataclasses.asdict(self.settings).items()))


def _check_json_type(name: str, value: Any, like: Any) -> None:
    """``value`` has the JSON type of the default ``like`` (JSON true is not a number here); a setting
    whose default is None is left to the pipeline's own check."""
    if like is None:
        return
    if isinstance(like, str):
        ok = isinstance(value, str)
        kind = "a string"
    elif isinstance(like, int) and not isinstance(like, bool):
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = "an integer"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    if not ok:
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def parse_request(pipe: "LPDPipeline", body: Any, max_images: int) -> ImageRequest:
    """A ``POST /v1/images`` body as an :class:`ImageRequest`, checked with the library's own messages
    (an unknown class suggests the close names, steps are checked against the model's token count).
    Sampling fields are those of the model's :class:`~lpdgen.pipeline.SamplingConfig`; those left out take
    the model's defaults. Without ``seeds`` each image gets a fresh random seed (returned, so it can be
    reproduced). Raises ``ValueError``."""
    if not isinstance(body, dict):
        raise ValueError('the request body must be a JSON object such as {"classes": ["sneaker"]}')  # noqa: TRY004
    defaults = dataclasses.asdict(pipe.settings())
    known = {"classes", "seeds", "output_format", *defaults}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(known)}")
    classes = body.get("classes")
    if (
        not isinstance(classes, list)
        or not classes
        or any(isinstance(c, bool) or not isinstance(c, (str, int)) for c in classes)
    ):
        raise ValueError(f"classes must be a non-empty list of class names or ids, got {classes!r}")
    if len(classes) > max_images:
        raise ValueError(
            f"too many images in one request: {len(classes)} > {max_images} (the server's --max-batch); "
            "split it into several requests"
        )
    ids = pipe.class_ids(classes)
    seeds = body.get("seeds")
    if seeds is None:
        seeds = [secrets.randbelow(SEED_LIMIT) for _ in ids]
    elif not isinstance(seeds, list) or len(seeds) != len(ids):
        raise ValueError(f"seeds must be a list of one integer per image ({len(ids)}), got {seeds!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < SEED_LIMIT:
            raise ValueError(f"seeds must be integers in [0, 2**63), got {s!r}")
    overrides = {}
    for name, default in defaults.items():
        if body.get(name) is not None:
            _check_json_type(name, body[name], default)
            overrides[name] = body[name]
    settings = pipe.settings(**overrides)
    fmt = body.get("output_format", "png")
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output_format {fmt!r}; choose one of {OUTPUT_FORMATS}")
    return ImageRequest(tuple(ids), tuple(int(s) for s in seeds), settings, fmt)


# ---- batching ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Job:
    """A request waiting in the queue; ``future`` gets its :class:`Result` (cancelled: the client went away)."""

    request: ImageRequest
    future: asyncio.Future
    arrived: float  # event-loop clock

    @property
    def gone(self) -> bool:
        return self.future.done()


def compatible_images(pending: Iterable[Job], head: Job) -> int:
    """Images waiting that could join ``head``'s batch (its own included)."""
    return sum(j.request.num_images for j in pending if j.request.batch_key == head.request.batch_key and not j.gone)


def take_batch(pending: deque[Job], max_batch: int) -> list[Job]:
    """Remove and return the next batch: the oldest waiting request, then the requests with its settings
    in arrival order, as long as they fit in ``max_batch`` images. Requests whose client went away are
    dropped first. The first request that does not fit ends the batch, so a large request is not
    overtaken forever by small ones with the same settings."""
    for job in [j for j in pending if j.gone]:
        pending.remove(job)
    if not pending:
        return []
    key, batch, images = pending[0].request.batch_key, [], 0
    for job in list(pending):
        if job.request.batch_key != key:
            continue
        if images + job.request.num_images > max_batch:
            break
        batch.append(job)
        images += job.request.num_images
    for job in batch:
        pending.remove(job)
    return batch


@dataclass
class Result:
    """What one request gets back: encoded images and how long they took."""

    images: list[str]  # base64 PNG or .npy files, one per image
    generation_s: float  # the batch's pipeline call plus this request's decoding and encoding
    batch_images: int
    batch_requests: int
    queue_wait_s: float = 0.0


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already; ``retry_after`` seconds is a fair guess of when not."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(Exception):
    """The model is still loading (or failed to load)."""


class ClientGone(Exception):
    """The client closed its connection before its images were ready."""


# ---- metrics (Prometheus text format) ---------------------------------------------------------------------


@dataclass
class Histogram:
    """A Prometheus histogram: cumulative buckets are computed when rendered."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, c in zip(self.buckets, self.counts):
            running += c
            out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        out += [
            f'{name}_bucket{{le="+Inf"}} {self.count}',
            f"{name}_sum {self.total:.6g}",
            f"{name}_count {self.count}",
        ]
        return out


@dataclass
class Metrics:
    """What ``GET /metrics`` reports. Written by the event loop only, so it needs no lock. The text format
    is a few lines of code; prometheus_client would be a dependency for that."""

    requests: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("ok", "invalid", "queue_full", "not_ready", "dropped", "error"), 0)
    )
    images: int = 0
    batches: int = 0
    batch_images: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    batch_requests: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    queue_wait: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    generation: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    latency: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))

    def render(self, *, ready: bool, queue_depth: int, queued_images: int, in_flight: int) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, values: list[str]) -> None:
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *values])

        metric(
            "lpdgen_model_ready",
            "gauge",
            "1 once the model is loaded and warmed up.",
            [f"lpdgen_model_ready {int(ready)}"],
        )
        metric(
            "lpdgen_requests_total",
            "counter",
            "Image requests answered, by outcome.",
            [f'lpdgen_requests_total{{outcome="{k}"}} {v}' for k, v in self.requests.items()],
        )
        metric("lpdgen_images_total", "counter", "Images generated.", [f"lpdgen_images_total {self.images}"])
        metric(
            "lpdgen_batches_total", "counter", "Pipeline calls (batches) run.", [f"lpdgen_batches_total {self.batches}"]
        )
        metric("lpdgen_queue_depth", "gauge", "Requests waiting for a batch.", [f"lpdgen_queue_depth {queue_depth}"])
        metric(
            "lpdgen_queue_images", "gauge", "Images of the requests waiting.", [f"lpdgen_queue_images {queued_images}"]
        )
        metric(
            "lpdgen_requests_in_flight",
            "gauge",
            "Requests in the batch being generated.",
            [f"lpdgen_requests_in_flight {in_flight}"],
        )
        for name, hist, help_text in (
            ("lpdgen_batch_images", self.batch_images, "Images per batch."),
            ("lpdgen_batch_requests", self.batch_requests, "Requests per batch."),
            ("lpdgen_queue_wait_seconds", self.queue_wait, "Time from arrival to the start of the request's batch."),
            ("lpdgen_generation_seconds", self.generation, "Time of one batch: generation, decoding, encoding."),
            ("lpdgen_request_seconds", self.latency, "Time from arrival to answer, answered requests."),
        ):
            metric(name, "histogram", help_text, hist.lines(name))
        return "\n".join(lines) + "\n"


# ---- the service ------------------------------------------------------------------------------------------


def encode_images(pipe: "LPDPipeline", codes, output_format: str) -> list[str]:
    """Decode one request's codes as ``LPDPipeline`` does for that request alone, as base64 files."""
    files = []
    if output_format == "png":
        for img in pipe.decode(codes, "pil"):
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            files.append(buf.getvalue())
    else:
        for arr in pipe.decode(codes, "np"):  # (H, W, C) uint8
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            files.append(buf.getvalue())
    return [base64.b64encode(f).decode("ascii") for f in files]


class ImageService:
    """One model, a queue of requests, one worker thread that runs one batch at a time.

    Everything but the model runs on the event loop (queue, metrics, batch choice), so it needs no locks;
    the pipeline runs in the worker thread, so the loop keeps answering ``/health`` and ``/metrics`` and
    taking requests during a batch. ``load`` runs in the worker thread too (then a one-image warm-up),
    so the server can listen while a large model loads; until then it is not ready.
    """

    def __init__(
        self,
        load: Callable[[], "LPDPipeline"],
        *,
        name: str,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        warmup: bool = True,
    ):
        if max_batch < 1 or max_queue < 1 or not max_wait_ms >= 0 or math.isinf(max_wait_ms):
            raise ValueError(
                f"need max_batch >= 1, max_queue >= 1 and a finite max_wait_ms >= 0, "
                f"got {max_batch}, {max_queue}, {max_wait_ms}"
            )
        self._load, self.name, self.warmup = load, name, warmup
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.pipe: LPDPipeline | None = None
        self.load_error: str | None = None
        self.metrics = Metrics()
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []
        self._last_batch_s = 1.0
        self._executor: ThreadPoolExecutor | None = None
        self._arrival: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []

    @property
    def ready(self) -> bool:
        return self.pipe is not None

    # lifecycle: start() and stop() run on the server's event loop (the app's lifespan)
    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpdgen-model")
        self._arrival = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._load_then_serve()))

    async def stop(self) -> None:
        """Called once the server has answered its in-flight requests: end the batch loop, free the thread."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def _load_then_serve(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            pipe = await loop.run_in_executor(self._executor, self._load_and_warm_up)
        except Exception as e:  # noqa: BLE001  (a bad checkpoint, out of memory ...: said on /health, in one line)
            self.load_error = " ".join(str(e).split()) or type(e).__name__
            log.error("lpdgen serve: the model did not load: %s", self.load_error)
            return
        self.pipe = pipe
        log.info(
            "lpdgen serve: %s ready (max batch %d, max wait %g ms, max queue %d)",
            self.name,
            self.max_batch,
            self.max_wait_s * 1000,
            self.max_queue,
        )
        while True:
            await self._run(await self._next_batch())

    def _load_and_warm_up(self) -> "LPDPipeline":
        pipe = self._load()
        if pipe.tokenizer is None:
            raise ValueError("this model has no tokenizer: it cannot serve images")
        if self.warmup:  # the first request is then not slower than the others
            pipe([0], num_inference_steps=1, seeds=[0], output_type="np")
        return pipe

    # requests
    def parse(self, body: Any) -> ImageRequest:
        if self.pipe is None:
            raise NotReady(self.load_error or "the model is still loading")
        return parse_request(self.pipe, body, self.max_batch)

    def retry_after(self) -> int:
        """Seconds until the queue has room, guessed from the last batch's duration."""
        queued = sum(j.request.num_images for j in self._pending)
        return max(1, math.ceil(self._last_batch_s * (1 + queued / self.max_batch)))

    async def generate(self, request: ImageRequest, disconnected: Callable[[], Any] | None = None) -> Result:
        """Queue ``request`` and wait for its images. ``disconnected``: an awaitable factory that returns
        when the client goes away; the request is then dropped (before its batch starts, if it has not)."""
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"the queue is full ({self.max_queue} requests waiting); retry later", self.retry_after())
        loop = asyncio.get_running_loop()
        job = Job(request, loop.create_future(), loop.time())
        self._pending.append(job)
        self._arrival.set()
        watch = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            await asyncio.wait([job.future] + ([watch] if watch else []), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server gave up on this request: so does the queue
            job.future.cancel()
            raise
        finally:
            if watch is not None:
                watch.cancel()
        if not job.future.done():
            job.future.cancel()  # take_batch skips it; a batch already running discards its images
            self._arrival.set()
            raise ClientGone("the client went away")
        result = job.future.result()
        self.metrics.latency.observe(loop.time() - job.arrived)
        return result

    async def _next_batch(self) -> list[Job]:
        """Wait until the oldest request has waited ``max_wait`` or enough compatible images are there."""
        loop = asyncio.get_running_loop()
        while True:
            while self._pending and self._pending[0].gone:
                self._pending.popleft()
            if not self._pending:
                await self._wait_arrival(None)
                continue
            head = self._pending[0]
            left = head.arrived + self.max_wait_s - loop.time()
            if left > 0 and compatible_images(self._pending, head) < self.max_batch:
                await self._wait_arrival(left)
                continue
            batch = take_batch(self._pending, self.max_batch)
            if batch:
                return batch

    async def _wait_arrival(self, timeout: float | None) -> None:
        self._arrival.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._arrival.wait(), timeout)

    async def _run(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for job in batch:
            self.metrics.queue_wait.observe(start - job.arrived)
        self._running = batch
        try:
            results = await loop.run_in_executor(self._executor, self._generate, [j.request for j in batch])
        except Exception as e:  # a bug or a device error: every request of the batch answers 500, the server goes on
            log.exception("lpdgen serve: a batch of %d requests failed", len(batch))
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        finally:
            self._running = []
        took = loop.time() - start
        self._last_batch_s = took
        m = self.metrics
        m.batches += 1
        m.images += sum(j.request.num_images for j in batch)
        m.batch_images.observe(sum(j.request.num_images for j in batch))
        m.batch_requests.observe(len(batch))
        m.generation.observe(took)
        for job, result in zip(batch, results):
            result.queue_wait_s = start - job.arrived
            if not job.future.done():
                job.future.set_result(result)

    def _generate(self, requests: list[ImageRequest]) -> list[Result]:
        """The worker thread's part: one pipeline call for every image, then each request's own decoding."""
        pipe = self.pipe
        labels = [c for r in requests for c in r.class_ids]
        seeds = [s for r in requests for s in r.seeds]
        t0 = time.perf_counter()
        out = pipe(labels, seeds=seeds, output_type="codes", **dataclasses.asdict(requests[0].settings))
        shared = time.perf_counter() - t0
        results, first = [], 0
        for r in requests:
            t1 = time.perf_counter()
            files = encode_images(pipe, out.codes[first : first + r.num_images], r.output_format)
            first += r.num_images
            results.append(Result(files, shared + time.perf_counter() - t1, len(labels), len(requests)))
        return results

    def metrics_text(self) -> str:
        return self.metrics.render(
            ready=self.ready,
            queue_depth=len(self._pending),
            queued_images=sum(j.request.num_images for j in self._pending),
            in_flight=len(self._running),
        )

    def model_card(self) -> dict:
        """``GET /v1/models``: what a client needs to build a request."""
        pipe = self.pipe
        names = list(pipe.class_names) if pipe.class_names is not None else None
        return {
            "name": self.name,
            "config": pipe.model.cfg.name,
            "num_classes": pipe.model.cfg.num_classes,
            "classes": names,
            "num_tokens": pipe.model.cfg.num_tokens,
            "image_size": list(pipe.image_size),
            "defaults": dataclasses.asdict(pipe.settings()),
            "max_images_per_request": self.max_batch,
            "output_formats": list(OUTPUT_FORMATS),
        }


# ---- HTTP -------------------------------------------------------------------------------------------------


def _error(status: int, message: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


def create_app(service: ImageService):
    """The FastAPI app of ``service``: ``POST /v1/images``, ``GET /health``, ``GET /v1/models``, ``GET /metrics``.
    Errors are ``{"error": "<one line>"}``: 422 bad input, 429 queue full (``Retry-After``), 503 not
    ready, 500 anything else (logged with its traceback on the server, never sent)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="lpdgen", summary="LPD image generation with dynamic batching", lifespan=lifespan)

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        log.error("lpdgen serve: %s %s failed", request.method, request.url.path, exc_info=e)
        return _error(500, f"internal error: {type(e).__name__}")

    @app.get("/health")
    async def health():
        if service.ready:
            return {"status": "ready", "model": service.name}
        status = "failed" if service.load_error else "loading"
        return JSONResponse({"status": status, "error": service.load_error}, status_code=503)

    @app.get("/v1/models")
    async def models():
        if not service.ready:
            return _error(503, service.load_error or "the model is still loading", {"Retry-After": "1"})
        return {"object": "list", "data": [service.model_card()]}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(service.metrics_text(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/images")
    async def images(request: Request):
        m = service.metrics.requests
        try:
            body = await request.json()
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            m["invalid"] += 1
            return _error(422, f"the request body is not valid JSON: {e}")
        try:
            parsed = service.parse(body)
        except NotReady as e:
            m["not_ready"] += 1
            return _error(503, str(e), {"Retry-After": "1"})
        except (ValueError, TypeError) as e:
            m["invalid"] += 1
            return _error(422, str(e))

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        try:
            result = await service.generate(parsed, disconnected)
        except QueueFull as e:
            m["queue_full"] += 1
            return _error(429, str(e), {"Retry-After": str(e.retry_after)})
        except ClientGone:
            m["dropped"] += 1
            return _error(499, "the client went away")  # nobody reads it; keeps the handler's contract
        except Exception as e:  # noqa: BLE001  (the batch failed: logged with its traceback by _run; one line here)
            m["error"] += 1
            return _error(500, f"generation failed: {type(e).__name__}: {e}")
        m["ok"] += 1
        return {
            "model": service.name,
            "images": result.images,
            "output_format": parsed.output_format,
            "classes": list(parsed.class_ids),
            "seeds": list(parsed.seeds),
            "settings": dataclasses.asdict(parsed.settings),
            "timing": {
                "queue_wait_s": round(result.queue_wait_s, 6),
                "generation_s": round(result.generation_s, 6),
                "batch_images": result.batch_images,
                "batch_requests": result.batch_requests,
            },
        }

    return app


def run_server(service: ImageService, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve ``service`` with uvicorn until SIGTERM or Ctrl-C. Then uvicorn stops accepting connections,
    waits for the requests in flight (queued ones included) to be answered, and the lifespan frees the
    model thread; the function returns normally, so the process exits 0."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises the stopping signal after its graceful shutdown, so the process would die by
        it (exit -15); for this service a drained stop is a success."""

        @contextlib.contextmanager
        def capture_signals(self):
            import signal

            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=None,
    )
    GracefulServer(config).run()
