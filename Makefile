# Two commands on a fresh Debian machine: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
UV := .tools/venv/bin/uv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PACKAGES := orthanc orthanc-dicomweb dcmtk redis-server postgresql postgresql-client python3-venv dicom3tools prometheus docker-compose chromium
STAMP := $(VENV)/.installed
# the dashboard: npm through ui/npm.sh (the machine's Node if >= 20.19, else .venv's from PyPI)
NPM := ./npm.sh
UI_DEPS := ui/node_modules/.package-lock.json
UI_STAMP := ui/dist/.built
UI_SOURCES := $(shell find ui/src ui/index.html ui/vite.config.ts ui/codegen.ts ui/tsconfig.json ui/package.json -type f -not -path 'ui/src/gql/*' 2>/dev/null) ui/package-lock.json schema.graphql

# the OHIF Viewer's prebuilt dist/ from the npm registry (npm pack), pinned by integrity
OHIF_VERSION := 3.13.2
OHIF_INTEGRITY := sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==
VIEWER_STAMP := .tools/ohif/.installed-$(OHIF_VERSION)

.PHONY: help setup deb venv ui viewer demo test lint format schema stack clean

help:
	@echo "make demo    local PACS stack + demo data + worker + gateway on http://127.0.0.1:8000"
	@echo "make test    lint + every test against real servers"
	@echo "make setup   install what is missing (Debian packages, .venv, the dashboard build)"
	@echo "make lint    ruff + mypy + schema drift check"

setup: deb venv ui viewer

deb:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(UV):
	$(PYTHON) -m venv .tools/venv
	.tools/venv/bin/pip install -q "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --extra dev --group bench --python $(PYTHON)
	@touch $(STAMP)

venv: $(STAMP)

$(UI_DEPS): ui/package-lock.json | $(STAMP)
	cd ui && $(NPM) ci --no-audit --no-fund

$(UI_STAMP): $(UI_DEPS) $(UI_SOURCES)
	cd ui && $(NPM) run build
	@touch $(UI_STAMP)

ui: $(UI_STAMP)

$(VIEWER_STAMP): | $(STAMP)
	mkdir -p .tools/ohif
	cd .tools/ohif && ../../ui/npm.sh pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null
	$(BIN)/pacs-gateway viewer-install .tools/ohif/ohif-app-$(OHIF_VERSION).tgz \
	  --integrity $(OHIF_INTEGRITY) --to .tools/ohif/dist
	rm -f .tools/ohif/ohif-app-$(OHIF_VERSION).tgz
	@touch $(VIEWER_STAMP)

viewer: $(VIEWER_STAMP)

demo: setup
	$(BIN)/pacs-gateway demo

stack: setup
	$(BIN)/pacs-gateway stack

lint: venv $(UI_DEPS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pacs-gateway schema --check
	cd ui && $(NPM) run --silent typecheck

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schema: venv
	$(BIN)/pacs-gateway schema

test: setup lint
	cd ui && $(NPM) test
	$(BIN)/pytest -q tests/unit tests/contract tests/integration tests/e2e

clean:
	rm -rf $(VENV) .tools var .pytest_cache .mypy_cache .ruff_cache ui/node_modules ui/dist ui/src/gql
