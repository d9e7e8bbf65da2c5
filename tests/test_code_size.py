"""The package stays readable: functions of one screen, classes of a few
hundred lines, modules of a few hundred more.

Counted in code lines: no docstrings, comments or blank lines; a
function's signature is not held against its body or its class (keras's
`MultiHeadAttention` signature alone has 26 arguments).
"""

import ast
import io
import pathlib
import tokenize

import pytest

pytestmark = pytest.mark.backend_neutral  # see conftest.py

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_attention"
BARS = {"module": 400, "class": 300, "function": 60}
SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
           tokenize.DEDENT, tokenize.ENDMARKER}  # fmt: skip
DEFINITIONS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _docstring_lines(tree):
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, DEFINITIONS) and ast.get_docstring(node):
            first = node.body[0]
            lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(source):
    """The syntax tree and the numbers of the lines that hold code."""
    tree = ast.parse(source)
    docstrings = _docstring_lines(tree)
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in SKIPPED:
            lines.update(range(token.start[0], token.end[0] + 1))
    return tree, lines - docstrings


def sizes(source, name):
    """`[(kind, name, code lines)]` of a module, its classes and functions."""
    tree, lines = code_lines(source)
    signatures = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            signatures.update(range(node.lineno, node.body[0].lineno))
    rows = [("module", name, len(lines))]
    for node in ast.walk(tree):
        if not isinstance(node, DEFINITIONS[1:]):
            continue
        span = set(range(node.lineno, node.end_lineno + 1))
        if isinstance(node, ast.ClassDef):
            size = len((span & lines) - signatures)
            rows.append(("class", f"{name}:{node.name}", size))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            size = len(span & lines - signatures)
            rows.append(("function", f"{name}:{node.name}", size))
    return rows


def test_the_counter_counts_code_only():
    source = 'def f(\n    a,\n):\n    """Doc."""\n\n    # note\n    return a\n'
    rows = {(kind, name): size for kind, name, size in sizes(source, "m")}
    assert rows[("function", "m:f")] == 1  # `return a`
    assert rows[("module", "m")] == 4  # the signature's 3 lines + return


@pytest.mark.parametrize(
    "path",
    sorted(PACKAGE.rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_module_class_and_function_sizes(path):
    over = [
        f"{kind} {name}: {size} code lines (bar {BARS[kind]})"
        for kind, name, size in sizes(path.read_text(), path.name)
        if size > BARS[kind]
    ]
    assert not over, "\n".join(over)
