# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.lskd-installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

# fairseq is installed with --no-deps: its metadata asks for torchaudio, which would pull a second torch.
# --no-build-isolation builds fairseq's extensions against the torch already in the venv.
$(STAMP): setup.py requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -r requirements.txt pytest cython wheel setuptools
	$(PIP) install -c constraints.txt --no-deps --no-build-isolation \
		"$$($(PY) -c 'import sys; print("fairseq-fixed==0.12.3.1" if sys.version_info >= (3, 11) else "fairseq==0.12.2")')"
	$(PIP) install --no-deps --no-build-isolation --use-pep517 -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	bash recipes/demo.sh

bench: $(STAMP)
	$(PY) -m bench.nmt_kd
	$(PY) -m bench.vision_kd

clean:
	rm -rf $(VENV) build *.egg-info demo-runs
