# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.lskd-installed

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

# fairseq is installed with --no-deps: its metadata asks for torchaudio, which would pull a second torch.
# --no-build-isolation builds fairseq's extensions against the torch already in the venv; CFLAGS=-g0 drops
# their debug info, a third of the build time. The build (minutes, one core) runs while the other
# requirements install, once what it compiles against is in place.
FAIRSEQ = $$($(PY) -c 'import sys; print("fairseq-fixed==0.12.3.1" if sys.version_info >= (3, 11) else "fairseq==0.12.2")')
$(STAMP): setup.py requirements.txt constraints.txt
	@echo "== setup 1/3: $(VENV) with torch (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch numpy cython wheel setuptools
	@echo "== setup 2/3: fairseq's extensions (2-4 minutes once; then from pip's cache) and the other requirements"
	$(PIP) install -c constraints.txt -r requirements.txt pytest & others=$$!; \
	CFLAGS=-g0 $(PIP) install -c constraints.txt --no-deps --no-build-isolation "$(FAIRSEQ)"; built=$$?; \
	wait $$others && [ $$built = 0 ]
	@echo "== setup 3/3: lskd in editable mode"
	$(PIP) install --no-deps --no-build-isolation --use-pep517 -e .
	touch $(STAMP)

# Everything; tests on the real release files run when LSKD_RELEASE_DATA names them (README, "Tests").
test: $(STAMP)
	$(PY) -m pytest -q -rs tests

# The fast layer: no end-to-end runs (tests marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

demo: $(STAMP)
	bash recipes/demo.sh

bench: $(STAMP)
	$(PY) -m bench.nmt_kd
	$(PY) -m bench.vision_kd

clean:
	rm -rf $(VENV) build *.egg-info demo-runs
