# Two entry points for a fresh clone: `make demo` (the main job) and `make test`.
# (rlpol's editable install writes rlpol.egg-info into the tree: the two venvs take turns.)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-torchrl lint bench clean examples

# the main venv has both serving engines, so tests/serve runs them for real (PyTriton pins
# numpy < 2 here; the interop venv below runs the suite on numpy 2)
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	mkdir -p build && flock build/.install.lock $(BIN)/pip install -q -e '.[test,triton,ray]'
	$(BIN)/pip check
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m rlpol.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The interop job: TorchRL's pins installed first (torchrl 0.14.1 needs tensordict < 0.15),
# then rlpol beside them, in a venv of its own; the whole suite runs on tensordict 0.14.3.
TORCHRL_VENV := .venv-torchrl
TORCHRL_BIN := $(TORCHRL_VENV)/bin
TORCHRL_STAMP := $(TORCHRL_VENV)/.installed

$(TORCHRL_STAMP): pyproject.toml
	test -d $(TORCHRL_VENV) || $(PYTHON) -m venv $(TORCHRL_VENV)
	$(TORCHRL_BIN)/pip install -q --upgrade pip
	$(TORCHRL_BIN)/pip install -q torch==2.13.0
	$(TORCHRL_BIN)/pip install -q torchrl==0.14.1 tensordict==0.14.3
	mkdir -p build && flock build/.install.lock $(TORCHRL_BIN)/pip install -q -e '.[test]'
	$(TORCHRL_BIN)/pip check
	touch $(TORCHRL_STAMP)

# TORCHRL_TESTS: pytest arguments (default: the whole suite); .ci/run splits it over two lanes
TORCHRL_TESTS ?=
test-torchrl: $(TORCHRL_STAMP)
	$(TORCHRL_BIN)/python -c "import tensordict, torchrl; print('tensordict', tensordict.__version__, 'torchrl', torchrl.__version__)"
	$(TORCHRL_BIN)/python -m pytest -q $(TORCHRL_TESTS)

bench: $(STAMP)
	$(BIN)/python benchmarks/rollout.py
	$(BIN)/python benchmarks/inference.py
	$(BIN)/python benchmarks/startup.py

# Bundles of two shipped models (stochastic; stateful), replayed by the C++ (libtorch) and
# Node (onnxruntime-node) clients; a tampered copy must make both fail.
EXAMPLE_BUNDLES := build/examples
# model:exploration[:--aoti]; EXAMPLE_AOTI=--aoti adds an AOTInductor package to the
# pendulum bundle for the C++ client (it compiles C++: about 45 s, so CI leaves it out)
EXAMPLE_AOTI ?=
EXAMPLE_MODELS := pendulum_normal:random:$(EXAMPLE_AOTI) cartpole_masked_lstm:deterministic
CPP_CLIENT := examples/cpp/build/rlpol_verify
NODE_CLIENT := node examples/node/verify.js

examples: $(STAMP)
	rm -rf $(EXAMPLE_BUNDLES) && mkdir -p $(EXAMPLE_BUNDLES)
	for entry in $(EXAMPLE_MODELS); do \
		set -- $$(echo $$entry | tr : ' '); \
		$(BIN)/python -m rlpol bundle models/$$1.py $(EXAMPLE_BUNDLES)/$$1 \
			--exploration $$2 $$3 || exit 1; \
	done
	cmake -S examples/cpp -B examples/cpp/build -DCMAKE_BUILD_TYPE=Release \
		-DCMAKE_PREFIX_PATH="$$($(BIN)/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
	cmake --build examples/cpp/build -j2
	cd examples/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	for entry in $(EXAMPLE_MODELS); do \
		bundle=$(EXAMPLE_BUNDLES)/$${entry%%:*}; \
		$(CPP_CLIENT) $$bundle && $(NODE_CLIENT) $$bundle || exit 1; \
	done
	cp -r $(EXAMPLE_BUNDLES)/pendulum_normal $(EXAMPLE_BUNDLES)/tampered
	$(BIN)/python examples/tamper.py $(EXAMPLE_BUNDLES)/tampered/test_data_set_1/output_0.pb
	$(CPP_CLIENT) $(EXAMPLE_BUNDLES)/tampered; test $$? -eq 1  # 1: a mismatch (2: an error)
	$(NODE_CLIENT) $(EXAMPLE_BUNDLES)/tampered; test $$? -eq 1
	@echo "examples ok: both clients match the bundles and refuse the tampered one"

clean:
	rm -rf $(VENV) $(TORCHRL_VENV) artifacts .pytest_cache .ruff_cache build examples/cpp/build examples/node/node_modules
