# Set-up and the two everyday commands. `make demo` runs the main job (SAIL on the embedded world,
# on the CPU); `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch lies on this machine's disk; pinning it keeps pip from pulling a multi-GB
# CUDA build. On a GPU machine: make install TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH ?= torch==2.13.0

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# PyPI's torchvision is built against CUDA torch; beside a CPU torch it fails at import and breaks
	# transformers' imports with it. Nothing here needs it (images are preprocessed with PIL).
	if ! $(BIN)/python -c "import torchvision" >/dev/null 2>&1; then $(BIN)/python -m pip uninstall --quiet -y torchvision; fi
	touch $@

demo: install
	$(BIN)/sail run

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
