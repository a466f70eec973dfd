"""Lathe's model runner: imports one predictor, runs setup() once, then answers predictions.

Protocol: JSON lines. Commands arrive on stdin:
  {"type": "predict", "id": ID, "input": {...}, "output_dir": DIR}
  {"type": "cancel", "id": ID}
  {"type": "shutdown"}
Events leave on the process's original stdout:
  {"type": "ready", "setup_time": S}
  {"type": "setup_failed", "error": MESSAGE}
  {"type": "log", "id": ID or null, "data": TEXT}
  {"type": "output", "id": ID, "index": N, "value": ITEM}      (iterator items, as produced)
  {"type": "done", "id": ID, "status": "succeeded"|"failed"|"canceled", "output": VALUE,
   "error": MESSAGE, "predict_time": S}
The predictor's own stdout and stderr (at the file-descriptor level, so C extensions and
subprocesses are caught too) become log events of the prediction that is running.
Output files are copied into output_dir and sent as {"$file": NAME}.

With --concurrency N above 1 (the spec's `concurrency`), predictions run at once as tasks of
one event loop, as Cog 0.14+ runs them: `async def predict` (or an async generator) runs on the
loop, a plain `def predict` in a thread of its own; each has its own logs (what Python code
prints while it runs, routed by a context variable), cancel (the task is cancelled) and timeout.
"""
import argparse
import asyncio
import array
import collections
import contextvars
import dataclasses
import fcntl
import importlib.util
import select
import inspect
import io
import json
import os
import pathlib
import shutil
import signal
import sys
import termios
import threading
import time
import traceback
import types
import uuid

SYNC = b"\x00LATHE-SYNC\x00"
LOG_LIMIT = int(os.environ.get("LATHE_LOG_LIMIT", str(8 << 20)))
OUTPUT_LIMIT = int(os.environ.get("LATHE_OUTPUT_LIMIT", str(16 << 20)))


class CancelationException(BaseException):
    """Raised inside predict() when the prediction is canceled."""


# MARK: - Cog compatibility

COG_VERSION = "0.23.1"  # the Cog release whose public names this module provides


class MetricScope:
    """What `cog.current_scope()` returns: the running prediction's metrics (`record_metric`,
    `metrics[...] = …`, `metrics.record(…, mode="append")`) and its request `context`."""

    class Metrics:
        def __init__(self, scope):
            self._scope = scope

        def __setitem__(self, name, value):
            self._scope.record_metric(name, value)

        def record(self, name, value, mode="replace"):
            self._scope.record_metric(name, value, mode=mode)

    def __init__(self, prediction_id=None, context=None, channel=None):
        self.prediction_id = prediction_id
        self.context = dict(context or {})
        self.channel = channel
        self.metrics = MetricScope.Metrics(self)

    def record_metric(self, name, value, mode="replace"):
        if self.channel is None or self.prediction_id is None:
            return  # outside a prediction: ignored, as Cog ignores it
        if not isinstance(name, str) or not name or len(name) > 128 or name == "predict_time":
            print("lathe: metric name %r ignored: use a short string other than predict_time" % (name,), file=sys.stderr)
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
            print("lathe: metric %r ignored: its value %r is not a finite number" % (name, value), file=sys.stderr)
            return
        if mode not in ("replace", "incr", "append"):
            print("lathe: metric %r: mode %r is not replace, incr or append; replaced" % (name, mode), file=sys.stderr)
            mode = "replace"
        self.channel.send(type="metric", id=self.prediction_id, name=name, value=value, mode=mode)


# The scope of the prediction whose code is running (a context variable, so predictions that run
# at once each see their own).
SCOPE = contextvars.ContextVar("lathe_scope", default=MetricScope())


