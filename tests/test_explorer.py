import html.parser
import json
import os
import re
import shutil
import subprocess
import urllib.parse

import keras
import numpy as np
import pytest

from keras_attention.explorer import attention_html

pytestmark = pytest.mark.backend_neutral  # see conftest.py

SOURCE = ["this", "cat", "is", "very", "large"]
TARGET = ["este", "gato", "es", "muy", "grande", "."]
HOSTILE = [
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "\"'&",
    "é中🙂",
    "",
]
DATA_TAG = re.compile(
    r'<script type="application/json" id="attention-data">(.*?)</script>',
    re.DOTALL,
)


def softmax_weights(*shape, seed=0):
    logits = np.random.default_rng(seed).normal(size=shape) * 3
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def embedded(page):
    """The JSON payload, parsed back out of its script tag."""
    (text,) = DATA_TAG.findall(page)
    return json.loads(text)


def test_two_dimensional_weights_are_one_head_of_one_layer():
    weights = softmax_weights(6, 5)
    data = embedded(attention_html(weights, SOURCE, TARGET))
    assert data["layers"] == ["attention"]
    np.testing.assert_allclose(data["weights"], weights[None, None], atol=1e-4)
    assert data["source"] == SOURCE and data["target"] == TARGET
    assert data["title"] == "Attention explorer"


def test_heads_round_trip_and_weights_are_rounded():
    weights = softmax_weights(4, 6, 5)
    page = attention_html(weights.tolist(), SOURCE, TARGET, title="Heads")
    data = embedded(page)
    np.testing.assert_allclose(data["weights"], weights[None], atol=1e-4)
    assert data["title"] == "Heads"
    numbers = re.findall(r"\d\.\d+", DATA_TAG.findall(page)[0])
    assert max(len(n) for n in numbers) <= 6  # at most 4 decimals


def test_dict_of_layers_round_trips_names_heads_and_2d_values():
    layers = {
        "decoder.0.cross": softmax_weights(4, 6, 5, seed=1),
        "decoder.1.cross <&>": softmax_weights(2, 6, 5, seed=2),
        "single": softmax_weights(6, 5, seed=3),
    }
    data = embedded(attention_html(layers, SOURCE, TARGET))
    assert data["layers"] == list(layers)
    for got, want in zip(data["weights"], layers.values()):
        np.testing.assert_allclose(got, want.reshape(-1, 6, 5), atol=1e-4)


def test_self_attention_uses_source_tokens_for_both_columns():
    data = embedded(attention_html(softmax_weights(2, 5, 5), SOURCE))
    assert data["source"] == data["target"] == SOURCE


def test_tokens_become_strings_and_tensors_are_accepted():
    weights = keras.ops.convert_to_tensor(softmax_weights(2, 3, 3))
    data = embedded(attention_html({"t": weights}, [1, None, b"\xc3\xa9"]))
    assert data["source"] == ["1", "None", "é"]
    np.testing.assert_allclose(
        data["weights"][0], keras.ops.convert_to_numpy(weights), atol=1e-4
    )


def test_hostile_tokens_round_trip_and_stay_escaped():
    tokens = HOSTILE + ["plain"]
    title = "</title><script>alert(2)</script> & é"
    page = attention_html(softmax_weights(2, 6, 6), tokens, title=title)
    data = embedded(page)
    assert data["source"] == data["target"] == tokens
    assert data["title"] == title
    assert "</script><script>alert(1)" not in page
    assert "<img" not in page and "</title><script>" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2


def test_the_browser_may_load_nothing():
    # The page's Content Security Policy: no request of any kind leaves it,
    # whatever a token or a later edit might try; only inline code runs.
    page = attention_html(softmax_weights(6, 5), SOURCE, TARGET)
    policy = re.search(r'Content-Security-Policy" content="([^"]*)"', page)
    directives = " ".join(policy.group(1).split())
    assert directives.startswith("default-src 'none';")
    assert "connect-src" not in directives and "http" not in directives


def test_page_is_self_contained():
    page = attention_html(softmax_weights(2, 6, 5), SOURCE, TARGET)
    assert page.startswith("<!DOCTYPE html>")
    for banned in [
        "http://",
        "https://",
        "<link",
        "src=",
        "fetch(",
        "XMLHttpRequest",
        "url(",
        "@import",
        "innerHTML",
    ]:
        assert banned not in page, banned


