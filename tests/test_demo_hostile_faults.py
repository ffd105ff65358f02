"""The demo upstream's hostile chat faults answer as documented (read raw, over HTTP)."""

import gzip
import json

import pytest
import requests


def ask(upstream, spec: str, *, stream: bool = False) -> requests.Response:
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}
    return requests.post(
        f"{upstream.base_url}/chat/completions",
        json={**body, "stream": stream},
        headers={"X-Demo-Fault": spec, "Accept-Encoding": "identity"},
        timeout=10,
        stream=True,
    )


def content(response: requests.Response) -> str:
    return json.loads(response.raw.read())["choices"][0]["message"]["content"]


def test_deep_text_and_slow_lexer_set_the_reply_text(upstream):
    assert content(ask(upstream, "deep_text=5")) == "[[[[[]]]]]"
    assert content(ask(upstream, "slow_lexer=8")) == "```usd\n--------\n```"


@pytest.mark.parametrize(("spec", "escape"), [("nul", b"\\u0000"), ("surrogate", b"\\ud800")])
def test_nul_and_surrogate_go_out_json_escaped(upstream, spec, escape):
    raw = ask(upstream, spec).raw.read()

    assert escape in raw
    assert json.loads(raw)["choices"][0]["message"]["content"].startswith("Before")


def test_accounting_faults_set_the_cost_and_the_counts(upstream):
    assert ask(upstream, "huge_cost").headers["x-aimlapi-usd-spent"] == "1e10"
    nan = json.loads(ask(upstream, "nan_cost").raw.read())
    assert nan["meta"]["usage"]["usd_spent"] == "NaN"
    negative = json.loads(ask(upstream, "negative_cost").raw.read())
    assert negative["meta"]["usage"]["usd_spent"] == -5
    tokens = json.loads(ask(upstream, "huge_tokens").raw.read())
    assert tokens["usage"]["prompt_tokens"] == 10**20


def test_a_gzip_bomb_is_small_on_the_wire_and_large_decoded(upstream):
    response = ask(upstream, f"gzip_bomb={8 * 1024 * 1024}")
    wire = response.raw.read(decode_content=False)

    assert response.headers["Content-Encoding"] == "gzip"
    assert len(wire) < 200_000
    assert len(json.loads(gzip.decompress(wire))["choices"][0]["message"]["content"]) == (
        8 * 1024 * 1024
    )


def test_a_scripted_answer_is_sent_byte_for_byte_once(upstream):
    upstream.script_next(status=418, headers={"X-Test": "1"}, body=b"\x00not json")

    first, second = ask(upstream, ""), ask(upstream, "")

    assert (first.status_code, first.headers["X-Test"], first.raw.read()) == (
        418,
        "1",
        b"\x00not json",
    )
    assert second.status_code == 200