def install_cog_shim():
    """Lets Cog predictors run without the cog package installed: a `cog` module (and
    `cog.types`) with every name the current Cog release exports. A model that lists `cog` in
    its own requirements gets the real package instead."""
    try:
        import cog  # noqa: F401
        return
    except ImportError:
        pass
    cog = types.ModuleType("cog")
    cog_types = types.ModuleType("cog.types")
    from typing import AsyncIterator, Iterator, TypeVar

    class BasePredictor:
        def setup(self, weights=None):
            pass

    class Path(pathlib.PosixPath):
        pass

    class URLPath(pathlib.PosixPath):
        pass

    class File(io.IOBase):
        pass

    class URLFile(io.IOBase):
        pass

    class Secret:
        def __init__(self, value=None):
            self._value = value

        def get_secret_value(self):
            return self._value

        def __repr__(self):
            return "Secret(**********)"

    class BaseModel:
        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            dataclasses.dataclass(cls)

    class Opaque:
        """A value passed through unchanged."""

    class FieldInfo:
        def __init__(self, default=..., **kwargs):
            self.default = default
            self.__dict__.update(kwargs)

    def Input(default=..., **kwargs):  # noqa: N802 - Cog's name
        return None if default is ... else default

    item = TypeVar("Item")

    class ConcatenateIterator(Iterator[item]):
        pass

    class AsyncConcatenateIterator(AsyncIterator[item]):
        pass

    class ExperimentalFeatureWarning(FutureWarning):
        """Kept so `warnings.filterwarnings(..., category=ExperimentalFeatureWarning)` works."""

    def passthrough_decorator(fn=None, **options):
        return fn if fn is not None else (lambda inner: inner)

    def get_filename(url):
        return os.path.basename(str(url).split("?", 1)[0]) or "file"

    def emit_metric(name, value):
        SCOPE.get().record_metric(name, value)

    for module in (cog, cog_types):
        module.Path, module.URLPath, module.File, module.URLFile, module.Secret = Path, URLPath, File, URLFile, Secret
        module.ConcatenateIterator, module.AsyncConcatenateIterator = ConcatenateIterator, AsyncConcatenateIterator
    cog_types.get_filename = get_filename
    cog_types.Item = item
    cog_types.FILENAME_ILLEGAL_CHARS = set("\u0000/")
    cog_types.FILENAME_MAX_LENGTH = 200
    cog.__version__ = COG_VERSION
    cog.BasePredictor = cog.BaseRunner = BasePredictor
    cog.BaseModel = BaseModel
    cog.Opaque = Opaque
    cog.Input = Input
    cog.FieldInfo = FieldInfo
    cog.CancelationException = CancelationException
    cog.ExperimentalFeatureWarning = ExperimentalFeatureWarning
    cog.current_scope = SCOPE.get
    cog.emit_metric = emit_metric
    cog.streaming = passthrough_decorator
    cog.concurrent = passthrough_decorator
    cog.types = cog_types
    cog.__all__ = ["__version__", "BaseRunner", "BasePredictor", "BaseModel", "Opaque", "Input", "FieldInfo", "Path", "Secret",
                   "File", "URLFile", "URLPath", "ConcatenateIterator", "AsyncConcatenateIterator", "CancelationException",
                   "current_scope", "streaming", "concurrent", "ExperimentalFeatureWarning", "emit_metric"]
    sys.modules["cog"] = cog
    sys.modules["cog.types"] = cog_types


# MARK: - Events

class Channel:
    def __init__(self, fd):
        self.stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self.lock = threading.Lock()

    def send(self, **message):
        line = json.dumps(message, default=str, allow_nan=False) + "\n"
        with self.lock:
            self.stream.write(line)
            self.stream.flush()


