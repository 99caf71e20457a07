"""The serving API (sidrec.serve) over a results folder built in-process: a tiny,
untrained decoder with the SID tokens added, as SFT leaves it. What is checked is the
plumbing (model choice, lookup, exclusion, cutting, batching, error replies); the
ranking itself is the Recommender's, compared with calling it directly."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from sidrec.decode.graphs import BeamGraphs
from sidrec.errors import InputError
from sidrec.lm.base import build_tiny, load_causal_lm, save_model
from sidrec.lm.prompts import tokenizer_corpus
from sidrec.lm.vocab import add_sid_tokens
from sidrec.serve.__main__ import parse_args
from sidrec.serve.app import MAX_BODY_BYTES, create_app
from sidrec.serve.artifacts import ResultsFolder, code_commit, history_limit, select_model
from sidrec.serve.batcher import MicroBatcher, QueueFull
from sidrec.serve.catalogue import Catalogue, UnknownItem
from sidrec.serve.engine import Engine, Query
from sidrec.serve.latency import EDGES_MS, LatencyHistogram, percentile_ms
from sidrec.serve.load import load_service
from sidrec.sid import write_sid_json

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS = 24
# Three levels (codebooks 3, 4, 2): unique per item.
CODES = np.stack([np.arange(N_ITEMS) % 3, (np.arange(N_ITEMS) // 3) % 4, np.arange(N_ITEMS) // 12],
                 axis=1).astype(np.int64)
# Items 22 and 23 share a title (as remakes do): a title alone cannot name them.
TITLES = [f"Film {i} ({1990 + i})" for i in range(22)] + ["Heat", "Heat"]
TINY = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=300, seed=0)
LIMIT = 4   # the fixture's history limit (sft_report.json's longest_history)


def make_results(root: Path, *, metrics: dict | None = None) -> Path:
    """root/ml-tiny laid out as the pipeline leaves results/DATASET: data/items.parquet,
    sid.json, sft/ and rl/ (the same weights), metrics.tsv (valid NDCG@10 per model),
    sft/sft_report.json and a provenance.json."""
    out = root / "ml-tiny"
    build_tiny(root / "base", tokenizer_corpus(TITLES), TINY)
    model, tokenizer = load_causal_lm(root / "base")
    add_sid_tokens(model, tokenizer, CODES)
    save_model(model, tokenizer, out / "sft")
    shutil.copytree(out / "sft", out / "rl")
    (out / "sft" / "sft_report.json").write_text(json.dumps({"longest_history": LIMIT}))
    (out / "data").mkdir(parents=True)
    pd.DataFrame({"item_id": np.arange(N_ITEMS), "title": TITLES, "text": [f"About {t}" for t in TITLES],
                  "source_id": [f"m{i}" for i in range(N_ITEMS)]}).to_parquet(out / "data" / "items.parquet",
                                                                             index=False)
    write_sid_json(out / "sid.json", CODES)
    metrics = {"sft": 0.040, "rl": 0.050} if metrics is None else metrics
    pd.DataFrame([{"dataset": "ml-tiny", "model": m, "split": split, "metric": "NDCG", "k": 10,
                   "value": v if split == "valid" else 0.99, "n": 10}
                  for m, v in metrics.items() for split in ("valid", "test")]
                 ).to_csv(out / "metrics.tsv", sep="\t", index=False)
    (out / "provenance.json").write_text(json.dumps({"commit": "abc"}))
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory, one_thread):
    return make_results(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def service(results):
    # A long wait so that requests sent together surely share a batch in the tests.
    service = load_service(results, max_wait_ms=50)
    yield service
    service.batcher.close()


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service))


def recommend(client, body, **kwargs):
    return client.post("/recommend", json=body, **kwargs)


def direct_top(service, history, k, exclude=True):
    """What the Recommender itself ranks for this history, history left out."""
    rec = service.batcher.run_batch.__self__.recommender
    result = rec.top_k([history], N_ITEMS)
    seen = set(history) if exclude else set()
    return [int(i) for i in result.items[0] if i not in seen][:k]


def assert_same_ranking(got, want, atol=1e-4):
    """The same items in the same order with the same scores, up to the float noise that
    a different batch shape (other left padding) leaves in the scores."""
    assert len(got) == len(want)
    np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], rtol=0, atol=atol)
    assert [g["id"] for g in got] == [w["id"] for w in want]


# -- the results folder --------------------------------------------------------------------

def test_the_default_model_is_the_better_one_on_valid_ndcg(results, tmp_path):
    folder = ResultsFolder(results)
    assert select_model(folder) == "rl"
    tie = make_results(tmp_path / "tie", metrics={"sft": 0.05, "rl": 0.05})
    assert select_model(ResultsFolder(tie)) == "sft"   # as significance.select_lm: the first on a tie
    (tie / "metrics.tsv").unlink()
    with pytest.raises(InputError, match="--model"):
        select_model(ResultsFolder(tie))
    shutil.rmtree(tie / "rl")
    assert select_model(ResultsFolder(tie)) == "sft"   # the only model there


def test_the_history_limit_comes_from_the_sft_report_else_the_training_rows(results, tmp_path):
    assert history_limit(ResultsFolder(results), "rl") == LIMIT   # rl reads its SFT model's report
    bare = tmp_path / "bare"
    (bare / "data").mkdir(parents=True)
    pd.DataFrame({"user": [0, 1], "history": [[1, 2, 3], [4]], "target": [5, 6]}).to_parquet(
        bare / "data" / "train.parquet")
    assert history_limit(ResultsFolder(bare), "sft") == 3
    with pytest.raises(InputError, match="--max-history"):
        history_limit(ResultsFolder(tmp_path / "nothing"), "sft")


def test_a_missing_artifact_is_named(results, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(results, partial)
    (partial / "sid.json").unlink()
    with pytest.raises(InputError, match="sid.json"):
        load_service(partial, model="sft")


# -- the endpoints ---------------------------------------------------------------------------

def test_health_names_model_dataset_commit_and_provenance(client, results):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "rl" and body["dataset"] == "ml-tiny"
    assert body["provenance_sha256"] == hashlib.sha256((results / "provenance.json").read_bytes()).hexdigest()
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert body["commit"] == (git.stdout.strip() if git.returncode == 0 else None) == code_commit()
    assert body["n_items"] == N_ITEMS and body["max_history"] == LIMIT and body["device"] == "cpu"
    assert set(body["batching"]) >= {"max_batch", "max_wait_ms", "batches", "requests"}


def test_health_says_null_for_a_run_without_provenance(results, tmp_path):
    copy = tmp_path / "noprov"
    shutil.copytree(results, copy)
    (copy / "provenance.json").unlink()
    service = load_service(copy, model="sft", max_batch=1)
    try:
        body = TestClient(create_app(service)).get("/health").json()
    finally:
        service.batcher.close()
    assert body["provenance_sha256"] is None and body["model"] == "sft"


def test_recommend_returns_k_catalogue_items_best_first_without_the_history(client, service):
    history = [3, 7, 11]
    response = recommend(client, {"history": history, "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "rl" and body["k"] == 5 and body["history_cut"] == 0 and body["notes"] == []
    assert [h["id"] for h in body["history"]] == history
    ids = [item["id"] for item in body["items"]]
    assert len(ids) == 5 == len(set(ids)) and not set(ids) & set(history)
    assert ids == direct_top(service, history, 5)
    assert [item["rank"] for item in body["items"]] == [1, 2, 3, 4, 5]
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    for item in body["items"]:
        assert item["title"] == TITLES[item["id"]]
        assert item["sid"] == [f"<a_{CODES[item['id'], 0]}>", f"<b_{CODES[item['id'], 1]}>",
                               f"<c_{CODES[item['id'], 2]}>"]
        near = item["closest_in_history"]
        if near is not None:   # the "why": a history item sharing the first SID levels
            assert near["id"] in history and item["sid"][:item["shared_levels"]] == near["sid"][:item["shared_levels"]]
            assert item["shared_levels"] >= 1


def test_exclude_history_false_may_return_history_items(client, service):
    body = recommend(client, {"history": [0, 1], "k": N_ITEMS, "exclude_history": False}).json()
    assert sorted(item["id"] for item in body["items"]) == list(range(N_ITEMS))
    assert [i["id"] for i in body["items"]][:5] == direct_top(service, [0, 1], 5, exclude=False)


def test_exact_titles_name_items_like_their_ids(client):
    by_id = recommend(client, {"history": [2, 5], "k": 4}).json()
    by_title = recommend(client, {"history": ["Film 2 (1992)", "  Film 5   (1995) "], "k": 4}).json()
    assert by_title["items"] == by_id["items"] and by_title["history"] == by_id["history"]


def test_a_history_over_the_limit_is_cut_to_its_most_recent_items_and_says_so(client):
    history = [1, 2, 3, 4, 5, 6, 7]
    body = recommend(client, {"history": history, "k": 3}).json()
    assert body["history_cut"] == 3 and [h["id"] for h in body["history"]] == history[-LIMIT:]
    assert "cut" in body["notes"][0] and str(LIMIT) in body["notes"][0]
    assert body["items"] == recommend(client, {"history": history[-LIMIT:], "k": 3}).json()["items"]


def test_k_up_to_the_catalogue_with_exclusion_returns_what_is_left_and_says_so(client):
    body = recommend(client, {"history": [0, 1, 2], "k": N_ITEMS}).json()
    assert len(body["items"]) == N_ITEMS - 3 and "only" in body["notes"][0]


def test_items_searches_titles_case_insensitively_prefix_first(client):
    found = client.get("/items", params={"q": "film 1"}).json()
    assert [i["id"] for i in found] == [1] + list(range(10, 20))[:9]   # default limit 10
    assert client.get("/items", params={"q": "heat", "limit": 5}).json() == [
        {"id": 22, "title": "Heat", "sid": ["<a_1>", "<b_3>", "<c_1>"]},
        {"id": 23, "title": "Heat", "sid": ["<a_2>", "<b_3>", "<c_1>"]}]
    assert [i["id"] for i in client.get("/items", params={"q": "(1999)"}).json()] == [9]
    assert client.get("/items", params={"q": "no such film"}).json() == []


@pytest.mark.parametrize("params, field", [({"q": ""}, "q"), ({}, "q"), ({"q": "x" * 201}, "q"),
                                           ({"q": "film", "limit": 0}, "limit"),
                                           ({"q": "film", "limit": 51}, "limit"),
                                           ({"q": "film", "limit": "ten"}, "limit")])
def test_items_bad_query_is_422_naming_the_parameter(client, params, field):
    response = client.get("/items", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == field and response.json()["error"].startswith(field)


def test_the_page_is_served_and_fetches_nothing_from_elsewhere(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'name="viewport"' in page and 'id="search"' in page and "/recommend" in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


def test_openapi_docs_list_every_endpoint(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/items", "/health"} <= set(paths)


# -- bad input: a 4xx naming the field, and the server goes on ------------------------------

BAD_BODIES = [
    ({"history": [0, 999]}, 422, "history[1]", "unknown item id 999"),
    ({"history": [-1]}, 422, "history[0]", "unknown item id -1"),
    ({"history": ["Film 1", "No Such Film"]}, 422, "history[0]", "no item has the title"),
    ({"history": ["Heat"]}, 422, "history[0]", "shared by items [22, 23]"),
    ({"history": []}, 422, "history", "empty"),
    ({"history": [1], "k": 0}, 422, "k", "out of range"),
    ({"history": [1], "k": N_ITEMS + 1}, 422, "k", "out of range"),
    ({"history": [1], "k": "5"}, 422, "k", "integer"),
    ({"history": [1], "k": 2.0}, 422, "k", "integer"),
    ({"history": [1], "exclude_history": "yes"}, 422, "exclude_history", "boolean"),
    ({"history": [1.5]}, 422, "history[0]", "item id (integer) or an exact title"),
    ({"history": [True]}, 422, "history[0]", "item id (integer) or an exact title"),
    ({"history": [None]}, 422, "history[0]", "item id (integer) or an exact title"),
    ({"history": [[1]]}, 422, "history[0]", "item id (integer) or an exact title"),
    ({"history": ["x" * 501]}, 422, "history[0]", "item id (integer) or an exact title"),
    ({"history": "Film 1"}, 422, "history", "list"),
    ({"k": 3}, 422, "history", "required"),
    ({"history": [1], "user": 3}, 422, "user", "unknown field"),
]


@pytest.mark.parametrize("body, status, field, message", BAD_BODIES)
def test_bad_recommend_body_is_4xx_naming_the_field(client, body, status, field, message):
    response = recommend(client, body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"][0]
    assert detail["field"] == field and message in detail["message"], detail


@pytest.mark.parametrize("content, headers, status, message", [
    (b"{not json", {"content-type": "application/json"}, 400, "not valid JSON"),
    (b"[1, 2]", {"content-type": "application/json"}, 422, "JSON object"),
    (b'"history"', {"content-type": "application/json"}, 422, "JSON object"),
    (b"", {"content-type": "application/json"}, 422, "JSON object is required"),
    (b'{"history": [1]}', {"content-type": "text/plain"}, 422, "content-type: application/json"),
    (b"__import__('os').system('true')", {"content-type": "application/json"}, 400, "not valid JSON"),
])
def test_a_body_that_is_not_a_json_object_is_4xx_naming_the_body(client, content, headers, status, message):
    response = client.post("/recommend", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["detail"][0]["field"] == "body" and message in response.json()["error"]


def test_an_oversized_body_is_413_whether_announced_or_streamed(client):
    big = json.dumps({"history": [1] * (MAX_BODY_BYTES // 2)}).encode()
    response = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["detail"][0]["field"] == "body"

    def chunks():   # no content-length: the limit must hold while reading
        for start in range(0, len(big), 4096):
            yield big[start:start + 4096]

    response = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["error"]


def test_the_server_still_answers_after_every_bad_input(client):
    for body, *_ in BAD_BODIES:
        recommend(client, body)
    assert client.get("/health").json()["status"] == "ok"
    assert recommend(client, {"history": [1], "k": 2}).status_code == 200


# -- batching --------------------------------------------------------------------------------

def test_concurrent_requests_share_one_decoder_batch_and_get_their_own_answers(service, client):
    histories = [[i] for i in range(8)] + [[3, 4, 5, 6, 7, 8]]   # the last one is cut to LIMIT
    alone = [recommend(client, {"history": h, "k": 3 + i % 3}).json() for i, h in enumerate(histories)]
    before = service.batcher.stats()

    async def together():
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post("/recommend", json={"history": h, "k": 3 + i % 3})
                                          for i, h in enumerate(histories)))

    responses = asyncio.run(together())
    after = service.batcher.stats()
    for response, single in zip(responses, alone):
        assert_same_ranking(response.json()["items"], single["items"])
    assert after["requests"] - before["requests"] == len(histories)
    assert after["batches"] - before["batches"] < len(histories)   # gathered, not one forward each
    assert after["largest_batch"] > 1


def test_health_counts_each_recommend_in_the_apps_and_the_batchers_latencies(service, client):
    def counted(health):
        return sum(health["recommend_latency_counts"]), sum(health["batching"]["latency_counts"])

    before = counted(client.get("/health").json())
    assert recommend(client, {"history": [1, 2], "k": 3}).status_code == 200
    assert recommend(client, {"history": [], "k": 3}).status_code == 422    # refused before the queue
    after = counted(client.get("/health").json())
    assert after[0] - before[0] == 2     # both requests went through the app
    assert after[1] - before[1] == 1     # only the valid one reached the batcher


def test_the_batcher_counts_each_requests_time_from_submit_to_result():
    gate = threading.Event()

    def run(batch):
        gate.wait(10)
        return list(batch)

    batcher = MicroBatcher(run, max_batch=4, max_wait_s=0.0)
    try:
        future = batcher.submit(0)
        time.sleep(0.2)              # held in the decoder for >= 200 ms
        gate.set()
        future.result(timeout=10)
        counts = batcher.stats()["latency_counts"]
        assert sum(counts) == 1
        assert 200 <= percentile_ms(counts, 50) < 10_000
    finally:
        gate.set()
        batcher.close()


def test_latency_percentiles_read_back_within_a_bucket():
    histogram = LatencyHistogram()
    for ms in [1.0] * 98 + [50.0, 400.0]:
        histogram.add(ms / 1000)
    counts = histogram.counts()
    assert sum(counts) == 100
    assert 1.0 <= percentile_ms(counts, 50) < 1.1      # the bucket's upper edge: within 10 %
    assert 1.0 <= percentile_ms(counts, 98) < 1.1
    assert 50.0 <= percentile_ms(counts, 99) < 55.0
    assert 400.0 <= percentile_ms(counts, 100) < 440.0
    assert percentile_ms([0] * len(counts), 99) is None
    histogram.add(10_000)                              # 10,000 s: above the last edge
    assert percentile_ms(histogram.counts(), 100) == EDGES_MS[-1]
    with pytest.raises(ValueError, match="q must be"):
        percentile_ms(counts, 0)
    with pytest.raises(ValueError, match="bucket counts"):
        percentile_ms(counts[:-1], 50)


def test_the_engine_answers_a_query_the_same_whatever_it_is_batched_with(service):
    engine: Engine = service.batcher.run_batch.__self__
    queries = [Query((1, 2), 3), Query((5,), 10, False), Query((7, 8, 9), 1)]
    together = engine.run(queries)
    assert [engine.run([q])[0].items for q in queries] == [r.items for r in together]


def test_beam_decoding_serves_catalogue_items_without_the_certificate(results, service):
    beam = load_service(results, model="sft", max_batch=1, decode="beam")
    try:
        assert beam.info["decode"] == "beam" and service.info["decode"] == "exact"
        engine: Engine = beam.batcher.run_batch.__self__
        ranked = engine.run([Query((1, 2), 5), Query((3,), 2, False)])
        assert [len(r.items) for r in ranked] == [5, 2]
        assert all(0 <= i < N_ITEMS for r in ranked for i in r.items)
        assert not {1, 2} & set(ranked[0].items)
        assert all(a >= b for r in ranked for a, b in zip(r.scores, r.scores[1:]))
        # On this catalogue 50 beams cover every item, so the plain search is already exact.
        exact = service.batcher.run_batch.__self__.run([Query((1, 2), 5)])[0]
        assert ranked[0].items == exact.items
    finally:
        beam.batcher.close()


def test_health_reports_the_decoders_totals(client):
    before = client.get("/health").json()["decoding"]
    assert before["decode"] == "exact" and before["beam_width"] == 50
    assert recommend(client, {"history": [1, 2], "k": 3}).status_code == 200
    after = client.get("/health").json()["decoding"]
    assert after["batches"] == before["batches"] + 1 and after["rows"] == before["rows"] + 1
    assert after["seconds"] > before["seconds"]
    # a float32 model on the CPU: one prefill of the prompt, exact without rescoring
    assert after["prefill_tokens"] > before["prefill_tokens"] and after["rescored_candidates"] == 0


def test_a_bfloat16_model_is_rescored_in_float32_and_a_float32_one_is_not(results, service):
    bf16 = load_service(results, model="sft", max_batch=1, dtype="bfloat16")
    try:
        assert bf16.info["dtype"] == "bfloat16" and service.info["dtype"] == "float32"
        engine: Engine = bf16.batcher.run_batch.__self__
        ranked = engine.run([Query((1, 2), 5)])[0]
        assert len(ranked.items) == 5 and all(0 <= i < N_ITEMS for i in ranked.items)
        assert engine.stats()["rescored_candidates"] >= 5 and engine.stats()["rows"] == 1
    finally:
        bf16.batcher.close()
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_service(results, model="sft", dtype="float16")


def test_cuda_graphs_are_used_only_for_beam_decoding_on_cuda(results, service):
    beam = load_service(results, model="sft", max_batch=1, decode="beam")
    try:
        engine: Engine = beam.batcher.run_batch.__self__
        assert engine.graphs is None and engine.stats()["cuda_graphs"] is None  # a CPU model
        assert service.batcher.run_batch.__self__.graphs is None                 # exact decoding
    finally:
        beam.batcher.close()
    assert parse_args(["--results", "r"]).cuda_graphs is True
    assert parse_args(["--results", "r", "--no-cuda-graphs"]).cuda_graphs is False


def test_graphs_are_captured_at_start_for_every_history_length_the_server_accepts(service, monkeypatch):
    engine: Engine = service.batcher.run_batch.__self__
    assert engine.warm_graphs(service.max_history) == 0          # no graphs on the CPU: nothing to capture
    recommender = engine.recommender
    graphs = BeamGraphs(recommender.model, recommender.trie, beam_width=engine.beam_width, capture=False)
    graphs.capture, captured = True, []
    monkeypatch.setattr(graphs, "_capture", lambda key, ids, attn: captured.append(key) or ("graph",))
    monkeypatch.setattr(engine, "graphs", graphs)
    assert engine.warm_graphs(service.max_history) == len(captured) > 0
    histories = [[0] * n for n in range(1, service.max_history + 1)] + [list(range(service.max_history))]
    for history in histories:   # a request's shape, with k + history up to the beam width
        P = -(-len(recommender.prompts([history])[0]) // graphs.length_step) * graphs.length_step
        depth = min(engine.beam_width, 10 + len(history))
        assert all((R, P, graphs.k_bucket(depth)) in captured for R in (1, 2, 64))


def test_an_unknown_decode_mode_is_refused(service):
    with pytest.raises(ValueError, match="decode must be one of"):
        Engine(service.batcher.run_batch.__self__.recommender, decode="greedy")


def test_the_batcher_gathers_up_to_max_batch_within_the_wait():
    sizes, gate = [], threading.Event()

    def run(batch):
        sizes.append(len(batch))
        gate.wait(10)   # the first (lone) request holds the worker while the rest queue up
        return [x * 2 for x in batch]

    batcher = MicroBatcher(run, max_batch=4, max_wait_s=0.2)
    try:
        futures = [batcher.submit(0)]
        time.sleep(0.2)
        futures += [batcher.submit(i) for i in range(1, 10)]
        gate.set()
        assert [f.result(timeout=10) for f in futures] == [i * 2 for i in range(10)]
        assert sizes == [1, 4, 4, 1]
    finally:
        gate.set()
        batcher.close()


def test_a_lone_request_is_not_kept_waiting_for_company():
    batcher = MicroBatcher(list, max_batch=8, max_wait_s=2.0)
    try:
        for i in range(3):
            started = time.perf_counter()
            assert batcher.submit(i).result(timeout=10) == i
            assert time.perf_counter() - started < 1.0
    finally:
        batcher.close()


def test_max_batch_one_turns_gathering_off():
    sizes = []
    batcher = MicroBatcher(lambda b: sizes.append(len(b)) or list(b), max_batch=1, max_wait_s=0.2)
    try:
        assert [f.result(timeout=10) for f in [batcher.submit(i) for i in range(5)]] == list(range(5))
        assert sizes == [1] * 5
    finally:
        batcher.close()


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on():
    def run(batch):
        if "boom" in batch:
            raise RuntimeError("decoder failed")
        return batch

    batcher = MicroBatcher(run, max_batch=8, max_wait_s=0.05)
    try:
        failing = [batcher.submit("boom"), batcher.submit("ok")]
        for future in failing:
            with pytest.raises(RuntimeError, match="decoder failed"):
                future.result(timeout=10)
        assert batcher.submit("later").result(timeout=10) == "later"
    finally:
        batcher.close()


def test_a_full_queue_is_refused_not_grown():
    gate = threading.Event()
    batcher = MicroBatcher(lambda b: gate.wait(10) and list(b), max_batch=1, max_wait_s=0, max_queue=2)
    try:
        first = batcher.submit(0)
        time.sleep(0.2)   # the worker holds the first; the queue has room for two more
        batcher.submit(1), batcher.submit(2)
        with pytest.raises(QueueFull):
            batcher.submit(3)
        gate.set()
        assert first.result(timeout=10) == 0
    finally:
        gate.set()
        batcher.close()


# -- the catalogue and the command line ------------------------------------------------------

def test_catalogue_resolve_names_the_position_of_a_bad_entry():
    catalogue = Catalogue(["A", "B", "B"], [["<a_0>"], ["<a_1>"], ["<a_2>"]])
    assert catalogue.resolve([0, "A", 2]) == [0, 0, 2]
    for history, index in (([0, 3], 1), (["A", "B"], 1), (["C"], 0)):
        with pytest.raises(UnknownItem) as error:
            catalogue.resolve(history)
        assert error.value.index == index


def test_the_command_line_binds_to_loopback_by_default():
    args = parse_args(["--results", "results/ml-100k"])
    assert args.host == "127.0.0.1" and args.model is None and args.device == "cpu" and args.max_batch == 32
    assert args.dtype is None and parse_args(["--results", "r", "--dtype", "float32"]).dtype == "float32"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_python_m_sidrec_serve_starts_and_answers_on_loopback(results):
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen([sys.executable, "-m", "sidrec.serve", "--results", str(results), "--model", "sft",
                               "--port", str(port), "--threads", "1"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the server did not start in 120 s"
                time.sleep(0.3)
        assert health.json()["model"] == "sft"
        started = time.perf_counter()
        answer = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"history": [1, "Film 2 (1992)"], "k": 5})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 5
        assert time.perf_counter() - started < 1.0
    finally:
        server.terminate()
        server.wait(30)


def test_the_command_line_reports_a_missing_results_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sidrec.serve", "--results", str(tmp_path / "none")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "error:" in out.stderr and "--model" in out.stderr


def test_a_dataset_folder_serves_its_lowest_seed_or_the_one_asked_for(tmp_path):
    d = tmp_path / "results" / "ml-100k"
    for sub in ("data", "seed-0", "seed-2", "seed-10", "seed-x"):
        (d / sub).mkdir(parents=True)
    lowest = ResultsFolder.find(d)
    assert lowest.root == d / "seed-0" and lowest.items == d / "data" / "items.parquet"
    assert lowest.sid == d / "seed-0" / "sid.json" and lowest.dataset == "ml-100k"
    assert ResultsFolder.find(d, seed=10).root == d / "seed-10"
    named = ResultsFolder.find(d / "seed-2")  # a run folder: its data one level up
    assert named.root == d / "seed-2" and named.data == d / "data" and named.dataset == "ml-100k"
    with pytest.raises(InputError, match=r"seed-5: not found \(seeds here: \['seed-0', 'seed-2', 'seed-10'\]\)"):
        ResultsFolder.find(d, seed=5)
    with pytest.raises(InputError, match="is not the folder of seed 0"):
        ResultsFolder.find(d / "seed-2", seed=0)
    flat = ResultsFolder.find(tmp_path / "one-run")  # everything in one folder
    assert flat.root == flat.data_root == tmp_path / "one-run"
