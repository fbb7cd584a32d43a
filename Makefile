# The targets README.md names. Everything built or downloaded goes to LAB_CACHE,
# outside the checkout.
LAB_CACHE ?= $(HOME)/.cache/localpv-lab
export LOCALPV_LAB_CACHE := $(LAB_CACHE)
# The venv of the pinned ansible-core, named by its Python and the requirements
# (install-deps.sh finds a Python that core runs on, on PATH or under pyenv).
VENV := $(shell LOCALPV_LAB_CACHE='$(LAB_CACHE)' bash lab/install-deps.sh --venv)
ifeq ($(VENV),)
$(error no Python for the pinned ansible-core: see the message above)
endif
PY := $(VENV)/bin/python
LAB := $(PY) lab/lab.py
# The state of the lab instance in use (lab.py decides the same way): several labs
# run side by side with LOCALPV_LAB_INSTANCE=1..9.
LOCALPV_LAB_INSTANCE ?= 0
STATE := $(or $(LOCALPV_LAB_STATE),$(LAB_CACHE)/state$(if $(filter-out 0,$(LOCALPV_LAB_INSTANCE)),-$(LOCALPV_LAB_INSTANCE)))
export LOCALPV_LAB_STATE := $(STATE)
# Each checkout links itself as ansible_collections/localpv/rollout in a directory of
# its own, so that several checkouts can share one cache.
CHECKOUT_ID := $(shell printf %s "$(CURDIR)" | sha256sum | cut -c1-12)
export LOCALPV_COLLECTIONS := $(LAB_CACHE)/collections/$(CHECKOUT_ID)
export ANSIBLE_COLLECTIONS_PATH := $(LOCALPV_COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Nothing is written outside the checkout and the lab cache: Ansible's home (local
# temp, galaxy cache, the copy of the collection ansible-lint installs) and the tools'
# caches (ansible-lint, pip, molecule) live in the lab cache, one per checkout so
# that two checkouts never lint each other's copy.
TOOL_HOME := $(LAB_CACHE)/home/$(CHECKOUT_ID)
export ANSIBLE_HOME := $(TOOL_HOME)/ansible
export ANSIBLE_LOCAL_TEMP := $(TOOL_HOME)/ansible/tmp
export XDG_CACHE_HOME := $(TOOL_HOME)/cache
# (Go writes its telemetry counters under the config home)
export XDG_CONFIG_HOME := $(TOOL_HOME)/config
# (kubectl keeps its discovery cache in ~/.kube/cache otherwise)
export KUBECACHEDIR := $(TOOL_HOME)/kube-cache
export PATH := $(VENV)/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: deps lab-up lab-down lab-status site test unit integration molecule sanity lint build ee ee-site matrix matrix-unit matrix-sanity mutants soak

deps:
	bash lab/install-deps.sh

lab-up: deps
	$(LAB) up

lab-down:
	@if [ -x $(PY) ]; then $(LAB) down; else echo "no venv: nothing of the lab to take down"; fi

lab-status:
	$(LAB) status

# The main job against the lab: prepare the nodes' disks and register their PVs.
# The lab's site disks are first given back to the site layout if tests left
# anything else on them (`make test` then `make site`); prepared ones stay as they are.
site: lab-up
	$(LAB) site-ready
	ansible-playbook -i $(STATE)/inventory.yml -e @$(STATE)/site-vars.yml playbooks/site.yml

# Everything CI checks: unit tests, sanity, lint, the integration tests and the
# molecule scenarios on the lab, then the version matrix.
test: lab-up unit sanity lint integration molecule matrix

unit:
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration:
	$(PY) -m pytest tests/integration --durations=25 $(PYTEST_ARGS)

# Mutation testing of the safety rules (tests/mutation/safety_functions.txt): every
# mutant must be killed by the unit tests. Works on a copy under LAB_CACHE. Measured
# on 2 shared cores (load average 6 to 17): devices.py 3 to 15 minutes, the plan's rules (then one file) 18;
# the four files take most of an hour there, so it is not part of `make test`.
# MUTANTS_ARGS='--only devices.py' runs one file.
MUTANTS_ARGS ?=
mutants: deps
	nice -n 10 $(PY) tests/mutation/run.py --json $(LAB_CACHE)/mutants.json $(MUTANTS_ARGS)

# The model-based search of operator moves (tests/integration/test_operator_moves.py)
# with fresh seeds for SOAK_MINUTES, at low priority; it prints its seeds and what it
# found. A lab of one node of its own keeps its steps short and out of the way:
#   LOCALPV_LAB_INSTANCE=8 LOCALPV_LAB_NODES=1 make soak SOAK_MINUTES=60
SOAK_MINUTES ?= 60
soak:
	LOCALPV_MOVES_SOAK_MINUTES=$(SOAK_MINUTES) nice -n 10 $(PY) -m pytest -s tests/integration/test_operator_moves.py \
		-k soak $(PYTEST_ARGS)

molecule:
	molecule test --all

# Unit tests and ansible-test sanity on the other ansible-core minors the collection
# claims (the pinned one is `unit` and `sanity`), and unit tests with the lowest
# kubernetes.core and kubernetes it allows; each in a venv of its own under LAB_CACHE,
# three at a time (about a minute and a half with warm venvs, four with cold ones).
# `make test` runs all of it; `matrix-unit` and `matrix-sanity` run one half.
matrix: deps
	LOCALPV_MATRIX_SKIP_PINNED=1 LOCALPV_MATRIX_JOBS=3 bash tests/matrix/run.sh

matrix-unit: deps
	LOCALPV_MATRIX_SKIP_PINNED=1 LOCALPV_MATRIX_JOBS=3 bash tests/matrix/run.sh unit

matrix-sanity: deps
	LOCALPV_MATRIX_SKIP_PINNED=1 LOCALPV_MATRIX_JOBS=3 bash tests/matrix/run.sh sanity

# ansible-test wants the checkout at ansible_collections/<namespace>/<name> and only
# looks at files git knows.
sanity: deps
	bash tests/sanity/run.sh

lint: deps
	ansible-lint --profile production

build: deps
	ansible-galaxy collection build --force --output-path $(LAB_CACHE)/dist

# The execution environment AWX and Automation Platform run the collection in
# (docs/execution-environment.md): `ee` builds it with ansible-builder from
# ee/execution-environment.yml on a Debian base the lab makes, and prints the image;
# an unchanged checkout reuses its build. `ee-site` runs site.yml through it with
# ansible-runner against the lab, with the inventory and vars `make site` uses.
ee: deps
	nice -n 10 $(PY) lab/ee.py build

ee-site: lab-up
	$(LAB) site-ready
	$(PY) lab/ee.py run
