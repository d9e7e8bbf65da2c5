"""Interactive attention explorer: one offline, self-contained HTML page.

`attention_html` writes the attention weights of one example (one or more
layers, one or more heads) into a single HTML file with hand-written inline
CSS and JavaScript: no framework, no network access (its Content Security
Policy lets the browser load nothing), no external file. Open it from disk
in any browser to pick a layer and a head, hover the tokens and read the
weights as lines between two token columns or as a heatmap.
"""

import html
import json

import numpy as np

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none';
 script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:18px;margin:0 0 10px}
#controls{display:flex;gap:18px;align-items:center;flex-wrap:wrap}
#legend span{margin-right:10px;white-space:nowrap}
#info{min-height:1.5em;margin:10px 0;color:#444}
#views,#pairs{display:flex;gap:40px;align-items:flex-start;flex-wrap:wrap}
#pairs{gap:0;flex-wrap:nowrap}
.col{display:flex;flex-direction:column}
#queries,th.q{text-align:right}
.token{height:var(--row);line-height:var(--row);padding:0 6px;
  border-radius:3px}
.token,th{white-space:pre;cursor:default}
.empty::before{content:"\2205";color:#999}
.active{background:#ffd54f;font-weight:bold;outline:1px solid #c99700}
#lines.focus line:not([data-highlighted]){stroke-opacity:.04}
#heatmap{border-collapse:collapse}
td{width:var(--cell);height:var(--cell);padding:0;border:1px solid #eee}
td.mark{border-color:#c99700}
th{font-weight:normal;padding:2px 4px}
th.k{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left}
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="controls">
<label>Layer <select id="layer"></select></label>
<label>Head <select id="head"></select></label>
<span id="legend"></span>
</div>
<div id="info"></div>
<div id="views">
<div id="pairs"><div class="col" id="queries"></div>
<svg id="lines" width="0" height="0"></svg>
<div class="col" id="keys"></div></div>
<table id="heatmap"></table>
</div>
<script type="application/json" id="attention-data">__DATA__</script>
<script>
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("attention-data").textContent);
  const PALETTE = [[31, 119, 180], [255, 127, 14], [44, 160, 44],
    [214, 39, 40], [148, 103, 189], [140, 86, 75], [227, 119, 194],
    [127, 127, 127], [188, 189, 34], [23, 190, 207]];
  const T = Math.max(...data.queries.concat(data.keys).map((t) => t.length));
  const ROW = Math.max(22, Math.min(34, Math.floor(480 / T)));
  const WIDTH = 280, svg = $("lines");
  const state = {layer: 0, head: 0, token: null, scale: 1};
  const rgb = (h) => PALETTE[h % PALETTE.length];
  const css = (c, a) => `rgba(${c[0]},${c[1]},${c[2]},${a.toFixed(3)})`;
  const show = (t) => (t === "" ? "\u2205" : t);
  const weights = () => data.weights[state.layer];
  const target = () => data.queries[state.layer];  // per layer
  const source = () => data.keys[state.layer];
  const heads = () => (state.head === "all" ?
    weights().map((_, h) => h) : [state.head]);
  const mean = (q, k) => heads().reduce(
    (s, h) => s + weights()[h][q][k], 0) / heads().length;
  const alpha = (q, k) => Math.abs(mean(q, k)) / state.scale;
  function mix(q, k) {  // head colours, weighted by each head's weight
    const hs = heads(), w = hs.map((h) => Math.abs(weights()[h][q][k]));
    const total = w.reduce((a, b) => a + b, 0) || 1;
    return [0, 1, 2].map((c) => Math.round(
      hs.reduce((s, h, i) => s + w[i] * rgb(h)[c], 0) / total));
  }
  function el(tag, props, parent) {  // text goes in with textContent only
    const node = Object.assign(document.createElement(tag), props);
    return parent ? parent.appendChild(node) : node;
  }
  function token(tag, cls, side, index, text, parent) {
    const node = el(tag, {textContent: text, className:
      `${cls} ${side}` + (text === "" ? " empty" : "")}, parent);
    Object.assign(node.dataset, {side, index});
    node.addEventListener("mouseenter", () => focus({side, index}));
    node.addEventListener("mouseleave", () => focus(null));
  }
  function readState() {
    const p = new URLSearchParams(location.search);
    new URLSearchParams(location.hash.slice(1)).forEach(
      (value, key) => p.set(key, value));
    state.layer = Math.max(0, data.layers.indexOf(p.get("layer")));
    const n = weights().length, head = p.get("head") || "";
    const h = /^\d+$/.test(head) ? Number(head) : -1;
    state.head = h < n && h >= 0 ? h : (n > 1 ? "all" : 0);
    const m = /^([qk])(\d+)$/.exec(p.get("token") || "");
    const size = m && (m[1] === "q" ? target() : source()).length;
    state.token = m && Number(m[2]) < size ?
      {side: m[1], index: Number(m[2])} : null;
  }
  function writeState() {
    const p = new URLSearchParams({layer: data.layers[state.layer],
      head: state.head});
    if (state.token) p.set("token", state.token.side + state.token.index);
    try { history.replaceState(null, "", "#" + p); } catch (e) { }
  }
  function focus(t) { state.token = t; highlight(); writeState(); }
  function build() {
    $("title").textContent = document.title = data.title;
    document.body.style.setProperty("--row", ROW + "px");
    data.layers.forEach((name, i) =>
      el("option", {textContent: name, value: i}, $("layer")));
    $("layer").onchange = (e) => {
      state.layer = Number(e.target.value);
      if (state.head >= weights().length) state.head = 0;
      render(); writeState();
    };
    $("head").onchange = (e) => {
      const v = e.target.value;
      state.head = v === "all" ? v : Number(v);
      render(); writeState();
    };
  }
  function columns() {
    $("queries").replaceChildren(); $("keys").replaceChildren();
    target().forEach((t, i) => token("div", "token", "q", i, t,
      $("queries")));
    source().forEach((t, i) => token("div", "token", "k", i, t,
      $("keys")));
  }
  function headOptions() {
    const select = $("head"), n = weights().length;
    const color = (h) => `color:${css(rgb(h), 1)}`;
    select.replaceChildren();
    if (n > 1) el("option", {textContent: "all heads", value: "all"}, select);
    for (let h = 0; h < n; h++) {
      el("option", {textContent: `head ${h}`, value: h, style: color(h)},
        select);
    }
    select.value = String(state.head);
    $("legend").replaceChildren(...heads().map((h) =>
      el("span", {textContent: `\u25a0 head ${h}`, style: color(h)})));
  }
  function drawLines() {
    svg.replaceChildren();
    svg.setAttribute("width", WIDTH);
    svg.setAttribute("height", T * ROW);
    for (const h of heads()) {
      weights()[h].forEach((row, q) => row.forEach((v, k) => {
        const a = Math.abs(v) / state.scale;
        if (a < 0.01) return;  // invisible anyway; keeps the SVG small
        const line = document.createElementNS(svg.namespaceURI, "line");
        const attrs = {x1: 0, y1: (q + 0.5) * ROW, x2: WIDTH,
          y2: (k + 0.5) * ROW, stroke: css(rgb(h), 1),
          "stroke-opacity": a.toFixed(3),
          "stroke-width": (0.5 + 3.5 * a).toFixed(2),
          "data-q": q, "data-k": k, "data-head": h};
        for (const [key, value] of Object.entries(attrs)) {
          line.setAttribute(key, value);
        }
        svg.appendChild(line);
      }));
    }
  }
  function drawHeatmap() {
    const table = $("heatmap"), hs = heads();
    const size = Math.max(6, Math.min(44, Math.floor(600 / T)));
    table.style.setProperty("--cell", size + "px");
    table.replaceChildren();
    el("caption", {textContent: hs.length > 1 ?
      `mean of ${hs.length} heads` : `head ${hs[0]}`}, table);
    const top = el("tr", {}, table);
    el("th", {}, top);
    source().forEach((t, k) => token("th", "", "k", k, t, top));
    target().forEach((t, q) => {
      const tr = el("tr", {}, table);
      token("th", "", "q", q, t, tr);
      source().forEach((s, k) => {
        const title = [`${show(t)} \u2192 ${show(s)}: ` +
          (hs.length > 1 ? "mean " : "") + mean(q, k).toFixed(4)].concat(
          hs.length < 2 ? [] : hs.map((h) =>
            `head ${h}: ${weights()[h][q][k].toFixed(4)}`)).join("\n");
        const td = el("td", {title}, tr);
        Object.assign(td.dataset, {q, k});
        td.style.background = css(hs.length > 1 ? [38, 70, 140] :
          rgb(hs[0]), alpha(q, k));
        td.onmouseenter = () => {
          $("info").textContent = title.replace(/\n/g, ", ");
        };
        td.onmouseleave = info;
      });
    });
  }
  function highlight() {
    const t = state.token;
    const hit = (n) => t !== null && Number(n.dataset[t.side]) === t.index;
    document.body.dataset.token = t ? t.side + t.index : "";
    svg.classList.toggle("focus", t !== null);
    for (const n of document.querySelectorAll("line, td")) {
      if (hit(n)) n.setAttribute("data-highlighted", "true");
      else n.removeAttribute("data-highlighted");
      if (n.tagName === "TD") n.classList.toggle("mark", hit(n));
    }
    for (const n of document.querySelectorAll("[data-side]")) {
      const i = Number(n.dataset.index), side = n.dataset.side;
      n.classList.toggle("active", t !== null && side === t.side &&
        i === t.index);
      n.style.background = "";
      if (t === null || side === t.side || n.tagName === "TH") continue;
      const [q, k] = t.side === "q" ? [t.index, i] : [i, t.index];
      n.style.background = css(mix(q, k), 0.6 * alpha(q, k));
    }
    info();
  }
  function info() {
    const t = state.token, box = $("info");
    if (t === null) {
      box.textContent = "Hover a token: left, where it looks; right, " +
        "what looks at it. Hover a heatmap cell for its weight.";
      return;
    }
    const isQuery = t.side === "q";
    const own = (isQuery ? target() : source())[t.index];
    const best = (isQuery ? source() : target()).map((tok, i) =>
      [tok, isQuery ? mean(t.index, i) : mean(i, t.index)])
      .sort((a, b) => b[1] - a[1]).slice(0, 3);
    box.textContent = `"${show(own)}" ` +
      (isQuery ? "looks at: " : "is looked at by: ") +
      best.map(([tok, v]) => `"${show(tok)}" ${v.toFixed(3)}`).join(", ");
  }
  function render() {
    $("layer").value = String(state.layer);
    state.scale = weights().flat(2).reduce(
      (m, v) => Math.max(m, Math.abs(v)), 1e-12);
    const t = state.token, size = t && (t.side === "q" ? target() :
      source()).length;
    if (t && t.index >= size) state.token = null;  // not in this layer
    headOptions(); columns(); drawLines(); drawHeatmap(); highlight();
  }
  build(); readState(); render();
})();
</script>
</body>
</html>
"""


def _to_numpy(value, name):
    """Converts one weights entry (array, list or tensor) to float64."""
    if hasattr(value, "shape") and not isinstance(value, np.ndarray):
        try:
            from keras import ops

            value = ops.convert_to_numpy(value)
        except Exception:  # not a backend tensor: let numpy try
            pass
    try:
        return np.asarray(value, dtype="float64")
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`weights` ({name}) must be a numeric array. Received: "
            f"{type(value).__name__} ({error})"
        ) from error


def _layers(weights):
    """Returns `(names, arrays)`, each array `[H, Tq, Tk]`, all checked."""
    if isinstance(weights, dict):
        if not weights:
            raise ValueError("`weights` is an empty dict: give one layer.")
        items = [(str(name), value) for name, value in weights.items()]
    else:
        items = [("attention", weights)]
    names, arrays = [], []
    for name, value in items:
        array = _to_numpy(value, name)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or 0 in array.shape:
            raise ValueError(
                f"`weights` ({name}) must be a non-empty [Tq, Tk] or "
                f"[H, Tq, Tk] array (select one example of the batch "
                f"first). Received: weights.shape={array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"`weights` ({name}) contains NaN or inf.")
        names.append(name)
        arrays.append(array)
    if len(set(names)) != len(names):
        raise ValueError(f"`weights` has duplicate layer names: {names}")
    return names, arrays


def _tokens(tokens):
    """Converts tokens to `str`, decoding bytes as UTF-8."""
    return [
        t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)
        for t in tokens
    ]


def _layer_tokens(name, shape, source, target):
    """`(queries, keys)`: the tokens on each side of one layer, by its
    shape and name (`encoder...` reads the source, a decoder's `...self...`
    the target, cross-attention target → source; one query, as a pooling,
    is labelled with the layer's name)."""
    tq, tk = shape
    lower = name.lower()
    sides = [(target, source), (source, source), (target, target)]
    if "encoder" in lower or target is source:
        sides.insert(0, (source, source))
    elif "self" in lower:
        sides.insert(0, (target, target))
    sides += [([name], source), ([name], target)]
    for queries, keys in sides:
        if (len(queries), len(keys)) == (tq, tk):
            return queries, keys
    if tk not in (len(source), len(target)):
        argument = "source_tokens"
    else:
        argument = "source_tokens" if target is source else "target_tokens"
    raise ValueError(
        f"`{argument}` must have one token per key and per query of "
        f"`weights` ({name}: Tq={tq}, Tk={tk}); target_tokens=None means "
        f"self-attention over source_tokens. Received: {len(source)} "
        f"source and {len(target)} target tokens"
    )


def _script_json(payload):
    """JSON that cannot close its `<script>` element nor start markup."""
    text = json.dumps(payload, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def attention_html(
    weights, source_tokens, target_tokens=None, path=None, title=None
):
    """Interactive attention explorer in one self-contained HTML page.

    The page (inline CSS and JavaScript, no network access, opens from a
    file) lets one pick a layer and a head, or all heads drawn in head
    colours, and shows the weights twice: as lines between the query
    (target) tokens on the left and the key (source) tokens on the right,
    their opacity and width growing with the weight, and as a heatmap whose
    cells give their value on hover. Hovering a query shows where it looks,
    hovering a key what looks at it. The initial state can be set in the
    URL, e.g. `page.html?layer=decoder&head=2&token=q3` (`head=all`;
    `token=q3` highlights query 3, `token=k5` key 5); the highlighted
    token gets the class `active`, its lines and heatmap cells the
    attribute `data-highlighted="true"`. Token text is always escaped.

    Args:
        weights: the weights of one example: `[Tq, Tk]`, `[H, Tq, Tk]`, or
            a dict `{layer_name: [H, Tq, Tk] or [Tq, Tk]}` (e.g. one entry
            per layer, self- and cross-attention, as
            `visualization.attention_weights` names them). Each layer's
            query and key tokens are the target or source tokens by its
            shape and name: `encoder...` layers read the source on both
            sides, a decoder's `...self...` layers the target, others
            (cross-attention) target → source; a layer with one query
            (a pooling) shows its name as the query. NumPy arrays, lists
            or backend tensors; finite values (negative ones, as
            `DifferentialAttention`'s, are drawn by their size).
        source_tokens: the `Tk` key tokens (right column), any objects,
            shown as `str(token)` (bytes are decoded as UTF-8).
        target_tokens: the `Tq` query tokens (left column). `None` means
            self-attention over `source_tokens` (then `Tq == Tk`).
        path: optional file to write the page to (UTF-8).
        title: the page title. Defaults to `"Attention explorer"`.

    Returns:
        The HTML page as a string (also written to `path` if given).

    Raises:
        ValueError: if `weights` is not 2-D/3-D (or a non-empty dict of
            such) or not finite, or if a layer's `Tq` or `Tk` matches no
            token list (naming `source_tokens` or `target_tokens`).

    Examples:
        >>> import numpy as np
        >>> weights = np.full((2, 3, 3), 1 / 3)
        >>> page = attention_html(weights, ["the", "cat", "sat"])
        >>> "<!DOCTYPE html>" in page
        True

    Reference:
        Vig, 2019, "A Multiscale Visualization of Attention in the
        Transformer Model" (bertviz).
    """
    names, arrays = _layers(weights)
    source = _tokens(source_tokens)
    target = source if target_tokens is None else _tokens(target_tokens)
    sides = [
        _layer_tokens(name, array.shape[1:], source, target)
        for name, array in zip(names, arrays)
    ]
    title = "Attention explorer" if title is None else str(title)
    payload = {
        "title": title,
        "layers": names,
        "weights": [np.round(array, 4).tolist() for array in arrays],
        "source": source,
        "target": target,
        "queries": [queries for queries, _ in sides],
        "keys": [keys for _, keys in sides],
        "self_attention": target_tokens is None,
    }
    head, tail = _TEMPLATE.split("__DATA__")
    title_html = html.escape(title).encode("ascii", "xmlcharrefreplace")
    head = head.replace("__TITLE__", title_html.decode("ascii"))
    page = head + _script_json(payload) + tail
    if path is not None:
        with open(path, "w", encoding="utf-8") as file:
            file.write(page)
    return page