class LogCapture:
    """Reads the predictor's fd 1 and 2 and forwards them as log events."""

    def __init__(self, channel):
        self.channel = channel
        self.current = None
        self.sent = 0
        self.synced = threading.Event()
        self.reading = threading.Lock()
        self.pending = b""
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        self.read_fd = read_fd
        threading.Thread(target=self.pump, daemon=True).start()

    def begin(self, prediction_id):
        # The previous prediction ended with a sync, so what is still unread was written between
        # predictions (by a background thread): it goes to the new one without another round trip.
        self.current = prediction_id
        self.sent = 0

    def emit(self, data):
        if data:
            self.emit_text(data.decode("utf-8", errors="replace"), len(data))

    def emit_text(self, text, size=None):
        if self.sent >= LOG_LIMIT:
            return
        self.sent += len(text.encode("utf-8", errors="replace")) if size is None else size
        if self.sent >= LOG_LIMIT:
            text += "\n[logs truncated: more than %d bytes]\n" % LOG_LIMIT
        self.channel.send(type="log", id=self.current, data=text)

    def log(self, prediction_id, text):
        """What Python code printed during the prediction (sys.stdout and sys.stderr are
        RoutedStreams): it goes out from the printing thread, and the fd-level pump wakes only
        for what C code and subprocesses write."""
        with self.reading:
            self.emit_text(text)

    def pump(self):
        # Bytes are read only while holding `reading`, so `settle` can tell, under the same lock,
        # that nothing written so far is still on its way. SIGIO is the main thread's (Commands).
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGIO])
        poller = select.poll()
        poller.register(self.read_fd, select.POLLIN | select.POLLHUP)
        while True:
            poller.poll()
            with self.reading:
                chunk = os.read(self.read_fd, 65536)
                if not chunk:
                    self.emit(self.pending)
                    self.pending = b""
                    return
                self.pending += chunk
                while True:
                    at = self.pending.find(SYNC)
                    if at < 0:
                        break
                    self.emit(self.pending[:at])
                    self.pending = self.pending[at + len(SYNC):]
                    self.synced.set()
                # Keep back only what could be the start of a sync marker.
                cut = self.pending.rfind(b"\x00")
                if cut < 0:
                    self.emit(self.pending)
                    self.pending = b""
                elif cut > 0:
                    self.emit(self.pending[:cut])
                    self.pending = self.pending[cut:]

    def settle(self):
        """Like `sync`, without the round trip when the pipe is empty and nothing is held back
        (most predictions print nothing)."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        with self.reading:
            waiting = array.array("i", [0])
            fcntl.ioctl(self.read_fd, termios.FIONREAD, waiting, True)
            if waiting[0] == 0 and not self.pending:
                return
        self.sync()

    def sync(self):
        """Waits until everything written so far has been forwarded."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        self.synced.clear()
        os.write(1, SYNC)
        self.synced.wait(5)


# MARK: - Values

def annotation_name(annotation):
    if annotation is inspect.Parameter.empty:
        return None
    return getattr(annotation, "__name__", None) or str(annotation)


def coerce(value, annotation):
    """Turns wire values into what the predictor's annotations ask for (Path, Secret, lists)."""
    if value is None or annotation is inspect.Parameter.empty:
        return value
    origin = getattr(annotation, "__origin__", None)
    args = getattr(annotation, "__args__", ()) or ()
    if origin in (list, tuple) and isinstance(value, list) and args:
        return [coerce(item, args[0]) for item in value]
    if args and type(None) in args:
        real = [a for a in args if a is not type(None)]
        return coerce(value, real[0]) if len(real) == 1 else value
    name = annotation_name(annotation)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # JSON has one number type; `2` for a float input is 2.0
    if name in ("Path", "PosixPath", "PurePath", "File") and isinstance(value, str):
        if name == "File":
            return open(value, "rb")
        return sys.modules["cog"].Path(value) if "cog" in sys.modules else pathlib.Path(value)
    if name == "Secret" and isinstance(value, str):
        return sys.modules["cog"].Secret(value)
    return value


