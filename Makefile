# The README's two commands: `make demo` and `make test`. Both create the
# virtualenv from the project's own files first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_STAMP := $(VENV)/.torch-stamp
PYTEST := $(BIN)/python -m pytest -q -n 2
PYTEST_ARGS ?=
# Not in `make test` (nor CI): the benchmark scripts' --quick smoke runs,
# `make bench-quick` (about 10 minutes).
SKIP := --ignore=tests/test_benchmarks.py
export NO_MKDOCS_2_WARNING := 1

.PHONY: install install-torch browser demo test test-jax test-torch test-torch-suite lint docs bench bench-quick package clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,viz,docs,jax]'
	touch $(STAMP)

# PyTorch's default wheel is a CUDA build of several GB; 2.13.0 is taken
# from a local CPU wheel where the machine has one (any torch >= 2.4 works).
$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q 'torch==2.13.0'
	$(BIN)/python -m pip install -q -e '.[torch]'
	touch $(TORCH_STAMP)

install: $(STAMP)

install-torch: $(TORCH_STAMP)

demo: install
	$(BIN)/python examples/date_normalization.py --out out/date_normalization

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The attention explorer's browser tests (tests/test_explorer.py) run the
# page in headless Chromium, Debian's package, installed here where missing
# (as root); without it they skip and say so.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
	|| { [ "$$(id -u)" = 0 ] \
	  && { apt-get install -y -qq --no-install-recommends chromium \
	       || { apt-get update -qq \
	            && apt-get install -y -qq --no-install-recommends chromium; }; \
	     } >/dev/null 2>&1; } \
	|| echo "no Chromium: the explorer's browser tests will skip"

# TensorFlow (the default backend: the whole suite and the doctests), then
# the JAX-specific tests.
test: lint browser
	$(BIN)/mkdocs build --strict --quiet --site-dir site
	$(PYTEST) $(SKIP) $(PYTEST_ARGS)
	$(MAKE) test-jax

# On JAX, what only JAX runs or compiles its own way: keras.distribution and
# ring attention on 8 virtual devices, the kernel's paths, keras-hub's cache
# contract, jitted generation's compilations per length bucket (its tokens:
# the cross-backend test, equal to TensorFlow's, which pads nothing), and
# each kind of the attention family against its NumPy formula. Its outputs
# equal TensorFlow's on every layer and model (tests/test_cross_backend.py);
# PyTorch runs the whole suite. `KERAS_BACKEND=jax .venv/bin/python -m pytest tests` runs all.
# One case of each cached-decoding test (the one with the most paths in it):
# TensorFlow and PyTorch run every case, and the layers' math is the same
# keras.ops code on every backend.
GENERATION := tests/models/test_generation.py
CONTRACT := tests/layers/test_decoding_contract.py
# Each kind of the attention family against its NumPy formula. Cached ==
# full is the same keras.ops code: TensorFlow and PyTorch run every case, and
# on JAX the cross-backend test decodes a Transformer of each kind through
# its own cache and compares every kind's layer with TensorFlow's.
FAMILY := tests/layers/test_sinks_qk_norm.py::test_sinks_equal_numpy_and_rows_sum_below_one \
	tests/layers/test_sinks_qk_norm.py::test_qk_norm_equals_numpy \
	tests/layers/test_latent.py::test_full_pass_equals_the_paper \
	tests/layers/test_differential.py::test_equals_the_paper_formula_with_masks \
	tests/layers/test_linear.py::test_equals_the_numpy_formula_with_padding
JAX_TESTS := tests/test_sharding.py tests/test_ring_attention.py \
	tests/test_kernel.py \
	'$(CONTRACT)::test_keras_hub_mask_over_the_whole_cache_equals_full_pass[alibi-2]' \
	'$(CONTRACT)::test_keras_hub_mask_over_the_whole_cache_equals_full_pass[gqa-None]' \
	'$(CONTRACT)::test_contract_prefill_then_steps_equals_full_pass[window-2]' \
	$(CONTRACT)::test_keras_hub_cached_layer_parity_with_padding \
	$(CONTRACT)::test_mask_shorter_than_the_cache_is_refused_naming_attention_mask \
	$(GENERATION)::test_compiles_once_per_length_bucket \
	$(FAMILY)

test-jax: install
	KERAS_BACKEND=jax $(PYTEST) $(JAX_TESTS) $(PYTEST_ARGS)

# PyTorch: its suite, then the cross-backend test's PyTorch half (driven
# from TensorFlow; `make test` ran its JAX half, and runs the PyTorch half
# too where PyTorch is installed: .ci/run installs it first and then needs
# only `test-torch-suite`).
test-torch: test-torch-suite
	$(PYTEST) tests/test_cross_backend.py -k torch

test-torch-suite: install-torch
	KERAS_BACKEND=torch $(PYTEST) tests $(SKIP) $(PYTEST_ARGS)

docs: install
	$(BIN)/mkdocs build --strict --site-dir site

# What users install: sdist + wheel, the wheel into a clean virtualenv
# (no project checkout on its path), then the quickstart run from it.
WHEEL_VENV := .wheel-venv
package: install
	rm -rf dist $(WHEEL_VENV)
	$(BIN)/python -m build --outdir dist .
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q dist/*.whl
	cd dist && ../$(WHEEL_VENV)/bin/python ../examples/quickstart.py --quick --out ../out/quickstart-wheel
	cd dist && ../$(WHEEL_VENV)/bin/python -c "import keras_attention, sys; assert 'site-packages' in keras_attention.__file__, keras_attention.__file__; print('installed', keras_attention.__version__, 'from', keras_attention.__file__)"

bench: install
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

bench-quick: install
	$(PYTEST) tests/test_benchmarks.py

clean:
	rm -rf $(VENV) $(WHEEL_VENV) dist site out .pytest_cache .hypothesis *.egg-info
