"""The AMX guard: quantised GGUFs crash llama.cpp's AMX kernels with more than one thread, so on a CPU
with AMX the embedded model loads without extra weight buffers and the server gets an F16 copy."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.llm import cpu
from agent.llm.backends import llamacpp
from agent.llm.packaged import resolve_model_path


def test_cpu_flags_reads_the_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 avx512f amx_tile amx_int8\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    flags = cpu.cpu_flags.__wrapped__(info)
    assert flags == frozenset({"fpu", "avx2", "avx512f", "amx_tile", "amx_int8"})
    assert cpu.has_amx(flags)
    assert not cpu.has_amx(frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert cpu.cpu_flags.__wrapped__(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("amx", [True, False])
def test_embedded_model_disables_extra_buffers_exactly_on_amx(amx: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp._internals as internals

    seen: list[bool] = []
    real_load = internals.llama_cpp.llama_model_load_from_file

    def spy(path, params):  # type: ignore[no-untyped-def]
        seen.append(bool(params.use_extra_bufts))
        return real_load(path, params)

    monkeypatch.setattr(internals.llama_cpp, "llama_model_load_from_file", spy)
    monkeypatch.setattr(llamacpp, "has_amx", lambda: amx)
    gguf = resolve_model_path("smollm2-135m")  # the packaged Q4_1 file: the type that crashed
    model = llamacpp.EmbeddedChatModel(model_path=str(gguf), n_threads=2)
    assert model.count_tokens("hello world") > 0
    assert seen == [not amx]
    import llama_cpp.llama_cpp as lib
    assert lib.llama_model_default_params().use_extra_bufts  # the factory is restored after the load


def test_server_on_amx_serves_an_f16_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.llm import servers

    converted: list[tuple[Path, str]] = []

    def fake_convert(path: Path, cpu_format: str, cache_dir: Path | None = None) -> Path:
        converted.append((path, cpu_format))
        return tmp_path / "model.f16.gguf"

    argv_seen: list[list[str]] = []

    class Recorder:
        def __init__(self, argv: list[str], **kwargs: object) -> None:
            argv_seen.append(argv)

    gguf = tmp_path / "model.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr("agent.llm.packaged.convert", fake_convert)
    monkeypatch.setattr(servers, "ServerProcess", Recorder)
    for amx in (True, False):
        monkeypatch.setattr(servers, "has_amx", lambda amx=amx: amx)
        servers.llamacpp_server(gguf, log_dir=tmp_path, port=1)
    assert converted == [(gguf, "f16")]
    served = [argv[argv.index("--model") + 1] for argv in argv_seen]
    assert served == [str(tmp_path / "model.f16.gguf"), str(gguf)]


@pytest.mark.slow
def test_threads_sharing_one_embedded_model_get_the_serial_answers() -> None:
    """Without the per-model lock, two threads in one llama.cpp context crash the process."""
    from langchain_core.messages import HumanMessage

    model = llamacpp.EmbeddedChatModel(model_path=str(resolve_model_path("smollm2-135m")), n_threads=1,
                                       max_tokens=4)
    prompts = [f"Name a film from {year}." for year in range(1990, 1998)]

    def ask(prompt: str) -> str:
        return str(model.invoke([HumanMessage(prompt)], logprobs=True, top_logprobs=5).content)

    serial = [ask(p) for p in prompts]
    results: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, ask(prompts[i])), daemon=True)
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results.get(i) for i in range(8)] == serial


@pytest.mark.slow
def test_eight_threads_recommending_through_one_embedded_agent_match_serial(ml100k_path: Path) -> None:
    """One agent (embedded LLM reranker) shared by 8 threads returns exactly the serial recommendations."""
    from agent.agent import AgentConfig, RecommenderAgent
    from agent.llm import LLMClient
    from agent.rerank import LLMReranker
    from retrieval.candidates.popularity import PopularityGenerator
    from retrieval.data.loaders import load_movielens_100k

    dataset = load_movielens_100k(ml100k_path)
    model = llamacpp.EmbeddedChatModel(model_path=str(resolve_model_path("smollm2-135m")), n_threads=2)
    client = LLMClient(model)
    agent = RecommenderAgent(dataset, PopularityGenerator(dataset.histories), client=client,
                             reranker=LLMReranker(client, dataset.catalog), config=AgentConfig(candidates=10))
    users = [str(u) for u in (1, 7, 42, 99, 196, 305, 450, 600)]
    serial = [agent.recommend(u, k=5, explain=False) for u in users]
    assert all(r.diagnostics.rerank is not None and not r.diagnostics.rerank.fallback for r in serial)
    results: dict[int, tuple[str, ...]] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, agent.recommend(users[i], k=5,
                                                                                          explain=False).items),
                                daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [results.get(i) for i in range(8)] == [r.items for r in serial]


@pytest.mark.slow
def test_embedded_generation_stops_at_the_deadline() -> None:
    """A long generation under a short budget ends by the deadline with LLMTimeoutError."""
    import time

    from langchain_core.messages import HumanMessage

    from agent.llm import LLMClient
    from agent.llm.deadline import budget
    from retrieval.errors import LLMTimeoutError

    model = llamacpp.EmbeddedChatModel(model_path=str(resolve_model_path("smollm2-135m")), n_threads=2)
    client = LLMClient(model)
    client.chat([HumanMessage("hi")], max_tokens=1)  # load the model outside the timed part
    start = time.perf_counter()
    with budget(0.5), pytest.raises(LLMTimeoutError):
        client.chat([HumanMessage("Write a very long story about a film festival.")], max_tokens=4000)
    assert time.perf_counter() - start < 1.5