class OutputWriter:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    def file(self, source_path=None, stream=None, suffix=""):
        self.count += 1
        os.makedirs(self.directory, exist_ok=True)
        base = os.path.basename(str(source_path)) if source_path else "output%s" % suffix
        name = "%d-%s" % (self.count, base) if self.count > 1 else base
        target = os.path.join(self.directory, name)
        if source_path is not None:
            shutil.copyfile(source_path, target)
        else:
            with open(target, "wb") as handle:
                shutil.copyfileobj(stream, handle)
        return {"$file": name}

    def encode(self, value):
        if isinstance(value, pathlib.PurePath):
            return self.file(source_path=value)
        if isinstance(value, io.IOBase):
            return self.file(stream=value, suffix=os.path.splitext(getattr(value, "name", "") or "")[1])
        if isinstance(value, (str, int, float, bool)) or value is None:
            if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
                return None
            return value
        if isinstance(value, dict):
            return {str(k): self.encode(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [self.encode(v) for v in value]
        if hasattr(value, "tolist"):
            return self.encode(value.tolist())
        if hasattr(value, "model_dump"):
            return self.encode(value.model_dump())
        if dataclasses.is_dataclass(value):
            return self.encode(dataclasses.asdict(value))
        if hasattr(value, "get_secret_value"):
            return "**********"
        return str(value)


# MARK: - Runner


def print_user_traceback(exception):
    """The traceback from the model's own frames on: the runner's and the import machinery's
    frames before them are Lathe's business, not the author's."""
    tb = exception.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename == __file__
                              or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")):
        tb = tb.tb_next
    traceback.print_exception(type(exception), exception, tb)


def setup_failure(exception):
    """The one-line error for a failed setup; a missing module says which package list to fix."""
    message = "%s: %s" % (type(exception).__name__, exception)
    name = getattr(exception, "name", None) if isinstance(exception, ImportError) else None
    if name:
        top = name.split(".")[0]
        message += (" (add the package that provides the module %r to python_packages in lathe.yaml,"
                    " for example `python_packages: [%s]`, or pin a version that has what is imported)" % (top, top))
    return message


# MARK: - Concurrent predictions

# The prediction whose code is running: set in each prediction's task (and copied into the
# thread a plain predict() runs in), read by RoutedStream to route what it prints.
CURRENT = contextvars.ContextVar("lathe_prediction", default=None)


class RoutedStream(io.TextIOBase):
    """sys.stdout / sys.stderr once setup is done: text written from a prediction's task or
    thread becomes that prediction's log events, a line at a time (`log(prediction_id, text)`
    sends them); other text (background threads) goes where it went before, to the fd-level
    capture."""

    def __init__(self, fallback, log):
        super().__init__()
        self.fallback = fallback
        self.log = log
        self.lock = threading.Lock()
        self.pending = {}  # an unfinished line per prediction

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self.fallback.fileno()

    def write(self, text):
        prediction_id = CURRENT.get()
        if prediction_id is None:
            return self.fallback.write(text)
        if text:
            # Whole lines go out as they are finished (print() writes the newline separately);
            # the rest waits for the next write, a flush or the prediction's end.
            with self.lock:
                held = self.pending.pop(prediction_id, "") + text
                cut = held.rfind("\n") + 1
                if cut < len(held):
                    self.pending[prediction_id] = held[cut:]
            if cut:
                self.log(prediction_id, held[:cut])
        return len(text)

    def flush(self):
        prediction_id = CURRENT.get()
        if prediction_id is not None:
            self.release(prediction_id)
        self.fallback.flush()

    def release(self, prediction_id):
        """Sends what is left of the prediction's unfinished line."""
        with self.lock:
            held = self.pending.pop(prediction_id, None)
        if held:
            self.log(prediction_id, held)


def serve_concurrently(runner, loop):
    """Answers commands from stdin with up to --concurrency predictions at once on `loop`."""
    tasks = {}
    stop = asyncio.Event()
    sent = {}  # bytes logged per prediction, by stdout and stderr together

    def log(prediction_id, text):
        used = sent.get(prediction_id, 0)
        if used < LOG_LIMIT:
            size = len(text.encode("utf-8", errors="replace"))
            sent[prediction_id] = used + size
            if used + size >= LOG_LIMIT:
                text += "\n[logs truncated: more than %d bytes]\n" % LOG_LIMIT
            runner.channel.send(type="log", id=prediction_id, data=text)

    sys.stdout = RoutedStream(sys.stdout, log)
    sys.stderr = RoutedStream(sys.stderr, log)

    def ended(prediction_id):
        sys.stdout.release(prediction_id)
        sys.stderr.release(prediction_id)
        tasks.pop(prediction_id, None)
        sent.pop(prediction_id, None)

    def on_command(command):
        kind = command.get("type")
        prediction_id = command.get("id")
        if kind == "predict":
            task = loop.create_task(runner.run_async(command))
            tasks[prediction_id] = task
            task.add_done_callback(lambda _: ended(prediction_id))
        elif kind == "cancel":
            if prediction_id in tasks:
                runner.canceled.add(prediction_id)
                tasks[prediction_id].cancel()
        elif kind == "shutdown":
            stop.set()

    def read_commands():
        for line in sys.stdin:
            line = line.strip()
            if line:
                loop.call_soon_threadsafe(on_command, json.loads(line))
        loop.call_soon_threadsafe(on_command, {"type": "shutdown"})

    threading.Thread(target=read_commands, daemon=True).start()
    loop.run_until_complete(stop.wait())


class Runner:
    def __init__(self, channel, capture, entry, role="predict"):
        self.channel = channel
        self.capture = capture
        self.entry = entry
        self.role = role  # which method of a class is called: predict (or run), or train
        self.predict = None
        self.signature = None
        self.current = None
        self.canceled = set()
        self.safety_entry = ""
        self.safety = None
        # The event loop predictions share (--concurrency above 1); async setup() runs on it too.
        self.loop = None

    def load(self):
        target = import_entry(self.entry)
        if inspect.isclass(target):
            instance = target()
            setup = getattr(instance, "setup", None)
            if setup is not None:
                weights = os.environ.get("LATHE_WEIGHTS") or None
                takes_weights = "weights" in inspect.signature(setup).parameters
                result = setup(weights=weights) if takes_weights else setup()
                if inspect.isawaitable(result):
                    if self.loop is not None:
                        self.loop.run_until_complete(result)
                    else:
                        asyncio.run(result)
            if self.role == "train":
                self.predict = instance.train
            else:
                self.predict = getattr(instance, "predict", None) or getattr(instance, "run")
        else:
            self.predict = target
        self.signature = inspect.signature(self.predict)

    def on_cancel_signal(self, signum, frame):
        if self.current is not None and self.current in self.canceled:
            raise CancelationException()

    def run_one(self, command):
        prediction_id = command.get("id")
        writer = OutputWriter(command.get("output_dir") or os.path.join("/tmp", "outputs", str(prediction_id)))
        scope = SCOPE.set(MetricScope(prediction_id, command.get("context"), self.channel))
        self.capture.begin(prediction_id)
        self.current = prediction_id
        routed = CURRENT.set(prediction_id)
        started = time.monotonic()
        status, output, error = "succeeded", None, None
        try:
            kwargs = {}
            for name, value in (command.get("input") or {}).items():
                parameter = self.signature.parameters.get(name)
                kwargs[name] = coerce(value, parameter.annotation if parameter else inspect.Parameter.empty)
            result = self.predict(**kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(result)
            if inspect.isasyncgen(result):
                result = iterate_async(result)
            if inspect.isgenerator(result) or isinstance(result, types.GeneratorType) or (
                    hasattr(result, "__next__") and not isinstance(result, (str, bytes, io.IOBase))):
                items = []
                for index, item in enumerate(result):
                    if prediction_id in self.canceled:
                        raise CancelationException()
                    encoded = writer.encode(item)
                    items.append(encoded)
                    self.capture.settle()  # what it printed so far comes before the item
                    self.channel.send(type="output", id=prediction_id, index=index, value=encoded)
                output = items
            else:
                output = writer.encode(result)
        except CancelationException:
            status = "canceled"
        except Exception as exception:  # the predictor's failure is the prediction's failure
            status = "failed"
            error = str(exception) or type(exception).__name__
            print_user_traceback(exception)
        finally:
            self.current = None
            SCOPE.reset(scope)
            for stream in (sys.stdout, sys.stderr):
                stream.release(prediction_id)
            CURRENT.reset(routed)
        self.finish(command, status, output, error, time.monotonic() - started, settle=self.capture.settle)

    async def run_async(self, command):
        """One prediction as a task of the shared loop (--concurrency above 1)."""
        prediction_id = command.get("id")
        CURRENT.set(prediction_id)
        SCOPE.set(MetricScope(prediction_id, command.get("context"), self.channel))
        writer = OutputWriter(command.get("output_dir") or os.path.join("/tmp", "outputs", str(prediction_id)))
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        status, output, error = "succeeded", None, None
        done = object()
        try:
            kwargs = {}
            for name, value in (command.get("input") or {}).items():
                parameter = self.signature.parameters.get(name)
                kwargs[name] = coerce(value, parameter.annotation if parameter else inspect.Parameter.empty)
            if inspect.iscoroutinefunction(self.predict) or inspect.isasyncgenfunction(self.predict):
                result = self.predict(**kwargs)
            else:
                # A plain predict() runs in a thread, with this prediction's context (its logs).
                context = contextvars.copy_context()
                result = await loop.run_in_executor(None, lambda: context.run(self.predict, **kwargs))
            if inspect.isawaitable(result):
                result = await result
            if inspect.isasyncgen(result) or inspect.isgenerator(result) or (
                    hasattr(result, "__next__") and not isinstance(result, (str, bytes, io.IOBase))):
                items = []
                if inspect.isasyncgen(result):
                    async for item in result:
                        items.append(writer.encode(item))
                        self.channel.send(type="output", id=prediction_id, index=len(items) - 1, value=items[-1])
                else:
                    context = contextvars.copy_context()
                    while True:
                        item = await loop.run_in_executor(None, lambda: context.run(next, result, done))
                        if item is done:
                            break
                        items.append(writer.encode(item))
                        self.channel.send(type="output", id=prediction_id, index=len(items) - 1, value=items[-1])
                output = items
            else:
                output = writer.encode(result)
        except (asyncio.CancelledError, CancelationException):
            status = "canceled"
        except Exception as exception:  # the predictor's failure is the prediction's failure
            status = "failed"
            error = str(exception) or type(exception).__name__
            print_user_traceback(exception)
        self.finish(command, status, output, error, time.monotonic() - started)

    def finish(self, command, status, output, error, predict_time, settle=None):
        """The safety check, the output limit and the `done` event, for either way of running."""
        prediction_id = command.get("id")
        if status == "succeeded" and command.get("safety") and self.safety_entry:
            try:
                if self.safety is None:
                    self.safety = import_entry(self.safety_entry)
                safe = self.safety(output)
            except Exception as exception:
                safe = False
                print_user_traceback(exception)
            if safe is False:
                status, output, error = "failed", None, "The output was flagged by the model's safety checker"
        if status == "succeeded":
            size = len(json.dumps(output, default=str))
            if size > OUTPUT_LIMIT:
                status, output = "failed", None
                error = "the output is %d bytes, more than the %d-byte limit; return a file (Path) for large results" % (size, OUTPUT_LIMIT)
        if settle is not None:
            settle()  # what the predictor printed reaches its logs before `done`
        self.canceled.discard(prediction_id)
        self.channel.send(type="done", id=prediction_id, status=status, output=output, error=error,
                          predict_time=round(predict_time, 6))



class Commands:
    """Commands from stdin, one prediction at a time, read by the main thread itself: no thread
    has to wake another to start a prediction. While idle it waits on stdin; while a prediction
    runs, stdin raises SIGIO (O_ASYNC) when a command comes, and the handler reads it there and
    then (a cancel of the running prediction raises CancelationException in it)."""

    def __init__(self, runner):
        self.runner = runner
        self.fd = sys.stdin.fileno()
        self.buffer = b""
        self.queue = collections.deque()
        self.closed = False
        self.reading = False
        os.set_blocking(self.fd, False)
        # The handler first: SIGIO's default action ends the process.
        signal.signal(signal.SIGIO, self.on_signal)
        fcntl.fcntl(self.fd, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_ASYNC)

    def read(self):
        """Takes in what stdin holds now: cancels mark their prediction, the rest queue."""
        if self.reading:  # the handler interrupted a read of the main thread's own
            return
        self.reading = True
        try:
            while not self.closed:
                try:
                    chunk = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    self.closed = True
                self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                command = json.loads(line)
                if command.get("type") == "cancel":
                    self.runner.canceled.add(command.get("id"))
                else:
                    self.queue.append(command)
        finally:
            self.reading = False

    def on_signal(self, signum, frame):
        # Idle, the main thread is waiting on stdin and reads it itself when the wait ends (read
        # here, the wait would resume on an empty pipe).
        if self.runner.current is None:
            return
        self.read()
        self.runner.on_cancel_signal(signum, frame)

    def next(self):
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLHUP)
        while not self.queue and not self.closed:
            poller.poll()
            self.read()
        return self.queue.popleft() if self.queue else {"type": "shutdown"}


def import_entry(entry):
    """Imports `file.py:Name` from the working directory and returns Name."""
    file_name, _, symbol = entry.partition(":")
    sys.path.insert(0, os.getcwd())
    spec = importlib.util.spec_from_file_location(pathlib.Path(file_name).stem, os.path.abspath(file_name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, symbol)


def enter_workspace(directory):
    """Makes `directory` the working directory, with the project's files linked into it: the
    code reads them where it expects them and writes new files (a trainer's weights) beside
    them, while the project itself stays read-only. The code was imported from the project
    first, so tracebacks name its own paths."""
    project = os.getcwd()
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(project):
        link = os.path.join(directory, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(project, name), link)
    os.chdir(directory)


def iterate_async(generator):
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(generator.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--entry", required=True)
    parser.add_argument("--memory-limit", type=int, default=0, help="bytes of address space, 0 for none")
    parser.add_argument("--import-only", action="store_true", help="import the entry point and exit (lathe validate --import)")
    parser.add_argument("--safety-checker", default="", help="file.py:function called on outputs; False flags them")
    parser.add_argument("--concurrency", type=int, default=1, help="predictions answered at once (the spec's concurrency)")
    parser.add_argument("--role", choices=("predict", "train"), default="predict",
                        help="the method of a class entry point that is called: predict (or run), or train")
    parser.add_argument("--workspace", default="", help="a writable folder to work in after setup (trainings)")
    args = parser.parse_args()
    if args.import_only:
        install_cog_shim()
        import_entry(args.entry)
        return
    if args.memory_limit:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
    channel = Channel(os.dup(1))
    capture = LogCapture(channel)
    install_cog_shim()
    runner = Runner(channel, capture, args.entry, args.role)
    runner.safety_entry = args.safety_checker
    # The parent may have started us with signals blocked (threads of async runtimes do), and a
    # blocked SIGIO would make cancellation wait forever (Commands). Ctrl-C belongs to Lathe,
    # which turns it into a cancel command, so the model itself ignores SIGINT.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started = time.monotonic()
    if args.concurrency > 1:
        runner.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(runner.loop)
    try:
        runner.load()
    except BaseException as exception:  # noqa: BLE001 - any setup failure is reported, then we exit
        print_user_traceback(exception)
        capture.sync()
        channel.send(type="setup_failed", error=setup_failure(exception))
        sys.exit(1)
    capture.sync()
    if args.workspace:
        enter_workspace(args.workspace)
    channel.send(type="ready", setup_time=round(time.monotonic() - started, 6))
    if runner.loop is not None:
        serve_concurrently(runner, runner.loop)
        os._exit(0)
    sys.stdout = RoutedStream(sys.stdout, capture.log)
    sys.stderr = RoutedStream(sys.stderr, capture.log)
    commands = Commands(runner)
    while True:
        command = commands.next()
        if command.get("type") == "shutdown":
            break
        if command.get("type") == "predict":
            runner.run_one(command)
    os._exit(0)


if __name__ == "__main__":
    main()