def test_each_layer_reads_its_own_tokens():
    # What `attention_weights` returns for a Transformer (and a pooling):
    # each layer's queries and keys are chosen by its shape and name.
    layers = {
        "encoder/block_0/self_attention": softmax_weights(2, 5, 5),
        "decoder/block_0/self_attention": softmax_weights(2, 6, 6),
        "decoder/block_0/cross_attention": softmax_weights(2, 6, 5),
        "decoder/alignments": softmax_weights(1, 6, 5),
    }
    data = embedded(attention_html(layers, SOURCE, TARGET))
    assert data["queries"] == [SOURCE, TARGET, TARGET, TARGET]
    assert data["keys"] == [SOURCE, TARGET, SOURCE, SOURCE]
    # Source and target of one length: the names decide.
    same = TARGET[:5]
    layers = {name: w[:, :5, :5] for name, w in layers.items()}
    data = embedded(attention_html(layers, SOURCE, same))
    assert data["queries"] == [SOURCE, same, same, same]
    assert data["keys"] == [SOURCE, same, SOURCE, SOURCE]
    classifier = {
        "encoder/block_0/self_attention": softmax_weights(2, 5, 5),
        "pooling": softmax_weights(1, 1, 5),
    }
    data = embedded(attention_html(classifier, SOURCE))
    assert data["queries"] == [SOURCE, ["pooling"]]
    assert data["keys"] == [SOURCE, SOURCE]


def test_path_writes_the_returned_page(tmp_path):
    path = tmp_path / "explorer.html"
    page = attention_html(softmax_weights(2, 6, 6), HOSTILE + ["x"], path=path)
    assert path.read_text(encoding="utf-8") == page


@pytest.mark.parametrize(
    "weights, source, target, name",
    [
        (np.ones(5), SOURCE, None, "weights"),
        (np.ones((1, 2, 6, 5)), SOURCE, TARGET, "weights"),
        ({"a": np.ones(5)}, SOURCE, None, "weights"),
        ({}, SOURCE, None, "weights"),
        (np.full((6, 5), np.nan), SOURCE, TARGET, "weights"),
        (np.full((6, 5), np.inf), SOURCE, TARGET, "weights"),
        (
            {"a": np.ones((6, 5)), "b": np.ones((4, 4))},
            SOURCE,
            TARGET,
            "source_tokens",
        ),
        ([[1.0, 2.0], [3.0]], SOURCE[:2], None, "weights"),
        (np.ones((0, 6, 5)), SOURCE, TARGET, "weights"),
        (np.ones((6, 4)), SOURCE, TARGET, "source_tokens"),
        (np.ones((4, 5)), SOURCE, TARGET, "target_tokens"),
        (np.ones((6, 5)), SOURCE, None, "source_tokens"),
    ],
)
def test_bad_inputs_raise_before_writing(
    tmp_path, weights, source, target, name
):
    path = tmp_path / "page.html"
    with pytest.raises(ValueError, match=name):
        attention_html(weights, source, target, path=path)
    assert not path.exists()


# Headless Chromium: the page renders and highlights from its query string.


class _Elements(html.parser.HTMLParser):
    """Flat list of `(tag, attributes, text)` of a dumped DOM."""

    VOID = {"meta", "br", "input", "img", "link", "hr"}

    def __init__(self, text):
        super().__init__()
        self.elements, self._open = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = [tag, dict(attrs), ""]
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag):
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if self._open:
            self._open[-1][2] += data

    def find(self, tag=None, cls=None, **attrs):
        return [
            (a, text)
            for t, a, text in self.elements
            if (tag is None or t == tag)
            and (cls is None or cls in a.get("class", "").split())
            and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


@pytest.fixture
def chromium(tmp_path):
    names = ["chromium", "chromium-browser", "google-chrome"]
    binary = next(filter(None, map(shutil.which, names)), None)
    if binary is None:
        pytest.skip("no Chromium: apt-get install chromium")
    home = tmp_path / "home"
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home))
    env["XDG_CACHE_HOME"] = str(home)

    def run(page_path, query, *flags):
        url = page_path.as_uri() + "?" + urllib.parse.urlencode(query)
        command = [
            binary,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={home / 'profile'}",
            *flags,
            url,
        ]
        return subprocess.run(
            command, capture_output=True, timeout=60, env=env, check=True
        ).stdout.decode("utf-8")

    return run


