# Set-up and the two everyday commands. `make demo` runs the main job (SAIL on the embedded world,
# on the CPU); `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned for the whole install (a constraint, not only a first step): otherwise resolving
# open-clip-torch's torchvision upgrades torch to the newest, multi-GB CUDA build.
# Which build: on Linux without an NVIDIA driver (no nvidia-smi) PyTorch's CPU index is added, whose
# 2.13.0+cpu wins over PyPI's CUDA 2.13.0 (a local version sorts above its public one); an extra index,
# not a replacement, so a machine whose pip has its own index still installs from it.
# With an NVIDIA GPU, or on macOS, the default index's torch; choose a CUDA build with e.g.
# make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_VERSION ?= 2.13.0
CPU_TORCH_INDEX := https://download.pytorch.org/whl/cpu
# Only if it answers: pip would otherwise retry an unreachable index for every package it resolves.
# (?= is expanded lazily: the probe runs when the install recipe runs, not on every make.)
TORCH_INDEX ?= $(if $(and $(filter Linux,$(shell uname -s)),$(if $(shell command -v nvidia-smi),,cpu),$(shell \
  $(PYTHON) -c "import urllib.request as u; u.urlopen('$(CPU_TORCH_INDEX)/', timeout=10)" >/dev/null 2>&1 && echo up)),$(CPU_TORCH_INDEX))
# what `make install` installs besides the package: the test suite's and the docs site's tools
EXTRAS ?= test,docs

.PHONY: install demo test real-arch clean docs docs-serve

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	echo "torch==$(TORCH_VERSION)" > $(VENV)/constraints.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/constraints.txt -e ".[$(EXTRAS)]"
	# PyPI's torchvision is built against CUDA torch; beside a CPU torch it fails at import and breaks
	# transformers' imports with it. Nothing here needs it (images are preprocessed with PIL).
	if ! $(BIN)/python -c "import torchvision" >/dev/null 2>&1; then $(BIN)/python -m pip uninstall --quiet -y torchvision; fi
	touch $@

# The demo's numbers are bit-for-bit those of the README for this seed and thread count on the same kind
# of CPU: the thread count decides how floating-point sums are split (README: reproducibility).
DEMO_THREADS ?= 2

demo: install
	$(BIN)/sail run --set runtime.threads=$(DEMO_THREADS)

# The suite in TEST_WORKERS pytest-xdist processes (one torch thread each); tests that share a Prefect
# server, its workers or a finished run stay in one process (tests/conftest.py, _work_group).
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) runs .pytest_cache site

# The documentation site (mkdocs.yml): built strictly (a broken link or a warning fails), into site/.
# The CLI and config references and the results tables are generated from the code and results files.
docs: install
	$(BIN)/python -m mkdocs build --strict

DOCS_PORT ?= 8000
docs-serve: install
	$(BIN)/python -m mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

# The real SD1.5 and SDXL architectures (random weights) through the sail-loop flow and the sd15
# deployment, on the CPU at 64 px; prints time and peak memory per stage. Needs about 21 GB of RAM.
real-arch: install
	$(BIN)/python -m pytest -q -s -m real_arch
