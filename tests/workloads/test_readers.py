"""Trace readers: the shared real traces read with their published statistics; bad rows are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pamkv.config.workloads import ColumnMapping
from pamkv.errors import UserError
from pamkv.workloads import Trace, detect_format, read_trace, save_trace

# ../shared/data/README.md: input mean/median/p99, output mean/median/p99, rate req/s, inter-arrival CV.
README_STATS = {
    "AzureLLMInferenceTrace_conv.csv": (19366, (1155, 1020, 4142), (211, 129, 601), 5.5, 1.1),
    "AzureLLMInferenceTrace_code.csv": (8819, (2048, 1469, 7436), (27.9, 13, 252), 2.6, 13.2),
    "mooncake_conversation_trace.jsonl": (12031, (12035, 6909, 85400), (343, 350, 1119), 3.4, 3.0),
    "sharegpt_lengths_llama2_tokenizer.csv": (30731, (2340, 1730, 7434), (439, 415, 998), None, None),
    "arxiv_summarization_lengths_llama2_tokenizer.csv": (28257, (2588, 2730, 3933), (291, 167, 3271), None, None),
}


def _close(value: float, published: float) -> bool:
    """Equal within the rounding of the published figure (its last shown digit, or 0.5%)."""
    digits = str(published)
    step = 10 ** -(len(digits.split(".")[1])) if "." in digits else 1
    return abs(value - published) <= max(step, 0.005 * abs(published))


@pytest.mark.parametrize("file", sorted(README_STATS))
def test_shared_trace_matches_readme(shared: Path, file: str) -> None:
    n, inp, out, rate, cv = README_STATS[file]
    t = read_trace(shared / "data" / file)
    s = t.stats()
    assert s["requests"] == n and t.skipped_rows == 0
    for got, want in zip((s["input_tokens_mean"], s["input_tokens_p50"], s["input_tokens_p99"]), inp, strict=True):
        assert _close(got, want), (file, got, want)
    for got, want in zip((s["output_tokens_mean"], s["output_tokens_p50"], s["output_tokens_p99"]), out, strict=True):
        assert _close(got, want), (file, got, want)
    if rate is None:
        assert t.offline and s["arrival_rate_per_s"] is None
    else:
        assert _close(s["arrival_rate_per_s"], rate) and _close(s["interarrival_cv"], cv)
        assert np.all(np.diff(t.arrival_s) >= 0) and t.arrival_s[0] == 0


def test_shared_extra_facts(shared: Path) -> None:
    code = read_trace(shared / "data" / "AzureLLMInferenceTrace_code.csv").stats()
    assert code["max_requests_in_1s"] == 67  # README: 67 requests in one second
    moon = read_trace(shared / "data" / "mooncake_conversation_trace.jsonl")
    assert moon.stats()["input_tokens_max"] == 126195
    assert abs(moon.stats()["shared_prefix_fraction"] - 0.37) < 0.005  # README: 37% shared prefix
    assert moon.hash_offsets is not None and moon.hash_ids is not None
    assert np.array_equal(np.diff(moon.hash_offsets), -(-moon.input_tokens // 512))


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        ("2023-11-16 18:15:50.9951690,abc,109\n", 3, "ContextTokens"),
        ("2023-11-16 18:15:50.9951690,396,\n", 3, "GeneratedTokens"),
        ("2023-11-16 18:15:50.9951690,396,12.5\n", 3, "GeneratedTokens"),
        ("2023-11-16 18:15:50.9951690,0,10\n", 3, "ContextTokens"),
        ("not a time,396,10\n", 3, "TIMESTAMP"),
        ("2023-11-16 18:15:50.9,396,10\n2023-11-16 18:15:51.9,-4,10\n", 4, "ContextTokens"),
        ("\n2023-11-16 18:15:50.9,396,10\n", 3, "TIMESTAMP"),  # a blank line between rows is a bad row
    ],
)
def test_bad_csv_row_names_line_and_column(tmp_path: Path, body: str, line: int, column: str) -> None:
    p = _write(tmp_path, "trace.csv", AZURE + body)
    with pytest.raises(UserError) as err:
        read_trace(p)
    msg = str(err.value)
    assert "trace.csv" in msg and f"line {line}" in msg and column in msg and "\n" not in msg


def test_azure_2024_timezone_timestamps(tmp_path: Path) -> None:
    # The 2024 week-long release has the same columns; its timestamps carry a UTC offset.
    p = _write(tmp_path, "AzureLLMInferenceTrace_conv_1week.csv",
               "TIMESTAMP,ContextTokens,GeneratedTokens\n"
               "2024-05-10 00:00:00.009930+00:00,2000,50\n2024-05-10 00:00:01.509930+00:00,300,20\n")
    t = read_trace(p)
    assert t.meta["format"] == "azure" and t.arrival_s.tolist() == pytest.approx([0.0, 1.5])


def test_too_many_fields_and_skip_counting(tmp_path: Path) -> None:
    body = (
        "2023-11-16 18:15:47.0,10,1\n"
        "2023-11-16 18:15:48.0,11,2,99\n"  # line 4: an extra field
        "2023-11-16 18:15:49.0,x,3\n"  # line 5: not a number
        "2023-11-16 18:15:50.0,13,4\n"
        "\n\n"  # trailing blank lines are not rows
    )
    p = _write(tmp_path, "t.csv", AZURE + body)
    with pytest.raises(UserError, match=r"line 4: expected 3 fields, saw 4"):
        read_trace(p)
    t = read_trace(p, skip_bad_rows=True)
    assert t.skipped_rows == 2
    assert t.input_tokens.tolist() == [374, 10, 13]
    assert t.arrival_s[-1] == pytest.approx(50.0 - 46.68059)


def test_bad_row_after_skipped_line_keeps_line_numbers(tmp_path: Path) -> None:
    # With rows skipped by the tokenizer, a later value error must still name its own line.
    body = "2023-11-16 18:15:48.0,11,2,99\n2023-11-16 18:15:49.0,y,3\n"
    p = _write(tmp_path, "t.csv", AZURE + body)
    t = read_trace(p, skip_bad_rows=True)
    assert t.skipped_rows == 2 and len(t) == 1


def test_mooncake_jsonl_errors_and_skip(tmp_path: Path) -> None:
    good = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}\n'
    lines = [
        good,
        '{"timestamp": 10, "input_length": 700, "output_length": 6, "hash_ids": [0, 2]}\n',
        '{"timestamp": 20, "input_length": 800 "output_length": 7}\n',  # line 3: broken JSON
        '{"timestamp": 30, "output_length": 7, "hash_ids": []}\n',  # line 4: no input_length
        '{"timestamp": 40, "input_length": 900, "output_length": 8, "hash_ids": [0, 3]}\n',
    ]
    p = _write(tmp_path, "m.jsonl", "".join(lines))
    with pytest.raises(UserError, match=r"m\.jsonl: line 3: not valid JSON"):
        read_trace(p)
    t = read_trace(p, skip_bad_rows=True)
    assert t.skipped_rows == 2 and len(t) == 3
    assert t.arrival_s.tolist() == [0.0, 0.01, 0.04]  # milliseconds -> seconds
    assert t.hash_ids is not None and t.hash_ids.tolist() == [0, 1, 0, 2, 0, 3]
    p2 = _write(tmp_path, "m2.jsonl", good + lines[3])
    with pytest.raises(UserError, match=r"line 2, key 'input_length': missing"):
        read_trace(p2)


def test_burstgpt_and_detection(tmp_path: Path) -> None:
    text = (
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n"
        "45,ChatGPT,1087,0,1087,Conversation log\n"
        "110.5,GPT-4,417,505,922,API log\n"
    )
    p = _write(tmp_path, "BurstGPT_1.csv", text)
    assert detect_format(p) == "burstgpt"
    t = read_trace(p)
    assert t.arrival_s.tolist() == [0.0, 40.0, 105.5]
    assert t.output_tokens.tolist() == [18, 0, 505]  # a failed request is kept, with no output


def test_generic_mapping_csv_and_jsonl(tmp_path: Path) -> None:
    csv = _write(tmp_path, "g.csv", "t_ms,prompt,completion\n2000,10,3\n1000,20,4\n")
    m = ColumnMapping(input="prompt", output="completion", arrival="t_ms", time_unit="ms")
    t = read_trace(csv, columns=m)
    assert t.input_tokens.tolist() == [20, 10]  # sorted by arrival
    assert t.arrival_s.tolist() == [0.0, 1.0]
    jl = _write(tmp_path, "g.jsonl",
                '{"p": 5, "c": 1, "ts": "2024-05-10T00:00:01Z"}\n{"p": 6, "c": 2, "ts": "2024-05-10T00:00:03.5Z"}\n')
    t2 = read_trace(jl, columns=ColumnMapping(input="p", output="c", arrival="ts", time_unit="datetime"))
    assert t2.arrival_s.tolist() == [0.0, 2.5]
    with pytest.raises(UserError, match="cannot recognise"):
        read_trace(_write(tmp_path, "x.csv", "a,b\n1,2\n"))
    with pytest.raises(UserError, match="line 1: no column 't_ms'"):
        read_trace(_write(tmp_path, "y.csv", "a,b\n1,2\n"), columns=m)


def test_npz_round_trip(tmp_path: Path) -> None:
    t = Trace.from_arrays(
        np.array([0.0, 0.5, 2.0]), np.array([600, 10, 1100]), np.array([1, 0, 7]), name="x",
        hash_offsets=np.array([0, 2, 3, 6]), hash_ids=np.array([4, 5, 4, 4, 9, 10]),
    )
    p = tmp_path / "t.npz"
    save_trace(t, p)
    back = read_trace(p)
    assert np.array_equal(back.arrival_s, t.arrival_s)
    assert np.array_equal(back.input_tokens, t.input_tokens)
    assert back.hash_ids is not None and back.hash_ids.tolist() == [4, 5, 4, 4, 9, 10]
    bad = tmp_path / "bad.npz"
    np.savez(bad, format=np.array("pamkv-trace"), version=np.array(1), arrival_s=np.zeros(2),
             input_tokens=np.array([1, 0]), output_tokens=np.array([1, 1]))
    with pytest.raises(UserError, match="input_tokens', request 1"):
        read_trace(bad)


def test_jsonl_fast_and_slow_paths_agree(tmp_path: Path) -> None:
    rows = [{"timestamp": i * 7, "input_length": 100 + i, "output_length": i % 5, "hash_ids": [0, i]}
            for i in range(50)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    fast = read_trace(_write(tmp_path, "a.jsonl", text))
    # One bad line forces the line-by-line reader for the whole file.
    slow = read_trace(_write(tmp_path, "b.jsonl", text + "{oops\n"), skip_bad_rows=True)
    assert slow.skipped_rows == 1
    assert np.array_equal(fast.arrival_s, slow.arrival_s)
    assert np.array_equal(fast.input_tokens, slow.input_tokens)
    assert fast.hash_ids is not None and slow.hash_ids is not None
    assert np.array_equal(fast.hash_ids, slow.hash_ids)