def rendered(chromium, page_path, **query):
    return _Elements(chromium(page_path, query, "--dump-dom"))


def test_browser_renders_tokens_lines_and_query_highlight(tmp_path, chromium):
    layers = {
        "decoder.0.cross": softmax_weights(4, 6, 5, seed=1),
        "decoder.1 <&>": softmax_weights(2, 6, 5, seed=2),
    }
    page_path = tmp_path / "page.html"
    page = attention_html(layers, SOURCE, TARGET, path=page_path)
    assert "<line" not in page and 'class="token' not in page

    dom = rendered(
        chromium, page_path, layer="decoder.1 <&>", head=0, token="q1"
    )
    assert [t for _, t in dom.find("div", "token", data_side="q")] == TARGET
    assert [t for _, t in dom.find("div", "token", data_side="k")] == SOURCE
    assert dom.find("body", data_token="q1")
    (active, text), *_ = dom.find("div", "active")
    assert (active["data-side"], active["data-index"], text) == (
        "q",
        "1",
        "gato",
    )
    lines = dom.find("line")
    assert lines and {a["data-head"] for a, _ in lines} == {"0"}
    marked = dom.find("line", data_highlighted="true")
    assert marked and {a["data-q"] for a, _ in marked} == {"1"}
    assert len(marked) == len(dom.find("line", data_q="1"))
    cells = dom.find("td", data_highlighted="true")
    assert {a["data-q"] for a, _ in cells} == {"1"} and len(cells) == 5
    assert "gato" in dom.find("td", data_q="1", data_k="1")[0][0]["title"]

    other = rendered(chromium, page_path, layer="decoder.1 <&>", token="q2")
    assert [a["data-index"] for a, _ in other.find("div", "active")] == ["2"]
    marked = other.find("line", data_highlighted="true")
    assert marked and {a["data-q"] for a, _ in marked} == {"2"}
    assert {a["data-head"] for a, _ in other.find("line")} == {"0", "1"}

    key = rendered(chromium, page_path, layer="decoder.0.cross", token="k4")
    marked = key.find("line", data_highlighted="true")
    assert marked and {a["data-k"] for a, _ in marked} == {"4"}
    assert len({a["data-head"] for a, _ in key.find("line")}) == 4


def test_browser_shows_each_layer_with_its_tokens(tmp_path, chromium):
    layers = {
        "encoder/block_0/self_attention": softmax_weights(2, 5, 5),
        "decoder/block_0/cross_attention": softmax_weights(2, 6, 5),
    }
    page_path = tmp_path / "page.html"
    attention_html(layers, SOURCE, TARGET, path=page_path)
    for name, queries in zip(layers, (SOURCE, TARGET)):
        dom = rendered(chromium, page_path, layer=name, token="q4")
        assert [t for _, t in dom.find("div", "token", data_side="q")] == (
            queries
        )
        (active, text), *_ = dom.find("div", "active")
        assert text == queries[4]
        assert len(dom.find("td", data_q="0")) == 5


def test_browser_keeps_hostile_tokens_as_text(tmp_path, chromium):
    tokens = HOSTILE + ["plain"]
    page_path = tmp_path / "hostile.html"
    attention_html(softmax_weights(6, 6), tokens, path=page_path)
    dom = rendered(chromium, page_path, token="k1")
    assert [t for _, t in dom.find("div", "token", data_side="k")] == tokens
    assert not dom.find("img") and len(dom.find("script")) == 2
    assert dom.find("div", "active", data_side="k", data_index="1")


def test_browser_screenshot(tmp_path, chromium):
    page_path = tmp_path / "page.html"
    attention_html(softmax_weights(2, 6, 5), SOURCE, TARGET, path=page_path)
    png = tmp_path / "shot.png"
    chromium(
        page_path,
        {"head": "all", "token": "q1"},
        f"--screenshot={png}",
        "--window-size=1200,800",
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
