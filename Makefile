# wildlink: one venv, a few targets. `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test test-fast hil lint bench bench-quick demo flash pi-check clean campaign

venv: $(STAMP)

# Reinstall whenever the package metadata changes.
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23" "setuptools>=68" wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check device training tools tests

test: lint
	$(BIN)/python -m pytest -m "not hil" $(PYTEST_ARGS)

# the inner loop: ruff, then every test not marked slow (training, bench smoke, fuzz) or hil
test-fast: lint
	$(BIN)/python -m pytest -m "not slow and not hil" $(PYTEST_ARGS)

hil: $(STAMP)
	WILDLINK_HIL=1 $(BIN)/python -m pytest -m hil -rs $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/wildlink bench

bench-quick: $(STAMP)
	$(BIN)/wildlink bench --quick --out build/BENCHMARKS-quick.md

# a trap and a base station as two processes over a simulated lossy radio (tools/demo.py);
# make demo TRAPS=3: three trap processes and the base sharing one channel through the radio hub
demo: $(STAMP)
	$(BIN)/python -m tools.demo $(if $(TRAPS),--traps $(TRAPS))

# make flash PI=user@host ROLE=trap|base [CONFIG=file] [KEYS=file|new] [SIZE=px] [BUNDLE=dir] [DRY_RUN=1]
# (docs/deployment.md). KEYS is needed when the config names keys.file: KEYS=new makes a trap key.
flash: $(STAMP)
	$(BIN)/python -m tools.flash --pi "$(PI)" --role "$(ROLE)" $(if $(CONFIG),--config "$(CONFIG)") $(if $(KEYS),--keys "$(KEYS)") $(if $(SIZE),--size "$(SIZE)") $(if $(BUNDLE),--bundle "$(BUNDLE)") $(if $(filter 1,$(DRY_RUN)),--dry-run)

# arm64 (qemu-user) encode vs host decode, bit for bit; skips where binfmt_misc is unavailable
pi-check: $(STAMP)
	$(BIN)/python -m tools.pi_check

# a training campaign of the default model, resumable across sessions
# (training/campaign/campaign.sh; CAMPAIGN=v3 for the larger model)
CAMPAIGN ?= v4
campaign: $(STAMP)
	bash training/campaign/campaign.sh $(CAMPAIGN) run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
