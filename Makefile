# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.lskd-installed

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

# fairseq (requirements-fairseq.txt: the version for this Python) is installed with --no-deps: its metadata
# asks for torchaudio, which would pull a second torch. --no-build-isolation builds fairseq's extensions
# against the torch already in the venv; CFLAGS=-g0 drops their debug info, a third of the build time. The
# build (minutes, one core) runs while the other requirements install, once what it compiles against is in place,
# and then the fused KD loss kernel compiles (lskd/cpu_kernel.py, about 30 s) so the first KD run need not.
$(STAMP): pyproject.toml requirements.txt requirements-fairseq.txt requirements-dev.txt constraints.txt
	@echo "== setup 1/3: $(VENV) with torch (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch numpy cython wheel setuptools
	@echo "== setup 2/3: fairseq's extensions (2-4 minutes once; then from pip's cache), the other requirements, the KD kernel"
	{ $(PIP) install -c constraints.txt -r requirements.txt -r requirements-dev.txt && \
	  PYTHONPATH=. $(PY) -c 'from lskd.cpu_kernel import build_now; print(build_now())'; } & others=$$!; \
	CFLAGS=-g0 $(PIP) install -c constraints.txt --no-deps --no-build-isolation -r requirements-fairseq.txt; \
	built=$$?; wait $$others && [ $$built = 0 ]
	@echo "== setup 3/3: lskd in editable mode"
	$(PIP) install --no-deps --no-build-isolation --use-pep517 -e .
	touch $(STAMP)

# Lint and format checks (ruff, configured in pyproject.toml), then everything; tests on the real release
# files run when LSKD_RELEASE_DATA names them (README, "Tests").
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -rs tests

# The fast layer: no end-to-end runs (tests marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

demo: $(STAMP)
	bash recipes/demo.sh

bench: $(STAMP)
	$(PY) -m bench.nmt_kd
	$(PY) -m bench.vision_kd
	$(PY) -m bench.seq_kd
	$(PY) -m bench.deploy

clean:
	rm -rf $(VENV) build *.egg-info demo-runs
